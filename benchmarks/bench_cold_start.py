"""Cold and warm starts of the command line (issue: instant second starts).

Runs a ``cpsych`` command twice, each in a fresh process, against a new, empty persistent
compilation cache: the first run compiles everything (a cold start on a new machine), the
second loads the compiled executables from the cache. Prints wall and CPU time of both and
their ratio.

    python benchmarks/bench_cold_start.py                      # cpsych force-matching
    python benchmarks/bench_cold_start.py --command pursuit
    python benchmarks/bench_cold_start.py --no-figures         # the computation alone

Wall times are only meaningful on an otherwise idle machine (the script prints the load
average); CPU time (user + system of the child) is the steadier figure on a shared one.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one child process (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--command", default="force-matching", help="cpsych command to time")
    ap.add_argument("--repeats", type=int, default=1,
                    help="cold/warm pairs to run (each with a new cache); medians printed")
    ap.add_argument("--no-figures", action="store_true",
                    help="pass --no-figures to the command (time the computation alone)")
    args = ap.parse_args()
    exe = shutil.which("cpsych")
    base = [exe] if exe else [sys.executable, "-m", "cpsych.cli"]
    probe = subprocess.run([sys.executable, "-c", "import jax; d = jax.devices()[0]; "
                            "print(f'{jax.default_backend()}: {d}')"],
                           capture_output=True, text=True, check=False)
    print(f"JAX device (as the command sees it) {probe.stdout.strip() or 'unknown'}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"command: cpsych {args.command}{' --no-figures' if args.no_figures else ''}")
    extra = ["--no-figures"] if args.no_figures else []
    rows = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "CPSYCH_CACHE_DIR": str(Path(tmp) / "cache"),
                   "OPENBLAS_NUM_THREADS": "1"}
            env.pop("CPSYCH_NO_CACHE", None)
            cold = _run(base + [args.command, "--out", str(Path(tmp) / "a")] + extra, env)
            warm = _run(base + [args.command, "--out", str(Path(tmp) / "b")] + extra, env)
            rows.append((cold, warm))
    med = sorted(rows, key=lambda r: r[0][0])[len(rows) // 2]
    (cw, cc), (ww, wc) = med
    print(f"  first run (empty cache)   wall {cw:6.2f} s   CPU {cc:6.2f} s   target < 10 s")
    print(f"  second run (cache filled) wall {ww:6.2f} s   CPU {wc:6.2f} s")
    print(f"  second / first            wall {ww / cw:6.2f}     CPU {wc / cc:6.2f}     "
          f"target <= 0.4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
