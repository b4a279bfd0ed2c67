"""Parameter recovery: synthetic participants from the direct simulator, fitted back.

``cpsych recovery PARADIGM --free NAME[,NAME...] --participants N --out DIR`` draws the free
parameters of N participants uniformly over the prior mean +- --spread prior SDs (clipped to
the parameters' bounds; the others at the preset), simulates their responses at the
paradigm's default design with the DIRECT simulator (not the emulator the fit uses, so the
recovery includes the emulator's interpolation error) plus Gaussian noise (--noise, response
units; with --with, further kinds of response of the paradigm's data format, e.g. force
matching's reported uncertainty, in rows of their own, each with its own noise:
``--with uncertainty --noise matched=0.1,uncertainty=0.001``), fits them with the
hierarchical model of ``cpsych fit`` and reports per parameter the correlation r of true and
posterior-mean values, the bias and the 90 % interval coverage, and between parameters the
correlation of the estimates and the mean posterior correlation (identifiability: near +-1,
the data cannot tell the two apart). Writes DIR/recovery.nc,
DIR/recovery.csv (one row per parameter) and the figure DIR/recovery (PDF and PNG).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SPEC 8

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cpsych.experiments import module_main  # noqa: E402

__all__ = ["add_arguments", "run", "main"]

DEFAULT_OUT = "results/recovery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cpsych.experiments.fit import add_emulator_arguments

    parser.add_argument("paradigm", nargs="?", default="force-matching",
                        help="registered paradigm (default force-matching)")
    parser.add_argument("--free", default="h", metavar="NAME[,NAME...]",
                        help="parameters to recover (default h)")
    parser.add_argument("--participants", type=int, default=20,
                        help="synthetic participants (default 20)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--noise", default="0.1", metavar="SD|KIND=SD,...",
                        help="response noise SD (response units; default 0.1); with --with "
                             "one per kind of response, e.g. matched=0.1,uncertainty=0.001")
    parser.add_argument("--with", dest="also", default="", metavar="KIND[,KIND...]",
                        help="further kinds of response of the paradigm's data format to "
                             "simulate too (e.g. force matching's 'uncertainty'), at the "
                             "paradigm's default design")
    parser.add_argument("--repeats", type=int, default=2,
                        help="responses per design value and participant (default 2)")
    parser.add_argument("--spread", type=float, default=1.0,
                        help="true values span the prior mean +- this many prior SDs")
    parser.add_argument("--method", choices=("nuts", "map"), default="nuts")
    add_emulator_arguments(parser)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_responses(paradigm, also: str, noise: str
                    ) -> tuple[dict[str, tuple[float, ...]] | None, float | dict[str, float]]:
    """``--with`` and ``--noise``: the further kinds of response (each at the paradigm's
    default design of its option) and the noise SD, one number or one per kind."""
    fmt = paradigm.data
    kinds = [k.strip() for k in also.split(",") if k.strip()]
    others = dict(fmt.other_responses) if fmt is not None else {}
    for k in kinds:
        if k not in others:
            raise ValueError(f"--with: '{k}' is not a further kind of response of "
                             f"{paradigm.name}; choose from {', '.join(others) or '(none)'}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"--with: kinds named twice: {also}")

    def sd(text: str, what: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"--noise: expected a finite SD > 0{what}, got {text!r}")
        return v

    if not kinds:
        return None, sd(noise, "")
    items = dict(item.split("=", 1) for item in noise.split(",") if "=" in item)
    wanted = [fmt.response, *kinds]
    if set(items) != set(wanted) or noise.count("=") != len(wanted):
        raise ValueError(f"--noise: with --with give one SD per kind of response, e.g. "
                         f"{','.join(f'{k}=SD' for k in wanted)}; got {noise!r}")
    responses = {}
    for k in kinds:
        option = others[k][1]
        responses[k] = (tuple(float(v) for v in paradigm.design[option]) if option
                        else (0.0,))
    return responses, {k: sd(items[k], f" for {k}") for k in wanted}


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych.experiments.fit import emulator_span, parse_free
    from cpsych.fit.hierarchical import recovery
    from cpsych.paradigm import get

    paradigm = get(args.paradigm)
    free = parse_free(args.free, paradigm)
    if args.participants < 3:
        raise ValueError(f"--participants: need at least 3, got {args.participants}")
    responses, noise = parse_responses(paradigm, args.also, args.noise)
    if not (np.isfinite(args.spread) and args.spread > 0):
        raise ValueError(f"--spread: expected a finite number of SDs > 0, got {args.spread}")
    span = emulator_span(args, paradigm, free)
    for name, low in (("repeats", 1), ("chains", 1), ("warmup", 10), ("draws", 10)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name}: too small ({getattr(args, name)}); use at least {low}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    rec, res = recovery(paradigm, free, args.participants, spread=args.spread,
                        noise_sd=noise, repeats=args.repeats, seed=args.seed,
                        responses=responses,
                        method=args.method, knots=args.knots, span=span,
                        chains=args.chains if args.method == "nuts" else 1,
                        warmup=args.warmup, draws=args.draws, progress=not args.no_progress,
                        verbose=False)
    out = Path(args.out)
    nc = cpsych.save(rec, out / "recovery.nc")
    from cpsych.fit.data import write_csv
    from cpsych.fit.hierarchical import describe

    rows = [[p, f"{float(rec['r'].sel(parameter=p)):.4f}",
             f"{float(rec['bias'].sel(parameter=p)):.4f}",
             f"{float(rec['coverage90'].sel(parameter=p)):.3f}"] for p in free]
    csv = write_csv(out / "recovery.csv", ["parameter", "r", "bias", "coverage90"], rows)
    print(f"cpsych recovery: {paradigm.name}, {args.participants} participants from the "
          f"direct simulator ({rec.attrs['simulate_s']:.1f} s), noise SD "
          f"{rec.attrs['noise_sd']}")
    print(describe(res))
    for p, r, b, c in rows:
        print(f"  {p:12s} r = {float(r):.3f}   bias {float(b):+.3f}   90 % coverage "
              f"{float(c):.2f}")
    if len(free) > 1:
        print("  mean posterior correlation between parameters (identifiability):")
        for i, p in enumerate(free):
            print(f"    {p:12s} " + "  ".join(f"{v:+.2f}" for v in rec["posterior_corr"].values[i]))
    print(f"  results: {nc}")
    print(f"  table:   {csv}")
    if not args.no_figures:
        from cpsych.fit.figures import plot_recovery
        from cpsych.plotting import save_figure

        _, png = save_figure(plot_recovery(rec), out / "recovery")
        print(f"  figure:  {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
