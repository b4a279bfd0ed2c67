"""Speed of the hierarchical force-matching fit (SPEC 7, issue 7).

Measures, on synthetic data of 20 participants (10 controls, 10 patients) x 4 target levels x
2 conditions (160 trials):

1. building the emulator: the force-matching simulator on its default grid (29 values of the
   attenuation h x 33 intended levels = 957 trials, jit + vmap), including compilation;
2. the optax MAP point estimate (L-BFGS; first call, with compilation, and a second call);
3. NUTS, 4 chains x 1000 draws after 500 warm-up draws (chains vectorised), with R-hat, ESS
   and divergences.

Usage (from the repository root)::

    python benchmarks/bench_fit.py [--chains 4] [--draws 1000] [--json out.json]

Target: NUTS < 10 min on 2 CPU cores. Exit status 0 whether or not the target is met
(``--strict`` makes a miss exit 1).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy/JAX load (SPEC 8)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 600.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--json", default=None)
    p.add_argument("--strict", action="store_true")
    a = p.parse_args(argv)

    import numpy as np

    from cpsych.models.force_matching_fit import (
        default_emulator,
        fit_force_matching,
        map_force_matching,
        synthetic_force_data,
    )

    t0 = time.perf_counter()
    emu, _ = default_emulator()
    t_emu = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    h = np.r_[rng.normal(6.0, 0.5, 10), rng.normal(4.0, 0.5, 10)]
    ds = synthetic_force_data(h, ["control"] * 10 + ["patient"] * 10,
                              conditions=("finger", "slider"), condition_effects=(0.0, -1.0),
                              noise_sd=0.1, emulator=emu, seed=1)
    m1 = map_force_matching(ds, emu)
    m2 = map_force_matching(ds, emu, seed=1)
    t0 = time.perf_counter()
    fit = fit_force_matching(ds, emu, chains=a.chains, warmup=a.warmup, draws=a.draws,
                             init_map=False)
    t_total = time.perf_counter() - t0
    res = {
        "trials": int(ds.sizes["trial"]), "emulator_s": t_emu,
        "map_first_s": m1.seconds, "map_second_s": m2.seconds,
        "map_iterations": int(m1.losses.size),
        "nuts_sampling_s": float(fit.sample_stats.attrs["sampling_time_s"]),
        "nuts_total_s": t_total, "chains": a.chains, "draws": a.draws, "warmup": a.warmup,
        "max_r_hat": fit.max_r_hat, "min_ess": fit.min_ess, "divergences": fit.divergences,
        "corr_h": float(np.corrcoef(fit.posterior["h"].mean(("chain", "draw")), h)[0, 1]),
    }
    for k, v in res.items():
        print(f"{k:18s} {v:.4g}" if isinstance(v, float) else f"{k:18s} {v}")
    ok = res["nuts_total_s"] < TARGET_S
    print(f"target NUTS < {TARGET_S:.0f} s: {'met' if ok else 'MISSED'}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 1 if (a.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
