"""Speed of active inference (SPEC 4, 8): one 32-bin trial of the jitted integrator.

Two agents:

* **reaching**: the world ``dx/dt = a - x/4``, ``y = x``; the agent believes
  ``dx/dt = (v - x)/2``, ``y = x``, with a prior set-point ``v = 1`` from bin 8 on, and acts
  (``kappa_a = 1``) to move the world there;
* **Posner**: the Posner cueing trial (:mod:`models.posner`, SPEC 5.3) shortened to 32 bins
  (state-dependent precision, three channels, action gated off).

For each: compile time of :func:`cpsych.active.run` under ``jax.jit`` (trace, lower and
XLA compile), then the median wall time of a trial with the compiled function (inputs
prepared beforehand, result waited for).

Usage (from the repository root)::

    python benchmarks/bench_active.py
    taskset -c 0,1 python benchmarks/bench_active.py   # pin to 2 cores

Targets: < 10 ms per 32-bin trial after compilation, compile < 15 s. The exit status is 0
whether or not targets are met (``--strict`` makes a miss exit 1).
"""

from __future__ import annotations

import os

# Before NumPy/JAX load: JAX's small LAPACK calls pay a flat ~16 ms through a threaded
# OpenBLAS (SPEC 8).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cpsych  # noqa: E402
from cpsych import active  # noqa: E402
from cpsych.models import posner  # noqa: E402

TARGETS = {"per_trial_ms": 10.0, "compile_s": 15.0}
T = 32


def _reach_f(x, v, a, th):
    return a - x / 4.0


def _reach_g(x, v, a, th):
    return x


def _agent_f(x, v, th):
    return (v - x) / 2.0


def _agent_g(x, v, th):
    return x


def reaching_inputs():
    """The reaching agent and its world, validated, with a set-point prior from bin 8."""
    process = cpsych.Process(f=_reach_f, g=_reach_g, n_x=1, n_v=0, n_a=1)
    model = cpsych.HDM(levels=(cpsych.Level(g=_agent_g, f=_agent_f, n_x=1, n_v=1,
                                            log_pi_z=4.0, log_pi_w=4.0),),
                       eta=0.0, log_pi_eta=4.0, n=4, d=2, s=0.5)
    priors = (np.arange(T) >= 8).astype(float)[None, :]
    return active.check_inputs(process, model, None, priors, None)


def posner_inputs():
    """The Posner trial (valid cue), 32 bins, action gated off."""
    return active.check_inputs(posner.process(), posner.model(), posner.stimuli("valid", T),
                               np.zeros((3, T)), np.zeros(3))


def bench(name: str, inputs, repeats: int) -> dict:
    process, model, causes, priors, mask = inputs
    args = (process, model, None if causes is None else jnp.asarray(causes),
            jnp.asarray(priors))
    kwargs = {"action_mask": jnp.asarray(mask, float)}
    jitted = jax.jit(lambda p, m, c, e: active.run(p, m, c, e, **kwargs))
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))  # warm-up
    if not np.all(np.isfinite(np.asarray(out.x))):
        raise FloatingPointError(f"{name}: the trial diverged")
    wall = []
    for _ in range(repeats):
        s = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        wall.append(time.perf_counter() - s)
    res = {
        "trace_lower_s": t1 - t0,
        "xla_compile_s": t2 - t1,
        "compile_s": t2 - t0,
        "per_trial_ms": 1e3 * statistics.median(wall),
        "per_trial_ms_min": 1e3 * min(wall),
        "bins": T,
        "final_world_state": np.asarray(out.x_process[-1]).tolist(),
    }
    ok = res["per_trial_ms"] < TARGETS["per_trial_ms"] and res["compile_s"] < TARGETS["compile_s"]
    res["meets_targets"] = bool(ok)
    print(f"{name:9s} compile {res['compile_s']:6.2f} s (trace+lower {res['trace_lower_s']:.2f} s,"
          f" XLA {res['xla_compile_s']:.2f} s); per {T}-bin trial {res['per_trial_ms']:7.2f} ms "
          f"(min {res['per_trial_ms_min']:.2f}) -> targets "
          f"{'met' if ok else 'MISSED'} (< {TARGETS['per_trial_ms']:g} ms, "
          f"< {TARGETS['compile_s']:g} s); final world state "
          f"{np.round(res['final_world_state'], 3).tolist()}")
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed trials (default 50)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {platform.processor() or '?'}"
          f", {os.cpu_count()} cpus, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    results = {"reaching": bench("reaching", reaching_inputs(), args.repeats),
               "posner": bench("posner", posner_inputs(), args.repeats)}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    ok = all(r["meets_targets"] for r in results.values())
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
