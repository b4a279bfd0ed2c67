"""The persistent compilation cache of the command line (cpsych.cache)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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


# ----------------------------------------------------------------- traced programs on disk
class _Out(NamedTuple):
    total: jax.Array
    scaled: jax.Array


_TRACES = []


def _fun(x, p):
    _TRACES.append(1)  # runs only while JAX traces
    return _Out(total=jnp.sum(x * p["w"]), scaled=jnp.cumsum(x) * p["w"])


def test_program_is_plain_jit_while_the_cache_is_off(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_enabled", None)
    x, p = jnp.arange(4.0), {"w": jnp.asarray(2.0)}
    out = cache.program(_fun, "toy")(x, p)
    assert isinstance(out, _Out) and float(out.total) == 12.0
    assert not list(tmp_path.iterdir())


def test_program_is_traced_once_then_loaded_from_disk(tmp_path, monkeypatch):
    """A second process (here: a second program object) loads the exported program instead
    of tracing; the results are the same; new shapes or a damaged file trace again."""
    monkeypatch.setattr(cache, "_enabled", tmp_path)
    x, p = jnp.arange(4.0), {"w": jnp.asarray(2.0)}
    _TRACES.clear()
    first = cache.program(_fun, "toy")(x, p)
    assert len(_TRACES) == 1
    files = sorted((tmp_path / "programs").iterdir())
    assert len(files) == 1 and files[0].name.startswith("toy-")
    second = cache.program(_fun, "toy")(x, p)  # as a new process would
    assert len(_TRACES) == 1  # not traced
    assert isinstance(second, _Out)
    np.testing.assert_array_equal(second.scaled, first.scaled)
    np.testing.assert_array_equal(second.scaled, np.cumsum(np.arange(4.0)) * 2.0)
    # other shapes: another program
    cache.program(_fun, "toy")(jnp.arange(5.0), p)
    assert len(_TRACES) == 2 and len(list((tmp_path / "programs").iterdir())) == 2
    # a damaged file is replaced, not trusted
    files[0].write_bytes(b"not a program")
    third = cache.program(_fun, "toy")(x, p)
    assert len(_TRACES) == 3
    np.testing.assert_array_equal(third.scaled, first.scaled)
    cache.program(_fun, "toy")(x, p)
    assert len(_TRACES) == 3  # the rewritten file loads


def test_program_key_follows_the_sources(tmp_path, monkeypatch):
    """Changed cpsych sources give another file name (a stale program is never loaded)."""
    monkeypatch.setattr(cache, "_enabled", tmp_path)
    x, p = jnp.arange(3.0), {"w": jnp.asarray(1.0)}
    cache.program(_fun, "toy")(x, p)
    monkeypatch.setattr(cache, "source_fingerprint", lambda: "edited")
    _TRACES.clear()
    cache.program(_fun, "toy")(x, p)
    assert len(_TRACES) == 1 and len(list((tmp_path / "programs").iterdir())) == 2


def _with_callback(x):
    return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


def test_program_falls_back_to_jit_when_it_cannot_be_exported(tmp_path, monkeypatch):
    """A host callback cannot be serialised: the program still runs, as plain jit."""
    monkeypatch.setattr(cache, "_enabled", tmp_path)
    x = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(cache.program(_with_callback, "cb")(x), np.sin(x), rtol=1e-15)
    assert not list(tmp_path.glob("programs/cb-*"))


# ----------------------------------------------------------------------------- figures
def _dataset(value: float = 1.0):
    import xarray as xr

    return xr.Dataset({"a": ("t", np.array([0.0, value, 2.0]), {"units": "N"}),
                       "b": ("g", np.array(["x", "y"]))}, attrs={"seed": 0})


def test_digest_sees_values_attributes_and_roles_not_order():
    import xarray as xr

    ds = _dataset()
    assert cache.digest(ds) == cache.digest(_dataset())
    assert cache.digest(ds) == cache.digest(xr.Dataset({"b": ds["b"], "a": ds["a"]},
                                                        attrs=ds.attrs))
    assert cache.digest(ds) != cache.digest(_dataset(1.0 + 1e-15))
    changed = ds.copy()
    changed["a"].attrs["units"] = "mN"
    assert cache.digest(ds) != cache.digest(changed)
    assert cache.digest(ds, "title") != cache.digest(ds, "other title")
    assert cache.digest(np.arange(3.0)) != cache.digest(np.arange(3))  # dtype counts
    # framed items: concatenations never collide
    assert cache.digest(1, 23) != cache.digest(12, 3)
    assert cache.digest([1, 23]) != cache.digest([12, 3])
    assert cache.digest({"ab": "c"}) != cache.digest({"a": "bc"})
    # object arrays by element, not by numpy's shortened repr
    a, b = np.empty(1, object), np.empty(1, object)
    a[0], b[0] = np.arange(2000), np.r_[np.arange(1000), -1, np.arange(1001, 2000)]
    assert cache.digest(a) != cache.digest(b)
    # a coordinate is not a data variable; a data array is not a dataset
    lab = ds.assign_coords(lab=("g", ["p", "q"]))
    assert cache.digest(lab) != cache.digest(lab.reset_coords("lab"))
    assert cache.digest(ds["a"]) != cache.digest(ds[["a"]])
    assert cache.digest(ds["a"].rename("a")) != cache.digest(ds["a"].rename("z"))
    with_coord = xr.Dataset(coords={"t": [0.0, 1.0]})
    assert len(cache.digest(with_coord["t"])) == 64  # a coordinate's own array


def _plot(ds):
    from matplotlib.figure import Figure

    _BUILDS.append(1)
    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot(ds["a"].values)
    return fig


_BUILDS: list[int] = []


def test_figure_is_rendered_once_per_data_then_copied(tmp_path, monkeypatch):
    """The same figure of the same data is copied from the cache; other data, another name,
    changed sources, other matplotlib settings or a damaged kept file render again; with
    the cache off it always renders, byte for byte the same files (deterministic)."""
    import functools

    import matplotlib

    monkeypatch.setattr(cache, "_enabled", tmp_path / "c")
    _BUILDS.clear()
    ds = _dataset()

    def fig(where, data=ds, name="toy"):
        return cache.figure(functools.partial(_plot, data), tmp_path / where / "fig", data,
                            name=name)

    first = fig("a")
    assert len(_BUILDS) == 1 and [p.name for p in first] == ["fig.pdf", "fig.png"]
    again = fig("b")
    assert len(_BUILDS) == 1 and [p.parent.name for p in again] == ["b", "b"]
    for x, y in zip(first, again, strict=True):
        assert x.read_bytes() == y.read_bytes() and len(x.read_bytes()) > 1000
    fig("c", _dataset(5.0))
    fig("c2", name="other")
    assert len(_BUILDS) == 3
    store = tmp_path / "c" / "figures"
    assert len(list(store.glob("toy-*.pdf"))) == 2 and not list(store.glob(".*"))
    # damaged kept files (a truncated PDF, then a truncated PNG) are rendered again and
    # replaced: the call after is a hit
    for ext in ("pdf", "png"):
        for k in store.glob(f"toy-*.{ext}"):
            k.write_bytes(k.read_bytes()[:100])
        fig(f"d{ext}")
        fig(f"e{ext}")
    assert len(_BUILDS) == 5
    assert (tmp_path / "epng" / "fig.png").read_bytes() == first[1].read_bytes()
    with matplotlib.rc_context({"lines.linewidth": 3.0}):
        fig("f")
    monkeypatch.setattr(cache, "source_fingerprint", lambda: "edited")
    fig("g")
    assert len(_BUILDS) == 7
    monkeypatch.setattr(cache, "_enabled", None)
    off = [fig("h"), fig("i")]
    assert len(_BUILDS) == 9
    assert off[0][0].read_bytes() == off[1][0].read_bytes() == first[0].read_bytes()
    assert off[0][1].read_bytes() == first[1].read_bytes()


def test_figure_cache_that_cannot_be_written_still_renders(tmp_path, monkeypatch):
    """A store that cannot be created (its parent is a file) costs the cache, not the run:
    the figure is written and no temporary file is left behind."""
    import functools

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(cache, "_enabled", blocker)
    _BUILDS.clear()
    ds = _dataset()
    for where in ("a", "b"):
        pdf, png = cache.figure(functools.partial(_plot, ds), tmp_path / where / "fig.png", ds,
                                name="toy")
        assert pdf == tmp_path / where / "fig.pdf" and png.is_file() and pdf.is_file()
    assert len(_BUILDS) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "file"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["fig.pdf", "fig.png"]
