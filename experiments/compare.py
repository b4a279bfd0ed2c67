"""Compare fits of the same data by PSIS-LOO (ArviZ): which model predicts held-out rows best.

``cpsych compare FIT_DIR FIT_DIR ... --out DIR`` reads each directory's fit.nc (written by
``cpsych fit``), runs ``arviz.compare`` (PSIS-LOO, stacking weights) and writes DIR/compare.csv,
best first, whose first column ``model`` is each fit's directory name, then elpd_loo, se
(its standard error), elpd_diff and dse (difference from the best and its SE), weight, p_loo,
rank and warning (True where Pareto k > 0.7 makes LOO unreliable), and the figure DIR/compare
(arviz.plot_compare; PDF and PNG). Typical use: the same data fitted with and without a group
effect (``cpsych fit ... --no-group-effect``), or with different free parameters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpsych.experiments import module_main

__all__ = ["add_arguments", "run", "main"]

DEFAULT_OUT = "results/compare"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fits", nargs="+", metavar="FIT_DIR",
                        help="directories written by cpsych fit (two or more)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--no-figures", action="store_true", help="write the table only")


def run(args: argparse.Namespace) -> int:
    from cpsych.fit.data import write_csv
    from cpsych.fit.hierarchical import compare
    from cpsych.plotting import save_figure

    if len(args.fits) < 2:
        raise ValueError(f"FIT_DIR: compare needs at least two fits, got {len(args.fits)}")
    names = [Path(f).resolve().name or str(f) for f in args.fits]
    if len(set(names)) != len(names):
        names = [str(f) for f in args.fits]
    if len(set(names)) != len(names):
        raise ValueError(f"FIT_DIR: the same fit is named twice ({args.fits})")
    table = compare(dict(zip(names, args.fits, strict=True)))
    out = Path(args.out)
    rows = [[_fmt(v) for v in row] for row in table.itertuples(index=False)]
    csv = write_csv(out / "compare.csv", list(table.columns), rows)
    print(f"cpsych compare: PSIS-LOO, {len(names)} fits (best first)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"  table:  {csv}")
    if not args.no_figures:
        from cpsych.fit.figures import plot_compare

        _, png = save_figure(plot_compare(table), out / "compare")
        print(f"  figure: {png}")
    return 0


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
