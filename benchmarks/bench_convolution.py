"""Speed of the generalised filter on the linear convolution model (SPEC 5.1, 8).

Measures, on SPM's reference data (4 channels x 32 bins, 2 states, 1 cause, n = 7, d = 3):

1. compile time of the jitted core ``filtering.run_jit`` (trace + lower, and XLA compile);
2. time per inversion after compilation (median of many calls of the compiled core, and of
   the whole ``cpsych.invert`` with validation and the xarray wrapping);
3. inversions per second for a batch under ``jax.jit(jax.vmap(...))`` over independent data
   noise realisations and sensory log-precisions (the shape of a precision sweep or a fit);
4. peak resident memory of the process (``getrusage`` maxrss);
5. the per-step matrix exponential alone (batched, microseconds per exponential): the engine's
   ``phi_step``, the previous engine (``jax.scipy.linalg.expm``, ``max_squarings=40``) and a
   bare kernel (Pade-13, one LU solve, 6 squarings, no norm or branches) on the inversion's own
   step matrices; and the *bare-kernel limit*: inversions per second if a batched inversion cost
   only its ``T`` steps of that bare kernel (``T`` batched kernels under ``lax.scan``). The
   ratio of the batched rate to this limit has a target of 0.7 (1.0 would mean the whole filter
   costs less than its exponentials would with a textbook kernel).

Usage (from the repository root)::

    python benchmarks/bench_convolution.py                 # all checks, batch of 1000
    taskset -c 0,1 python benchmarks/bench_convolution.py  # pin to 2 cores
    python benchmarks/bench_convolution.py --json out.json
    python benchmarks/bench_convolution.py --batch 300 --repeats 50 --batch-repeats 3  # quick

Targets (2 CPU cores): < 5 ms per inversion, < 10 s compile, >= 300 inversions/s batched;
batched / bare-kernel limit >= 0.7 (informative).
The exit status is 0 whether or not targets are met (``--strict`` makes a miss exit 1).
"""

from __future__ import annotations

import os

# Before NumPy/JAX load: JAX's small LAPACK calls pay a flat ~16 ms through a threaded
# OpenBLAS (SPEC 8).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cpsych  # noqa: E402
from cpsych import filtering  # noqa: E402
from cpsych.experiments.convolution import load_reference  # noqa: E402
from cpsych.models import convolution  # noqa: E402

TARGETS = {"per_inversion_ms": 5.0, "compile_s": 10.0, "batched_per_s": 300.0}
#: Batched inversions per second over the bare-kernel limit (informative; not in --strict).
KERNEL_RATIO_TARGET = 0.7


def _timeit(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU times of ``repeats`` calls (results waited for)."""
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _with_log_pi_z(model, lp):
    """``model`` with its sensory log-precision replaced by a (traced) scalar ``lp``."""
    lv = model.levels[0]
    lv = dataclasses.replace(lv, log_pi_z=jnp.broadcast_to(lp, lv.log_pi_z.shape))
    return dataclasses.replace(model, levels=(lv,))


def batch_inputs(model, ref, batch: int, seed: int = 0):
    """``batch`` data sets: the true signal ``C x`` plus fresh smooth noise at a log-precision
    drawn uniformly in [6, 10], and the matching model log-precision."""
    clean = jnp.asarray(convolution.C @ ref["X"])
    keys = jax.random.split(jax.random.key(seed), batch + 1)
    log_pi = jax.random.uniform(keys[0], (batch,), minval=6.0, maxval=10.0)
    s = float(np.asarray(model.s))
    noise = jax.vmap(lambda k, lp: cpsych.smooth_noise(k, clean.shape, s, lp))(keys[1:], log_pi)
    return clean[None] + noise, log_pi


def step_inputs(model, y, eta) -> tuple[jax.Array, jax.Array, float]:
    """The ``(A, bs, dt)`` of every call of :func:`cpsych.linearisation.phi_step` in one
    inversion of ``y`` (``A``: ``(T, m, m)``, ``bs``: ``(T, p, m)``), recorded by running the
    filter once (unjitted) with a recording ``phi_step`` in every cpsych module that imported
    it: independent of the filter's internals."""
    from cpsych import linearisation

    orig = linearisation.phi_step
    calls: list = []

    def spy(A, bs, dt):
        jax.debug.callback(lambda a, b: calls.append((np.asarray(a), np.asarray(b))), A, bs)
        calls_dt.append(dt)
        return orig(A, bs, dt)

    calls_dt: list = []
    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("cpsych") and getattr(m, "phi_step", None) is orig]
    for m in patched:
        m.phi_step = spy
    try:
        jax.block_until_ready(filtering.run(model, y, eta))
    finally:
        for m in patched:
            m.phi_step = orig
    A = jnp.asarray(np.stack([c[0] for c in calls]))
    bs = jnp.asarray(np.stack([c[1] for c in calls]))
    return A, bs, float(calls_dt[0])


