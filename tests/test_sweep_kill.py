"""A sweep SIGKILLed at random points while writing its zarr store, 20 times, then resumed,
equals an uninterrupted sweep exactly (values, chunk files, checksums).

Two child processes fill one store as hosts 0 and 1 of 2; each is killed a random delay
(0-40 ms) after a random number (1-12) of its completed file writes (seeded draws); this is
repeated 10 times (each round resumes the store), then the parent finishes it. Each child slows every atomic write down (a pause between writing a file's temporary
copy and renaming it into place, logged before and after), so that kills land inside writes:
inside an atomic write (temporary file written, not renamed), between the files of one chunk
(data renamed, commit record not yet written), or between chunks. The log tells where each
kill landed; the test asserts that many landed inside writes and prints the tally.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import cpsych  # noqa: F401  (float64)
from cpsych.sweep import make_grid, sweep

ROOT = Path(__file__).resolve().parents[1]
N_KILLS = 20
PAUSE = 0.02  # seconds between writing a temporary file and renaming it (child only)
N_CHUNKS = 120
GRID = {"a": f"0:1:{N_CHUNKS}", "b": [1.0, 2.0, 3.0]}  # chunk_size 3: chunks of one row
CHUNK = 3

TOY = """
import jax.numpy as jnp
def toy(p, key):
    return {"y": jnp.sin(p["a"]) * p["b"], "v": jnp.stack([p["a"] + p["b"], p["a"] * p["b"]])}
"""
_NS: dict = {}
exec(TOY, _NS)  # the same source runs in the children
toy = _NS["toy"]

CHILD = """
import contextlib, os, sys, time
import cpsych, cpsych.sweep as sw
from cpsych.sweep import make_grid, sweep
{toy}
store, log_path, pause, host = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
real = sw.atomic_path

@contextlib.contextmanager
def slow(path, suffix=".tmp"):
    rel = os.path.relpath(path, store)
    with real(path, suffix) as tmp:
        yield tmp  # the store writes, flushes and closes the temporary file here
        os.write(log_fd, f"T {{rel}}\\n".encode())  # written, not yet renamed
        time.sleep(pause)
    os.write(log_fd, f"R {{rel}}\\n".encode())  # renamed into place

sw.atomic_path = slow
sweep(toy, make_grid({grid!r}), {{"y": {{}}, "v": {{"dims": ("comp",)}}}}, store=store,
      chunk_size={chunk}, host_index=host, host_count=2)
"""


def _env():
    return dict(os.environ, PYTHONPATH=f"{ROOT}", OPENBLAS_NUM_THREADS="1", JAX_PLATFORMS="cpu",
                XLA_FLAGS="--xla_force_host_platform_device_count=1")


def _committed(store: Path) -> dict[str, dict[str, str]]:
    """Commit records, each verified against the sha256 of the files it lists."""
    out = {}
    for rec in sorted((store / "_cpsych" / "done").glob("c*.json")):
        sums = json.loads(rec.read_text())["sha256"]
        for key, digest in sums.items():
            assert hashlib.sha256((store / key).read_bytes()).hexdigest() == digest, \
                f"{rec.name}: {key} does not match its checksum after a kill"
        out[rec.name] = sums
    return out


def _files(store: Path) -> dict[str, bytes]:
    """Every file of the store but temporary leftovers of killed writes."""
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _where(lines: list[str]) -> str:
    """Where the kill landed, from the child's last log line."""
    if not lines:
        return "before the first write"
    op, key = lines[-1].split(" ", 1)
    if op == "T":
        return "inside an atomic write"
    if key.startswith("_cpsych/done/") or key == "sweep.nc":
        return "between chunks"
    return "between the files of a chunk"


@pytest.mark.slow
def test_random_kills_during_writes_then_resume_equal_uninterrupted(tmp_path):
    rng = np.random.default_rng(20260611)
    # kill each child a random time after its m-th completed write (m random): random
    # points of the write cycle, however fast or loaded the machine is
    after = rng.integers(1, 13, size=(N_KILLS // 2, 2))
    jitter = rng.uniform(0.0, 2 * PAUSE, size=(N_KILLS // 2, 2))
    store = tmp_path / "killed"
    logs = [tmp_path / "log0", tmp_path / "log1"]
    script = CHILD.format(toy=TOY, grid=GRID, chunk=CHUNK)
    tally: dict[str, int] = {}
    n_done = 0
    t_start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = cpu0.ru_utime + cpu0.ru_stime
    for r in range(N_KILLS // 2):
        for log in logs:
            log.write_text("")
        procs = [subprocess.Popen([sys.executable, "-c", script, str(store), str(logs[j]),
                                   str(PAUSE), str(j)], env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for j in range(2)]
        kill_at: list[float | None] = [None, None]
        try:
            t0 = time.perf_counter()
            while any(p.returncode is None for p in procs):
                now = time.perf_counter()
                assert now - t0 < 120, "children never started writing"
                for j, p in enumerate(procs):
                    if p.returncode is not None:
                        continue
                    assert p.poll() is None, \
                        f"round {r}, host {j} exited: {p.stderr.read().decode()[-2000:]}"
                    if kill_at[j] is None and \
                            logs[j].read_text().count("\nR ") >= after[r, j]:
                        kill_at[j] = now + jitter[r, j]
                    if kill_at[j] is not None and now >= kill_at[j]:
                        p.send_signal(signal.SIGKILL)
                        p.wait()
                        where = _where(logs[j].read_text().splitlines())
                        tally[where] = tally.get(where, 0) + 1
                time.sleep(0.002)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    p.wait()
        assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
        done = _committed(store)  # committed chunks are intact...
        assert len(done) >= n_done  # ...and never lost
        n_done = len(done)
        if (store / "zarr.json").exists():  # every stored chunk file decodes, in place
            xr.open_zarr(store).load()
    t_kills = time.perf_counter() - t_start
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu.ru_utime + cpu.ru_stime - cpu0
    leftovers = [p.name for p in store.rglob(".*") if p.is_file()]
    print(f"\n{N_KILLS} kills in {t_kills:.1f} s ({cpu:.1f} s CPU in children); landed: {tally}; {n_done} of {N_CHUNKS} "
          f"chunks committed; {len(leftovers)} temporary files left by kills")
    assert sum(tally.values()) == N_KILLS
    assert 0 < n_done < N_CHUNKS  # the kills spread over the sweep, which is not finished
    inside = tally.get("inside an atomic write", 0) + \
        tally.get("between the files of a chunk", 0)
    assert inside >= N_KILLS // 2, tally

    ro = {"y": {}, "v": {"dims": ("comp",)}}
    grid = make_grid(GRID)
    st = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "sweep: chunk", RuntimeWarning)  # nothing damaged
        resumed = sweep(toy, grid, ro, store=store, stats=st, host_index=0, host_count=1)
    assert len(st["skipped"]) == n_done and len(st["computed"]) == N_CHUNKS - n_done
    full = sweep(toy, grid, ro, store=tmp_path / "full", chunk_size=CHUNK)
    xr.testing.assert_identical(resumed, full)
    xr.testing.assert_identical(xr.open_zarr(store).load(), full)
    killed_files, full_files = _files(store), _files(tmp_path / "full")
    assert sorted(killed_files) == sorted(full_files)  # sweep.nc included
    for key, data in full_files.items():
        assert killed_files[key] == data, key
    xr.testing.assert_identical(cpsych.load(store / "sweep.nc"), full)
