"""The ``cpsych`` command line: one sub-command per experiment.

Each experiment module (``experiments/<name>.py``) provides ``add_arguments(parser)`` and
``run(args) -> int``; the command line imports only the one asked for.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cpsych import cache
from cpsych.validation import run_command

COMMANDS: dict[str, tuple[str, str]] = {
    "convolution": ("cpsych.experiments.convolution",
                    "invert the linear convolution model on SPM's reference data"),
    "posner": ("cpsych.experiments.posner", "attention as precision: valid vs invalid cues"),
    "force-matching": ("cpsych.experiments.force_matching",
                       "force-matching illusion in health, schizophrenia and autism"),
    "pursuit": ("cpsych.experiments.pursuit", "smooth pursuit with occlusion"),
    "mmn": ("cpsych.experiments.mmn", "mismatch negativity: roving oddball with learning"),
    "sweep": ("cpsych.experiments.sweep_cli", "precision sweeps of a paradigm over a grid"),
    "phase-diagrams": ("cpsych.experiments.phase_diagrams", "precision phase diagrams"),
    "fit": ("cpsych.experiments.fit", "fit a paradigm's parameters to data (numpyro NUTS)"),
    "fit-pursuit": ("cpsych.experiments.fit_pursuit",
                    "fit the pursuit model to human eye traces (multi-start MAP)"),
    "compare": ("cpsych.experiments.compare", "compare fits by PSIS-LOO (ArviZ)"),
    "recovery": ("cpsych.experiments.recovery",
                 "parameter recovery from direct-simulator participants"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cpsych",
        description="Computational psychiatry in JAX: simulate, sweep and fit active-inference "
                    "models of aberrant precision.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("cpsych.experiments"):
                continue  # experiment not available in this installation
            raise
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip())
        mod.add_arguments(p)
        cache.add_argument(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from cpsych import __version__

        print(__version__)
        return 0
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return run_command(args._run, args, f"cpsych {args.command}")


if __name__ == "__main__":
    sys.exit(main())
