"""Fit a paradigm's free parameters to behavioural data: hierarchical Bayesian model, NUTS.

``cpsych fit PARADIGM DATA.csv --free NAME[,NAME...] --out DIR`` reads the tidy CSV of the
paradigm's data format (force matching: participant, group, condition, target, matched; one
row per trial), builds an emulator of the paradigm's prediction over the free parameters
(a grid simulated with cpsych.sweep, interpolated; its error against direct simulation is
printed), and fits participants within groups, group means and differences and condition
effects (cpsych.fit.hierarchical) with numpyro NUTS (or --method map: optax MAP + Laplace).
Writes DIR/fit.nc (arviz.InferenceData: posterior, posterior_predictive, log_likelihood,
observed_data, constant_data, sample_stats), DIR/summary.csv (arviz.summary) and the figures
DIR/traces, DIR/groups and DIR/predictive (PDF and PNG). Diagnostics out of range (R-hat >
1.01, divergences, bulk ESS < 400, Pareto k > 0.7) are printed as warnings; a fit whose
R-hat exceeds 1.05 (chains that did not converge) exits with status 1.

``--no-group-effect`` fits one mean shared by every group: compare the two fits with
``cpsych compare``. Without PARADIGM the paradigm is force-matching (today's form
``cpsych fit DATA.csv``); without DATA.csv, the shipped synthetic force-matching example.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SPEC 8

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from cpsych.experiments import module_main  # noqa: E402

__all__ = ["add_arguments", "run", "main", "read_data", "resolve", "parse_free",
           "emulator_span", "condition_effect",
           "add_emulator_arguments", "EXAMPLE", "R_HAT_FAIL"]

DEFAULT_OUT = "results/fit"
EXAMPLE = Path(__file__).parent / "data" / "force_matching_example.csv"
DEFAULT_PARADIGM = "force-matching"
#: R-hat above which ``cpsych fit`` exits with status 1 (the chains did not converge).
R_HAT_FAIL = 1.05


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """``--knots``, ``--span`` and ``--range``: the emulator grid (fit and recovery)."""
    parser.add_argument("--knots", type=int, default=None,
                        help="emulator knots per free parameter (default 25/11/7 for 1/2/3)")
    parser.add_argument("--span", type=float, default=1.75,
                        help="emulator grid: prior mean +- this many prior SDs (default 1.75); "
                             "narrow it to stay where the simulation is regular")
    parser.add_argument("--range", action="append", default=[], metavar="NAME=LOW,HIGH",
                        help="emulator grid of one parameter (repeatable; overrides --span "
                             "for it), e.g. h=1,7.2")


def condition_effect(text: str, free: tuple[str, ...]) -> bool | tuple[str, ...]:
    """``--condition-effect all|none|NAME[,NAME...]`` as ``fit``'s ``condition_effect``."""
    if text.strip() in ("all", "none"):
        return text.strip() == "all"
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in free]
    if not names or bad:
        raise ValueError(f"--condition-effect: expected all, none or names among --free "
                         f"({','.join(free)}), got '{text}'")
    return names


