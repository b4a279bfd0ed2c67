"""MkDocs hooks of the cpsych site (``hooks:`` in ``mkdocs.yml``).

* **Version.** The site name and footer carry ``cpsych.__version__`` (read from
  ``cpsych/version.py`` without importing JAX); ``{{ cpsych_version }}`` in a page is replaced
  by it.
* **Figures.** Every experiment runs at build time, at a small size, in a subprocess started
  when the files are collected (it runs while the tutorials execute); its PNG and PDF figures
  become site files under ``figures/<experiment>/`` that pages link to. The build fails if an
  experiment fails or a figure is missing. The fitting studies take minutes each: they run
  only with ``CPSYCH_DOCS_FITS=1`` (the gallery says so otherwise). ``CPSYCH_DOCS_FIGURES=DIR``
  keeps the figures in ``DIR`` and reuses those already there (for ``mkdocs serve``).
* **Tutorials.** A tutorial page whose executed output holds anything written to stderr (a
  warning, a traceback) is reported as a warning, so ``mkdocs build --strict`` fails on it;
  errors already stop the build (mkdocs-jupyter's ``allow_errors: false``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.cpsych")

#: name -> (module, function, argv after --out, figure stems). Small sizes; all figures.
EXPERIMENTS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "convolution": ("cpsych.experiments.convolution", "main", [], ["convolution"]),
    "posner": ("cpsych.experiments.posner", "main", [],
               ["posner", "posner_trial_valid", "posner_trial_invalid"]),
    "force_matching": ("cpsych.experiments.force_matching", "main", [],
                       ["force_matching_curves", "attenuation_sweep", "false_inference",
                        "trial_control", "trial_schizophrenia"]),
    "pursuit": ("cpsych.experiments.pursuit", "main", [], ["pursuit_traces", "pursuit_human"]),
    "mmn": ("cpsych.experiments.mmn", "main", [], ["mmn"]),
    "phase_diagrams": ("cpsych.cli", "main:phase-diagrams", ["--size", "4", "--quiet"],
                       ["phase_force_matching", "phase_pursuit"]),
}
#: The fitting studies (minutes each): built with CPSYCH_DOCS_FITS=1.
FITS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "fit_force_matching": ("cpsych.experiments.fit_force_matching", "main",
                           ["--chains", "2", "--warmup", "150", "--draws", "150",
                            "--knots", "9"], ["traces", "groups", "predictive"]),
    "recovery": ("cpsych.experiments.recovery", "main",
                 ["--participants", "6", "--chains", "2", "--warmup", "150", "--draws", "150"],
                 ["recovery"]),
    "fit_pursuit": ("cpsych.experiments.fit_pursuit", "main",
                    ["--steps", "10", "--starts", "1", "--no-profile"],
                    ["fit_pursuit_traces", "fit_pursuit_effects"]),
}
#: The command that makes each experiment's figures (shown in the gallery).
COMMANDS = {
    "fit_force_matching": "cpsych fit --out results/fit",
    "recovery": "cpsych recovery force-matching --free h --participants 20 --out results/recovery",
    "fit_pursuit": "cpsych fit-pursuit --out results/fit_pursuit",
}

# Runs in the subprocess: each experiment's main(argv), timed; stops at the first failure.
_DRIVER = """
import importlib, json, sys, time
for name, module, func, argv in json.loads(sys.argv[1]):
    t0 = time.perf_counter()
    func, _, sub = func.partition(":")
    argv = ([sub] if sub else []) + argv
    rc = getattr(importlib.import_module(module), func)(argv)
    if rc:
        sys.exit(f"{name}: {module}.{func}({argv}) returned exit status {rc}")
    print(f"cpsych docs: {name} ran in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
"""

_state: dict = {}


def _version() -> str:
    spec = importlib.util.find_spec("cpsych")
    if spec is None or not spec.submodule_search_locations:
        raise PluginError("cpsych is not installed: pip install -e '.[docs]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    ns: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)  # noqa: S102 (our own file)
    return str(ns["__version__"])


def _wants_fits() -> bool:
    return os.environ.get("CPSYCH_DOCS_FITS", "") == "1"


def on_config(config, **kwargs):
    # The tutorials' kernels inherit this process's environment: single-threaded OpenBLAS
    # (JAX's small LAPACK calls are ~16 ms each with a thread pool; see the README).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    version = _version()
    _state["version"] = version
    config["site_name"] = f"cpsych {version}"
    config["copyright"] = f"cpsych {version} &middot; MIT licence"
    config["extra"]["cpsych_version"] = version
    return config


def _jobs() -> dict[str, tuple[str, str, list[str], list[str]]]:
    return {**EXPERIMENTS, **(FITS if _wants_fits() else {})}


def on_files(files, config, **kwargs):
    keep = os.environ.get("CPSYCH_DOCS_FIGURES", "")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="cpsych-docs-figures-"))
    root.mkdir(parents=True, exist_ok=True)
    _state.update(root=root, temporary=not keep)
    figdir = root / "figures"
    todo = []
    for name, (module, func, argv, stems) in _jobs().items():
        out = figdir / name
        if not all((out / f"{s}.{ext}").exists() for s in stems for ext in ("png", "pdf")):
            todo.append([name, module, func, ["--out", str(out), *argv]])
        for s in stems:
            for ext in ("png", "pdf"):
                files.append(File(f"figures/{name}/{s}.{ext}", str(root), config["site_dir"],
                                  config["use_directory_urls"]))
    _state["proc"] = None
    if todo:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        log.info("cpsych docs: running %s in the background", ", ".join(j[0] for j in todo))
        _state["t0"] = time.perf_counter()
        _state["log"] = root / "experiments.log"
        with open(_state["log"], "w") as fh:  # a file, not a pipe: the child never blocks
            _state["proc"] = subprocess.Popen(
                [sys.executable, "-c", _DRIVER, json.dumps(todo)], cwd=root, env=env,
                stdout=fh, stderr=subprocess.STDOUT, text=True)
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    markdown = markdown.replace("{{ cpsych_version }}", _state["version"])
    if "<!-- fit-figures -->" in markdown:
        markdown = markdown.replace("<!-- fit-figures -->", _fit_section())
    return markdown


def _fit_section() -> str:
    captions = {
        "fit_force_matching": ("Hierarchical fit of the shipped force-matching example "
                               "(`cpsych fit`, 2 chains x 150 draws here)",
                               {"traces": "NUTS traces with R-hat and ESS",
                                "densities": "posterior densities of group means and effects",
                                "predictive": "data over the posterior predictive bands"}),
        "recovery": ("Parameter recovery on synthetic participants (4 per group here)",
                     {"recovery": "true against recovered attenuation; group and condition "
                                  "effects"}),
        "fit_pursuit": ("The pursuit model fitted to the human eye-tracking data "
                        "(10 L-BFGS iterations here; 80 by default)",
                        {"fit_pursuit_traces": "eye velocity, data and fit, per condition",
                         "fit_pursuit_effects": "log-precisions and kinetics with 90 % "
                                                "Laplace intervals"}),
    }
    if not _wants_fits():
        lines = ['!!! note "Fitting studies"',
                 "    The fitting studies take minutes each, so this build leaves them out. "
                 "Build with `CPSYCH_DOCS_FITS=1 mkdocs build` to include their figures here, "
                 "or run them yourself:", ""]
        lines += [f"        {COMMANDS[name]}" for name in FITS]
        return "\n".join(lines) + "\n"
    out = []
    for name, (title, figs) in captions.items():
        out.append(f"### {title}\n")
        for stem, caption in figs.items():
            src = f"figures/{name}/{stem}"
            out.append(f"[![{caption}]({src}.png)]({src}.pdf)\n\n*{caption}* "
                       f"([PDF]({src}.pdf); `{COMMANDS[name]}`)\n")
    return "\n".join(out)


_STDERR = re.compile(r'<div[^>]*data-mime-type="application/vnd\.jupyter\.stderr"[^>]*>(.{0,600})',
                     re.S)


def on_post_page(output, page, config, **kwargs):
    if page.file.src_uri.startswith("tutorials/"):
        m = _STDERR.search(output)
        if m:
            text = re.sub(r"<[^>]+>", "", m.group(1)).strip()
            log.warning("tutorial %s wrote to stderr (a warning?): %s", page.file.src_uri,
                        text[:300])
    return output


def on_env(env, config, files, **kwargs):
    proc = _state.get("proc")
    if proc is not None:
        proc.wait()
        out = _state["log"].read_text(errors="replace")
        for line in out.splitlines():
            if line.startswith("cpsych docs:"):
                log.info(line)
        if proc.returncode != 0:
            raise PluginError("cpsych docs: an experiment failed while making the figures:\n"
                              + "\n".join(out.splitlines()[-40:]))
        log.info("cpsych docs: figures made in %.1f s", time.perf_counter() - _state["t0"])
    root = _state["root"]
    missing = [f.src_uri for f in files if f.src_uri.startswith("figures/")
               and not (root / f.src_uri).exists()]
    if missing:
        raise PluginError(f"cpsych docs: figures missing after the experiments ran: {missing}")
    return env


def on_post_build(config, **kwargs):
    if _state.get("temporary") and _state.get("root"):
        shutil.rmtree(_state["root"], ignore_errors=True)


def on_build_error(error, **kwargs):
    proc = _state.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    on_post_build(None)