#: Pade-13 numerator coefficients ``b_k = (26 - k)! 13! / (26! (13 - k)! k!)`` (Higham 2005).
PADE13 = tuple(math.factorial(26 - k) * math.factorial(13)
               / (math.factorial(26) * math.factorial(13 - k) * math.factorial(k))
               for k in range(14))
THETA13 = 5.371920351148152  # largest 1-norm at which Pade-13 is accurate to double precision


def pade13_kernel(X: jax.Array, squarings: int = 6) -> jax.Array:
    """The bare kernel: ``r_13(X)^(2^squarings)`` with the diagonal Pade-13 approximant
    ``r_13 = (V - U)^-1 (V + U)`` (6 products and one LU solve) and a fixed number of squarings,
    no norm, no branches."""
    b = PADE13
    eye = jnp.eye(X.shape[-1], dtype=X.dtype)
    X2 = X @ X
    X4 = X2 @ X2
    X6 = X4 @ X2
    U = X @ (X6 @ (b[13] * X6 + b[11] * X4 + b[9] * X2)
             + b[7] * X6 + b[5] * X4 + b[3] * X2 + b[1] * eye)
    V = X6 @ (b[12] * X6 + b[10] * X4 + b[8] * X2) + b[6] * X6 + b[4] * X4 + b[2] * X2 + b[0] * eye
    R = jnp.linalg.solve(V - U, V + U)
    for _ in range(squarings):
        R = R @ R
    return R


def _block_matrix(A, bs, dt):
    """``[[A dt, W], [0, S_p]]`` (the matrix :func:`~cpsych.linearisation.phi_step`
    exponentiates)."""
    p, m = bs.shape
    W = (bs * (dt ** jnp.arange(1, p + 1, dtype=A.dtype))[:, None])[::-1].T
    return jnp.block([[A * dt, W], [jnp.zeros((p, m), A.dtype), jnp.eye(p, k=1, dtype=A.dtype)]])


