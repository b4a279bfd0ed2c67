"""Studies: thin scripts that run the paradigms of :mod:`cpsych.models` and write results.

Each study module provides ``add_arguments(parser)`` and ``run(args) -> int``; it runs as
``cpsych <command>`` or as ``python -m cpsych.experiments.<name>`` (through
:func:`module_main`). Studies never import the command line.
"""

from __future__ import annotations

import argparse
from types import ModuleType

__all__ = ["module_main", "add_out_argument"]


def add_out_argument(parser: argparse.ArgumentParser, default: str,
                     what: str = "output directory") -> None:
    """The studies' common ``--out DIR`` option (proved writable before a study runs)."""
    parser.add_argument("--out", metavar="DIR", default=default,
                        help=f"{what} (default: {default})")


def module_main(module: ModuleType, argv: list[str] | None = None) -> int:
    """``python -m cpsych.experiments.<name>``: the study's own parser and ``run``.

    The output directory (``--out``) is proved writable before anything runs; bad input
    (``ValueError``, ``TypeError``, file errors) is printed on one line, without a traceback,
    and the exit status is 2, as for ``cpsych <command>`` (:func:`cpsych.validation.run_command`).
    """
    from cpsych.cache import add_argument as add_cache_argument
    from cpsych.validation import run_command

    prog = f"python -m {module.__spec__.name}"
    parser = argparse.ArgumentParser(prog=prog, description=(module.__doc__ or "").strip())
    module.add_arguments(parser)
    add_cache_argument(parser)
    args = parser.parse_args(argv)
    return run_command(module.run, args, prog)
