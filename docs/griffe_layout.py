"""Griffe extension: the repository's ``models/`` and ``experiments/`` are ``cpsych.models`` and
``cpsych.experiments`` once installed (``[tool.setuptools.package-dir]`` in ``pyproject.toml``).

Griffe reads the installed ``cpsych`` package from its folder and cannot see that mapping, so
this extension loads the two folders and attaches them to ``cpsych`` under their installed
names; the API reference then documents and cross-links ``cpsych.models.posner`` and the rest.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import griffe

#: installed submodule -> its package name on import (located through the import system).
MAPPED = ("cpsych.models", "cpsych.experiments")


class InstalledLayout(griffe.Extension):
    """Attach ``cpsych.models`` and ``cpsych.experiments`` to the loaded ``cpsych`` package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "cpsych":
            return
        for dotted in MAPPED:
            name = dotted.rsplit(".", 1)[1]
            if name in pkg.members:
                continue
            spec = importlib.util.find_spec(dotted)
            if spec is None or not spec.submodule_search_locations:
                continue
            folder = Path(list(spec.submodule_search_locations)[0])
            sub = griffe.GriffeLoader(extensions=loader.extensions,
                                      docstring_parser=loader.docstring_parser,
                                      docstring_options=loader.docstring_options).load(folder)
            sub.name = name
            sub.parent = pkg
            pkg.set_member(name, sub)