def exponential_costs(model, y, eta, batch: int, repeats: int) -> dict:
    """Per-step exponential alone, batched: the engine's ``phi_step``, the previous engine
    (``jax.scipy.linalg.expm(max_squarings=40)``), and the bare kernel; plus the bare-kernel
    limit of a batched inversion (``T`` steps of ``batch`` Pade-13 + 6 squarings exponentials,
    under ``lax.scan`` like the filter)."""
    import jax.scipy.linalg as jsl

    from cpsych import linearisation

    A1, bs1, dt = step_inputs(model, y, eta)
    T = A1.shape[0]
    idx = jnp.arange(batch) % T  # the inversion's own steps, cycled over the batch
    A, bs = A1[idx], bs1[idx]
    M = jax.vmap(lambda a, b: _block_matrix(a, b, dt))(A, bs)
    m = A.shape[-1]
    size = M.shape[-1]
    norms = jnp.max(jnp.sum(jnp.abs(M), axis=1), axis=1)
    s13 = jnp.maximum(0.0, jnp.ceil(jnp.log2(norms / THETA13)))
    X13 = M * (2.0 ** -s13)[:, None, None]  # scaled into Pade-13's range
    variants = {
        "engine phi_step": (jax.vmap(lambda a, b: linearisation.phi_step(a, b, dt)), (A, bs)),
        "jax.scipy.linalg.expm(max_squarings=40)":
            (jax.vmap(lambda x: jsl.expm(x, max_squarings=40)[:m, -1]), (M,)),
        "bare Pade-13 + 6 squarings": (jax.vmap(pade13_kernel), (X13,)),
    }
    out: dict = {"size": size, "batch": batch, "median_norm1": float(jnp.median(norms)),
                 "pade13_squarings_needed": int(jnp.max(s13))}
    ref = None
    for name, (fn, args) in variants.items():
        f = jax.jit(fn)
        r = jax.block_until_ready(f(*args))
        wall, cpu = _timeit(lambda f=f, args=args: f(*args), repeats)
        entry = {"us_per_exp": 1e6 * statistics.median(wall) / batch,
                 "cpu_us_per_exp": 1e6 * statistics.median(cpu) / batch}
        if name != "bare Pade-13 + 6 squarings":
            ref = r if ref is None else ref
            entry["max_rel_diff"] = float(jnp.max(jnp.abs(r - ref)) / jnp.max(jnp.abs(ref)))
        out[name] = entry

    def limit(X):  # T batched exponentials in sequence, as in one batched inversion
        def body(c, _):
            R = jax.vmap(pade13_kernel)(X + c)
            return c + 1e-300 * R[0, 0, 0], None  # a dependence between steps (not hoisted)
        return jax.lax.scan(body, jnp.zeros((), X.dtype), None, length=T)[0]

    f = jax.jit(limit)
    jax.block_until_ready(f(X13))
    wall, cpu = _timeit(lambda: f(X13), repeats)
    out["kernel_batch_s"] = statistics.median(wall)
    out["kernel_batch_cpu_s"] = statistics.median(cpu)
    out["kernel_limit_per_s"] = batch / out["kernel_batch_s"]
    out["kernel_limit_per_cpu_s"] = batch / out["kernel_batch_cpu_s"]
    out["steps"] = T
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1000, help="batch size (default 1000)")
    parser.add_argument("--repeats", type=int, default=300,
                        help="timed calls for the per-inversion median (default 300)")
    parser.add_argument("--batch-repeats", type=int, default=7,
                        help="timed calls of the batch (default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--no-kernel", action="store_true",
                        help="skip the per-step exponential and the bare-kernel limit")
    args = parser.parse_args(argv)

    ref = load_reference()
    model = convolution.model().validate()
    y = jnp.asarray(ref["Y"])
    eta = jnp.zeros(1)
    res: dict = {
        "jax": jax.__version__, "backend": jax.default_backend(),
        "device": str(jax.devices()[0]), "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    }

    # 1. compile (ahead of time, so tracing and XLA compilation are timed apart)
    c0, t0 = time.process_time(), time.perf_counter()
    lowered = filtering.run_jit.lower(model, y, eta)
    t1 = time.perf_counter()
    core = lowered.compile()
    t2 = time.perf_counter()
    res.update(trace_lower_s=t1 - t0, xla_compile_s=t2 - t1, compile_s=t2 - t0,
               compile_cpu_s=time.process_time() - c0)
    t0 = time.perf_counter()
    jax.block_until_ready(core(model, y, eta))
    res["first_run_s"] = time.perf_counter() - t0

    # 2. time per inversion after compilation
    times, cpu = _timeit(lambda: core(model, y, eta), args.repeats)
    res["per_inversion_ms"] = 1e3 * statistics.median(times)
    res["per_inversion_ms_min"] = 1e3 * min(times)
    res["per_inversion_cpu_ms"] = 1e3 * statistics.median(cpu)
    res["per_step_us"] = 1e6 * statistics.median(times) / y.shape[1]
    cpsych.invert(convolution.model(), ref["Y"])  # warm the jit cache of the public path
    times, _ = _timeit(lambda: cpsych.invert(convolution.model(), ref["Y"]),
                       max(20, args.repeats // 10))
    res["invert_ms"] = 1e3 * statistics.median(times)

    # 3. a batch under vmap: independent noise realisations and sensory precisions
    yb, lpb = batch_inputs(model, ref, args.batch)
    yb, lpb = jax.block_until_ready((yb, lpb))

    def one(yy, lp):
        return filtering.run(_with_log_pi_z(model, lp), yy, eta)

    t0 = time.perf_counter()
    batched = jax.jit(jax.vmap(one)).lower(yb, lpb).compile()
    res["batch_compile_s"] = time.perf_counter() - t0
    out = jax.block_until_ready(batched(yb, lpb))  # warm-up
    times, cpu = _timeit(lambda: batched(yb, lpb), args.batch_repeats)
    res["batch"] = args.batch
    res["batch_s"] = statistics.median(times)
    res["batch_s_min"] = min(times)
    res["batched_per_s"] = args.batch / res["batch_s"]
    res["batched_per_s_best"] = args.batch / res["batch_s_min"]
    # CPU time is robust to other processes on the machine: inversions per CPU-second
    res["batch_cpu_s"] = statistics.median(cpu)
    res["batched_per_cpu_s"] = args.batch / res["batch_cpu_s"]
    # the batch computes what single inversions compute
    single = core(_with_log_pi_z(model, lpb[0]), yb[0], eta)
    res["batch_vs_single_max_abs"] = float(jnp.max(jnp.abs(out.x[0] - single.x)))
    if res["batch_vs_single_max_abs"] > 1e-9:
        print(f"WARNING: batched and single inversions differ by "
              f"{res['batch_vs_single_max_abs']:.3g}", file=sys.stderr)

    # 4. peak memory (Linux: kilobytes)
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["load_average_1min"] = os.getloadavg()[0]

    # 5. the per-step exponential alone, and the bare-kernel limit of the batched rate
    if not args.no_kernel:
        k = exponential_costs(model, y, eta, args.batch, args.batch_repeats)
        k["ratio"] = res["batched_per_s"] / k["kernel_limit_per_s"]
        k["ratio_cpu"] = res["batched_per_cpu_s"] / k["kernel_limit_per_cpu_s"]
        res["exponential"] = k

    ok = {
        "compile_s": res["compile_s"] < TARGETS["compile_s"],
        "per_inversion_ms": res["per_inversion_ms"] < TARGETS["per_inversion_ms"],
        "batched_per_s": res["batched_per_s"] >= TARGETS["batched_per_s"],
    }
    res["targets"] = TARGETS
    res["targets_met"] = ok

    def mark(key):
        return "ok  " if ok[key] else "MISS"

    print(f"cpsych convolution benchmark  (jax {res['jax']}, {res['cpus']} CPUs, "
          f"OPENBLAS_NUM_THREADS={res['OPENBLAS_NUM_THREADS']})")
    print(f"  JAX device                    {res['backend']}: {res['device']}")
    print(f"  compile (trace+lower / XLA)   {res['compile_s']:8.2f} s    "
          f"({res['trace_lower_s']:.2f} / {res['xla_compile_s']:.2f}; "
          f"CPU {res['compile_cpu_s']:.2f} s)   target < {TARGETS['compile_s']:g} s     "
          f"{mark('compile_s')}")
    print(f"  per inversion (compiled core) {res['per_inversion_ms']:8.3f} ms   "
          f"(min {res['per_inversion_ms_min']:.3f}, CPU {res['per_inversion_cpu_ms']:.3f}; "
          f"{res['per_step_us']:.0f} us/bin)   target < {TARGETS['per_inversion_ms']:g} ms    "
          f"{mark('per_inversion_ms')}")
    print(f"  per cpsych.invert (+checks)   {res['invert_ms']:8.3f} ms")
    print(f"  batched, jit(vmap) x {args.batch:<5d}    {res['batched_per_s']:8.0f} /s   "
          f"(best {res['batched_per_s_best']:.0f}/s, {res['batched_per_cpu_s']:.0f} per CPU-s; "
          f"compile {res['batch_compile_s']:.2f} s)   target >= {TARGETS['batched_per_s']:g} /s  "
          f"{mark('batched_per_s')}")
    print(f"  batch vs single inversion     {res['batch_vs_single_max_abs']:8.1e} max abs")
    if "exponential" in res:
        k = res["exponential"]
        print(f"  bare-kernel limit             {k['kernel_limit_per_s']:8.0f} /s   "
              f"({k['steps']} steps x {args.batch} Pade-13 + 6 squarings, {k['size']} x "
              f"{k['size']}: {k['kernel_limit_per_cpu_s']:.0f} per CPU-s)")
        flag = "ok  " if k["ratio"] >= KERNEL_RATIO_TARGET else "MISS"
        print(f"  batched / kernel limit        {k['ratio']:8.2f}      (CPU time: "
              f"{k['ratio_cpu']:.2f})   target >= {KERNEL_RATIO_TARGET:g}, moonshot >= 1   "
              f"{flag}")
        print(f"  per-step exponential, jit(vmap) x {args.batch} (median 1-norm "
              f"{k['median_norm1']:.3g}, Pade-13 needs {k['pade13_squarings_needed']} "
              "squarings):")
        for name in ("engine phi_step", "jax.scipy.linalg.expm(max_squarings=40)",
                     "bare Pade-13 + 6 squarings"):
            e = k[name]
            diff = f"   rel. diff {e['max_rel_diff']:.0e}" if "max_rel_diff" in e else ""
            print(f"    {name:40s} {e['us_per_exp']:7.1f} us   (CPU {e['cpu_us_per_exp']:.1f} us)"
                  f"{diff}")
    print(f"  peak memory (maxrss)          {res['peak_rss_mib']:8.0f} MiB")
    print(f"  load average (1 min)          {res['load_average_1min']:8.2f}   "
          "(wall times are only meaningful on an otherwise idle machine)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 1 if (args.strict and not all(ok.values())) else 0


if __name__ == "__main__":
    sys.exit(main())
