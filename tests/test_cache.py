"""The persistent compilation cache of the command line (cpsych.cache)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cpsych import cache


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CPSYCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_dir() == tmp_path / "xdg" / "cpsych" / "jax"
    monkeypatch.setenv("CPSYCH_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.default_dir() == tmp_path / "mine"
    monkeypatch.setenv("CPSYCH_NO_CACHE", "1")
    assert cache.disabled_by_env()
    monkeypatch.setenv("CPSYCH_NO_CACHE", "0")
    assert not cache.disabled_by_env()


def test_unwritable_cache_is_left_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cache.enable(blocker / "under-a-file") is None


SCRIPT = """
import sys
from cpsych.cli import main
sys.exit(main(["convolution", "--out", sys.argv[1]] + sys.argv[2:]))
"""


@pytest.mark.slow
def test_second_cli_run_loads_compiled_programs_from_the_cache(tmp_path):
    """A second `cpsych convolution` finds the executables the first one wrote; with
    --no-cache nothing is written."""
    env = {**os.environ, "CPSYCH_CACHE_DIR": str(tmp_path / "jc")}
    env.pop("CPSYCH_NO_CACHE", None)
    run = [sys.executable, "-c", SCRIPT]
    subprocess.run(run + [str(tmp_path / "a")], env=env, check=True, capture_output=True)
    entries = sorted(p.name for p in (tmp_path / "jc").iterdir())
    assert len(entries) >= 3  # the inversion, generation and their helpers
    subprocess.run(run + [str(tmp_path / "b")], env=env, check=True, capture_output=True)
    assert sorted(p.name for p in (tmp_path / "jc").iterdir()) == entries  # all reused
    env["CPSYCH_CACHE_DIR"] = str(tmp_path / "none")
    subprocess.run(run + [str(tmp_path / "c"), "--no-cache"], env=env, check=True,
                   capture_output=True)
    assert not (tmp_path / "none").exists()