def emulator_span(args: argparse.Namespace, paradigm, free: tuple[str, ...]):
    """``--span`` and ``--range`` as :func:`cpsych.fit.hierarchical.fit`'s ``span``: a number,
    or ``{name: (low, high)}`` for every free parameter when ``--range`` names any (checked
    here, before anything compiles)."""
    from cpsych.fit.hierarchical import parameter_range

    if not (math.isfinite(args.span) and args.span > 0):
        raise ValueError(f"--span: expected a finite number of prior SDs > 0, got {args.span}")
    if not args.range:
        return args.span
    ranges = {}
    for item in args.range:
        name, sep, rest = item.partition("=")
        parts = rest.split(",")
        try:
            low, high = (float(v) for v in parts)
        except ValueError:
            raise ValueError(f"--range: expected NAME=LOW,HIGH (e.g. h=1,7.2), got '{item}'"
                             ) from None
        if not sep or name not in free:
            raise ValueError(f"--range: '{name}' is not a free parameter (--free: "
                             f"{','.join(free)})")
        ranges[name] = (low, high)
    out = {n: ranges.get(n) or parameter_range(paradigm, n, args.span, free) for n in free}
    try:
        for n in free:
            parameter_range(paradigm, n, out, free)
    except ValueError as err:
        raise ValueError(f"--range: {str(err).removeprefix('span: ')}") from None
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="[PARADIGM] DATA.csv",
                        help="paradigm name (default force-matching) and the data file "
                             "(default: the shipped force-matching example)")
    parser.add_argument("--free", default=None, metavar="NAME[,NAME...]",
                        help="parameters to fit (force-matching default: h)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--preset", default="control",
                        help="preset holding the other parameters (default control)")
    parser.add_argument("--no-group-effect", action="store_true",
                        help="one mean shared by every group (the comparison model)")
    parser.add_argument("--condition-effect", default="all", metavar="all|none|NAME[,NAME...]",
                        help="free parameters that shift with the condition (default all)")
    parser.add_argument("--likelihood", choices=("gaussian", "student"), default="gaussian",
                        help="response model (student: robust to outliers)")
    parser.add_argument("--method", choices=("nuts", "map"), default="nuts",
                        help="nuts (posterior) or map (optax MAP + Laplace, quick look)")
    parser.add_argument("--starts", type=int, default=4, help="MAP restarts (best kept)")
    add_emulator_arguments(parser)
    parser.add_argument("--direct", action="store_true",
                        help="simulate inside the likelihood (no emulator; slow)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up draws per chain")
    parser.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--reference-group", default=None,
                        help="group the differences are taken against (default: first label)")
    parser.add_argument("--reference-condition", default=None,
                        help="reference condition (default: first label)")
    parser.add_argument("--quick-grid", action="store_true",
                        help="coarser emulator grid (for tests and a first look)")
    parser.add_argument("--no-figures", action="store_true", help="write fit.nc and the "
                        "summary only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve(inputs: list[str]) -> tuple[str, str, str | None]:
    """``(paradigm, csv, note)`` from the positional arguments."""
    from cpsych.paradigm import names

    if len(inputs) > 2:
        raise ValueError(f"inputs: expected [PARADIGM] DATA.csv, got {len(inputs)} arguments "
                         f"{inputs}")
    if len(inputs) == 2:
        return inputs[0], inputs[1], None
    if len(inputs) == 1:
        if inputs[0] in names() and not Path(inputs[0]).exists():
            if inputs[0] != DEFAULT_PARADIGM:
                raise ValueError(f"DATA.csv: name the data file to fit {inputs[0]} to")
            return inputs[0], str(EXAMPLE), "no data file given: fitting the shipped example"
        return DEFAULT_PARADIGM, inputs[0], ("no paradigm given: reading it as force-matching "
                                             "data (cpsych fit PARADIGM DATA.csv)")
    return DEFAULT_PARADIGM, str(EXAMPLE), "no data file given: fitting the shipped example"


def read_data(path: str, paradigm):
    """The data set of ``path`` in ``paradigm``'s format (:func:`cpsych.fit.data.read_data`:
    errors name file, line and column, before anything is compiled)."""
    from cpsych.fit.data import read_data as reader

    return reader(path, paradigm)


def parse_free(text: str, paradigm) -> tuple[str, ...]:
    """``--free NAME[,NAME...]`` as parameter names of ``paradigm`` (one-line error naming
    ``--free`` otherwise)."""
    free = tuple(f.strip() for f in text.split(",") if f.strip())
    for f in free:
        try:
            paradigm.parameter(f)
        except ValueError as err:
            raise ValueError(f"--free: {str(err).split(': ', 1)[1]}") from None
    return free


def _check_args(args) -> None:
    for name, low in (("chains", 2 if args.method == "nuts" else 1), ("warmup", 10),
                      ("draws", 10), ("starts", 1)):
        v = getattr(args, name)
        if v < low:
            raise ValueError(f"--{name}: too small ({v}); use at least {low}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.knots is not None and args.knots < 3:
        raise ValueError(f"--knots: expected at least 3, got {args.knots}")


def run(args: argparse.Namespace) -> int:
    from cpsych.fit.hierarchical import fit
    from cpsych.paradigm import get

    _check_args(args)
    name, csv, note = resolve(args.inputs)
    paradigm = get(name)
    if paradigm.data is None:
        raise ValueError(f"PARADIGM: {name} has no data format; it cannot be fitted to data")
    if args.free is None:
        if name != DEFAULT_PARADIGM:
            raise ValueError(f"--free: name the parameters to fit; choose from "
                             f"{', '.join(paradigm.parameter_names)}")
        args.free = "h"
    free = parse_free(args.free, paradigm)
    span = emulator_span(args, paradigm, free)
    shifted = condition_effect(args.condition_effect, free)
    paradigm.params(args.preset)
    if note:
        print(f"cpsych fit: note: {note}")
    ds = read_data(csv, paradigm)  # errors name file, line and column, before compiling
    knots = args.knots
    if args.quick_grid and knots is None:
        knots = {1: 9, 2: 7}.get(len(free), 5)
    res = fit(paradigm, ds, free, preset=args.preset, group_effect=not args.no_group_effect,
              condition_effect=shifted,
              likelihood=args.likelihood, emulator=None if args.direct else "auto",
              knots=knots, span=span, method=args.method,
              chains=args.chains if args.method == "nuts" else 1, warmup=args.warmup,
              draws=args.draws, seed=args.seed,
              starts=args.starts, reference_group=args.reference_group,
              reference_condition=args.reference_condition, progress=not args.no_progress,
              verbose=False)
    res.idata.posterior.attrs["source"] = str(csv)
    from cpsych.fit.hierarchical import describe

    paths = res.save(args.out, figures=not args.no_figures)
    c = res.coded
    print(f"cpsych fit: {csv}: {c.n} rows, {len(c.participants)} participants, groups "
          f"{list(c.groups)}, conditions {list(c.conditions)}")
    print(describe(res))
    s = res.summary(hdi_prob=0.9)
    rows = [r for r in s.index if not r.startswith("theta")]
    print("  posterior mean [90 % HDI]:")
    for r in rows:
        print(f"    {r:40s} {s.loc[r, 'mean']:+8.4g}  [{s.loc[r, 'hdi_5%']:+.4g}, "
              f"{s.loc[r, 'hdi_95%']:+.4g}]  R-hat {s.loc[r, 'r_hat']:.3f}")
    for key, p in paths.items():
        print(f"  {key + ':':10s} {p}")
    r_hat = res.diagnostics.get("max_r_hat", 1.0)
    if r_hat > R_HAT_FAIL:
        print(f"cpsych fit: error: the chains did not converge (max R-hat {r_hat:.3f} > "
              f"{R_HAT_FAIL}); the results in {args.out} are not a posterior. Check the data "
              "(a typo in a value?), or run longer", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
