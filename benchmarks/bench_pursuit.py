"""Speed of the smooth-pursuit active-inference simulation (SPEC 5.5, 8).

Measures:

1. compile time of the jitted single-trial simulation (``models.pursuit.simulate_traces``,
   64 bins: 3 process states, 19 sensory channels x 5 orders, 29 generalised expectations,
   1 action);
2. time per 64-bin simulation after compilation (median of repeated calls);
3. trials per second for the experiment's batch (9 trials x 128 bins under ``jit(vmap)``);
4. the whole experiment from a cold start: ``python -m cpsych.cli pursuit --out <tmp>`` in a
   fresh process (imports, compilation, simulation, read-outs, netCDF and both figures).

Usage (from the repository root)::

    python benchmarks/bench_pursuit.py [--repeats 20] [--no-cold] [--json out.json]

Targets: < 50 ms per 64-bin simulation after compile; < 30 s for the cold-start experiment.
The exit status is 0 whether or not targets are met (``--strict`` makes a miss exit 1).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy/JAX load (SPEC 8)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import cpsych  # noqa: E402, F401  (float64)
from cpsych.models import pursuit as P  # noqa: E402

TARGETS = {"per_simulation_ms": 50.0, "cold_experiment_s": 30.0}


def bench(repeats: int = 20, cold: bool = True) -> dict[str, float]:
    sc = P.scenario("occlusion")
    tm = P.prepare(sc.cause.size)
    args = (jnp.asarray(P.PRESETS["control"].as_array()), jnp.asarray(sc.cause), sc.occluder,
            sc.prior_mean)
    fn = jax.jit(P.simulate_traces)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args, tm))
    res = {"compile_single_s": time.perf_counter() - t0}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args, tm))
        times.append(time.perf_counter() - t0)
    res["per_simulation_ms"] = 1000 * statistics.median(times)
    res["per_bin_ms"] = res["per_simulation_ms"] / sc.cause.size

    inputs = [jnp.asarray(a) for a in P.batch_inputs(P.PRESETS)]
    tm128 = P.prepare(inputs[1].shape[1])
    t0 = time.perf_counter()
    jax.block_until_ready(P.simulate_batch_jit(*inputs, tm128))
    res["compile_batch_s"] = time.perf_counter() - t0
    bt = []
    for _ in range(max(3, repeats // 5)):
        t0 = time.perf_counter()
        jax.block_until_ready(P.simulate_batch_jit(*inputs, tm128))
        bt.append(time.perf_counter() - t0)
    res["batch_9x128_s"] = statistics.median(bt)
    res["batched_trials_per_s"] = inputs[0].shape[0] / res["batch_9x128_s"]

    if cold:
        with tempfile.TemporaryDirectory() as out:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cpsych.cli", "pursuit", "--out", out],
                           cwd=ROOT, env=env, check=True, capture_output=True)
            res["cold_experiment_s"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start run")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    print(f"{'JAX device':24s} {jax.default_backend()}: {jax.devices()[0]}")
    res = bench(args.repeats, not args.no_cold)
    miss = False
    for k, v in res.items():
        tgt = TARGETS.get(k)
        flag = "" if tgt is None else (f"  (target < {tgt:g}: " + ("ok)" if v < tgt else "MISSED)"))
        miss |= tgt is not None and v >= tgt
        print(f"{k:24s} {v:10.3f}{flag}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return int(miss and args.strict)


if __name__ == "__main__":
    sys.exit(main())
