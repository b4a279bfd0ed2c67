"""Benchmark of cpsych.sweep: simulations per second and peak memory.

Force-matching trials (each grid point: 4 targets x (1 trial + 2 replays) = 12 simulations)
and pursuit runs (one 64-bin occlusion trial per point) at several chunk (batch) sizes, and
the 32 x 32 force-matching grid (x 4 targets) of issue 6 (target: < 60 s on 2 cores,
< 4 GB). The store: force-matching trials/s written to a store (zarr, checksummed, fsynced)
versus in memory, and the storage overhead alone: a toy sweep of 200 chunks of 3 points
(chunks/s written, and the time to resume the complete store: verify every checksum and
assemble the result). Run: ``OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python
benchmarks/bench_sweep.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import cpsych  # noqa: E402,F401
from cpsych.experiments.sweep_cli import run_sweep  # noqa: E402
from cpsych.sweep import make_grid, sweep  # noqa: E402


def _rate(name, grid, readouts, chunk, sims_per_point):
    run_sweep(name, grid, readouts=readouts, chunk_size=chunk)  # compile
    t = time.perf_counter()
    ds = run_sweep(name, grid, readouts=readouts, chunk_size=chunk)
    dt = time.perf_counter() - t
    n = ds.sizes[list(grid)[0]] * ds.sizes[list(grid)[1]]
    return n * sims_per_point / dt, dt


def _toy(p, key):
    return {"y": jnp.sin(p["a"]) * p["b"], "v": jnp.stack([p["a"] + p["b"], p["a"] * p["b"]])}


def _store(tmp: Path) -> None:
    grid = {"h": "2:8:8", "prior": "4:8:16"}  # compiled by main's chunk-8 run
    t = time.perf_counter()
    run_sweep("force-matching", grid, readouts=["illusion"], chunk_size=8, store=tmp / "fm")
    dt = time.perf_counter() - t
    print(f"force-matching chunk    8, store: {128 * 12 / dt:8.1f} trials/s ({dt:.1f} s, "
          "128 points)")
    g = make_grid({"a": "0:1:200", "b": [1.0, 2.0, 3.0]})
    ro = {"y": {}, "v": {"dims": ("comp",)}}
    sweep(_toy, g, ro, chunk_size=3)  # compile
    t = time.perf_counter()
    sweep(_toy, g, ro, chunk_size=3, store=tmp / "toy")
    dt = time.perf_counter() - t
    t = time.perf_counter()
    sweep(_toy, g, ro, chunk_size=3, store=tmp / "toy")
    dt2 = time.perf_counter() - t
    print(f"store overhead, toy sweep of 200 chunks x 3 points: {200 / dt:6.0f} chunks/s "
          f"written ({dt:.2f} s); resume of the complete store {dt2:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="also run the 32 x 32 grid")
    a = ap.parse_args()
    print(f"devices: {jax.devices()}")
    for chunk in (4, 8, 32):
        r, dt = _rate("force-matching", {"h": "2:8:8", "prior": "4:8:16"}, ["illusion"], chunk,
                      12)
        print(f"force-matching chunk {chunk:4d}: {r:8.1f} trials/s ({dt:.1f} s, 128 points)")
    for chunk in (8, 32):
        try:
            r, dt = _rate("pursuit", {"retina": "2:8:4", "state2": "0:6:8"},
                          ["gain_occluded"], chunk, 1)
        except Exception as e:  # noqa: BLE001 - report and go on to the store benchmark
            print(f"pursuit chunk {chunk:4d}: FAILED ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:80]})")
            continue
        print(f"pursuit chunk {chunk:4d}: {r:8.1f} runs/s ({dt:.1f} s, 32 points)")
    with tempfile.TemporaryDirectory() as tmp:
        _store(Path(tmp))
    if a.full:
        t = time.perf_counter()
        run_sweep("force-matching", {"h": "0:8:32", "prior": "2:10:32"}, readouts=["illusion"],
                  chunk_size=8)
        print(f"32 x 32 force-matching grid (x 4 targets, 12288 simulations): "
              f"{time.perf_counter() - t:.1f} s including compilation")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak resident memory: {peak:.2f} GB")


if __name__ == "__main__":
    main()
