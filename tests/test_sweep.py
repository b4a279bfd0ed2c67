"""Tests of cpsych.sweep: grid-point equality, devices, kill-and-resume, divergence, bad grids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import cpsych  # noqa: F401  (float64)
from cpsych.sweep import make_grid, parse_values, sweep

ROOT = Path(__file__).resolve().parents[1]

TOY = """
import jax, jax.numpy as jnp
def toy(p, key):
    A = jnp.array([[-1.0, p["a"]], [-p["a"], -p["b"]]])
    E = jax.scipy.linalg.expm(A)
    noise = 0.0 if key is None else jax.random.normal(key)
    return {"y": E[0, 0] + noise, "v": jnp.linalg.solve(A, jnp.array([1.0, 2.0])),
            "inv": 1.0 / (p["a"] - 0.5), "root": jnp.sqrt(p["b"] - 1.0)}
"""
_NS: dict = {}
exec(TOY, _NS)  # the same source runs in the subprocesses
toy = _NS["toy"]


def _direct(p, key=None):
    f = jax.jit(toy)
    return {k: np.asarray(v) for k, v in f({k: jnp.asarray(v) for k, v in p.items()},
                                            key).items()}


def test_each_point_equals_single_simulation():
    g = make_grid({"a": "0:1:5", "b": [1.0, 2.0, 3.0]}, seeds=2)
    ds = sweep(toy, g, {"y": {}, "v": {"dims": ("comp",)}}, chunk_size=7, key=3)
    assert dict(ds.sizes) == {"a": 5, "b": 3, "seed": 2, "comp": 2}
    assert not ds.diverged.any()
    for a in ds.a.values:
        for b in ds.b.values:
            for s in ds.seed.values:
                ref = _direct({"a": a, "b": b}, jax.random.fold_in(jax.random.PRNGKey(3), s))
                pt = ds.sel(a=a, b=b, seed=s)
                np.testing.assert_allclose(float(pt.y), ref["y"], rtol=1e-13, atol=1e-14)
                np.testing.assert_allclose(pt.v.values, ref["v"], rtol=1e-13)


def test_diverging_points_flagged_rest_unaffected():
    g = make_grid({"a": [0.0, 0.5, 1.0], "b": [0.0, 2.0]})
    ds = sweep(toy, g, ["y", "inv", "root"], chunk_size=4)
    # a = 0.5 divides by zero, b = 0 takes sqrt(-1): flagged, read-outs NaN
    expect = np.array([[True, False], [True, True], [True, False]])
    np.testing.assert_array_equal(ds.diverged.values, expect)
    assert np.all(np.isnan(ds.y.values[expect]))
    for a, b in [(0.0, 2.0), (1.0, 2.0)]:
        ref = _direct({"a": a, "b": b})
        pt = ds.sel(a=a, b=b)
        assert float(pt.y) == pytest.approx(float(ref["y"]), rel=1e-13)
        assert float(pt.inv) == pytest.approx(float(ref["inv"]), rel=1e-13)
    # a large-but-finite blow-up counts too
    ds2 = sweep(toy, make_grid({"a": [0.5 + 1e-12, 1.0], "b": [2.0]}), ["inv"], max_abs=1e6)
    np.testing.assert_array_equal(ds2.diverged.values[:, 0], [True, False])


def _env(n_dev=1):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}", OPENBLAS_NUM_THREADS="1",
               JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_dev}"
    return env


def test_two_cpu_devices_equal_one(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np, jax, cpsych
        from cpsych.sweep import make_grid, sweep
        {TOY.strip().replace(chr(10), chr(10) + '        ')}
        st = {{}}
        ds = sweep(toy, make_grid({{"a": "0:1:6", "b": [2.0, 3.0]}}, seeds=3), ["y", "v"],
                   chunk_size=8, stats=st)
        np.savez(r"{tmp_path / 'r.npz'}", y=ds.y.values, v=ds.v.values, n=st["devices"],
                 d=len(jax.devices()))
    """)
    res = subprocess.run([sys.executable, "-c", script], env=_env(2), capture_output=True,
                         text=True, timeout=100)
    assert res.returncode == 0, res.stderr[-2000:]
    two = np.load(tmp_path / "r.npz")
    assert int(two["d"]) == 2 and int(two["n"]) == 2
    one = sweep(toy, make_grid({"a": "0:1:6", "b": [2.0, 3.0]}, seeds=3), ["y", "v"],
                chunk_size=8, devices=jax.devices()[:1])
    np.testing.assert_allclose(two["y"], one.y.values, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(two["v"], one.v.values, rtol=1e-14, atol=1e-15)


KILL_SCRIPT = """
import sys, time, cpsych, cpsych.sweep as sw
from cpsych.sweep import make_grid, sweep
{toy}
calls = [0]
orig = sw._commit_chunk
def slow(st, i, files, fingerprint):
    calls[0] += 1
    if calls[0] > 3:  # the 4th chunk: write its data, then stall before its commit record
        for key, data in files.items():
            st.write(key, data)
        print("stalled", flush=True)
        time.sleep(600)
    orig(st, i, files, fingerprint)
sw._commit_chunk = slow
sweep(toy, make_grid({{"a": "0:1:10", "b": [2.0, 3.0]}}, seeds=2), ["y", "v"],
      store=sys.argv[1], chunk_size=5)
"""


def _records(store):
    return sorted(p.name for p in (Path(store) / "_cpsych" / "done").glob("c*.json"))


def test_kill_and_resume_identical(tmp_path):
    grid = make_grid({"a": "0:1:10", "b": [2.0, 3.0]}, seeds=2)
    store = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(toy=TOY), str(store)],
                            env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()  # blocks until chunk 3's data are written
        assert line.strip() == "stalled", proc.stderr.read().decode()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _records(store) == ["c000000.json", "c000001.json", "c000002.json"]
    # chunk 3's data files were written (each atomically) but it has no commit record
    y_files = sorted(p.relative_to(store).as_posix() for p in (store / "y" / "c").rglob("*")
                     if p.is_file())
    assert y_files == [f"y/c/{i}/0/0" for i in range(4)]
    assert not (store / "sweep.nc").exists()
    partial = xr.open_zarr(store).load()  # read in place: chunks 0-2 and the orphan chunk 3
    assert np.isnan(partial.y.values[4:]).all() and not np.isnan(partial.y.values[:4]).any()
    stored = [store / "y" / "c" / str(i) / "0" / "0" for i in range(3)]
    mtimes = {p: p.stat().st_mtime_ns for p in stored}
    st = {}
    resumed = sweep(toy, grid, ["y", "v"], store=store, stats=st)  # chunk shape from manifest
    assert st["chunk_size"] == 4 and st["chunk_shape"] == (1, 2, 2) and st["n_chunks"] == 10
    assert st["skipped"] == [0, 1, 2] and st["computed"] == list(range(3, 10))
    assert st["damaged"] == []
    assert {p: p.stat().st_mtime_ns for p in stored} == mtimes
    full = sweep(toy, grid, ["y", "v"], store=tmp_path / "full", chunk_size=5)
    xr.testing.assert_identical(resumed, full)
    xr.testing.assert_identical(cpsych.load(store / "sweep.nc"),
                                cpsych.load(tmp_path / "full" / "sweep.nc"))
    xr.testing.assert_identical(xr.open_zarr(store).load(), full)
    for name in _records(store):  # the same bytes, chunk by chunk
        assert (store / "_cpsych" / "done" / name).read_bytes() == \
            (tmp_path / "full" / "_cpsych" / "done" / name).read_bytes()
    # a third run recomputes nothing
    st2 = {}
    again = sweep(toy, grid, ["y", "v"], store=store, stats=st2)
    assert st2["computed"] == [] and len(st2["skipped"]) == 10
    xr.testing.assert_identical(again, full)


def test_hosts_fill_one_store(tmp_path):
    grid = make_grid({"a": "0:1:7", "b": [2.0, 3.0]})
    st0 = {}
    assert sweep(toy, grid, ["y"], store=tmp_path, chunk_size=3, host_index=0, host_count=2,
                 stats=st0) is None
    assert st0["chunk_shape"] == (1, 2)  # 3 points do not tile rows of 2: chunks of 2
    assert st0["computed"] == [0, 2, 4, 6] and st0["missing"] == [1, 3, 5]
    single = sweep(toy, grid, ["y"], chunk_size=3)
    # the running sweep, read in place: host 0's rows, NaN in the rows left to host 1
    running = xr.open_zarr(tmp_path).load()
    assert not running.diverged.any()
    np.testing.assert_array_equal(running.y.values[0::2], single.y.values[0::2])
    assert np.isnan(running.y.values[1::2]).all()
    assert not (tmp_path / "sweep.nc").exists()
    ds = sweep(toy, grid, ["y"], store=tmp_path, chunk_size=3, host_index=1, host_count=2)
    xr.testing.assert_identical(ds, single)
    xr.testing.assert_identical(xr.open_zarr(tmp_path).load(), single)


def test_store_refuses_another_sweep(tmp_path):
    sweep(toy, make_grid({"a": [1.0, 2.0], "b": [2.0]}), ["y"], store=tmp_path, chunk_size=2)
    with pytest.raises(ValueError, match="different sweep.*grid") as e:
        sweep(toy, make_grid({"a": [1.0, 3.0], "b": [2.0]}), ["y"], store=tmp_path,
              chunk_size=2)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="different sweep.*chunk_shape"):
        sweep(toy, make_grid({"a": [1.0, 2.0], "b": [2.0]}), ["y"], store=tmp_path,
              chunk_size=1)
    with pytest.raises(ValueError, match="different sweep.*readouts"):
        sweep(toy, make_grid({"a": [1.0, 2.0], "b": [2.0]}), ["y", "inv"], store=tmp_path)


def test_store_refuses_old_layout(tmp_path):
    (tmp_path / "chunks").mkdir()
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="old layout"):
        sweep(toy, make_grid({"a": [1.0], "b": [2.0]}), ["y"], store=tmp_path)


@pytest.mark.parametrize("shape, size", [((10, 2, 2), 5), ((7, 2), 3), ((3, 5, 4), 7),
                                         ((3, 5, 4), 20), ((4, 6), 1000), ((9,), 4), ((2, 3), 1)])
def test_chunks_tile_the_grid(shape, size):
    """Every grid point lies in exactly one chunk; each chunk is a contiguous run of the
    flattened grid, a zarr chunk of the block shape, of at most chunk_size points."""
    from cpsych.sweep import _Chunks, chunk_shape

    block = chunk_shape(shape, size)
    ch = _Chunks(shape, block)
    n = int(np.prod(shape))
    assert ch.points <= size and (ch.points > size / 2 or ch.points == n)
    flats = [ch.flat(i) for i in range(ch.n_chunks)]
    np.testing.assert_array_equal(np.sort(np.concatenate(flats)), np.arange(n))
    marks = np.full(shape, -1)
    for i, f in enumerate(flats):
        np.testing.assert_array_equal(f, np.arange(f[0], f[0] + f.size))  # contiguous
        marks[ch.slices(i)] = i  # the zarr chunk of index ch.index(i)
        assert all(s.start == c * b for s, c, b in zip(ch.slices(i), ch.index(i), block))
        assert f.size == np.prod(ch.extent(i))
    np.testing.assert_array_equal(marks.ravel()[np.concatenate(flats)],
                                  np.repeat(np.arange(ch.n_chunks), [f.size for f in flats]))


def test_store_reads_in_place_labelled(tmp_path):
    """xr.open_zarr on the store gives the dataset sweep() returns: dims, coordinates,
    read-out dimension names and coordinates, units, attributes, dtypes."""
    g = make_grid({"a": "0:1:3", "b": [2.0, 3.0]}, seeds=2)
    ro = {"y": {"attrs": {"units": "N", "long_name": "response"}},
          "v": {"dims": ("comp",), "attrs": {"units": "m"}}}
    kw = dict(chunk_size=3, key=1, attrs={"paradigm": "toy"}, coords={"comp": [10.0, 20.0]},
              description="toy v1")
    mem = sweep(toy, g, ro, **kw)
    ds = sweep(toy, g, ro, store=tmp_path / "s", **kw)
    xr.testing.assert_identical(ds, mem)
    inplace = xr.open_zarr(tmp_path / "s")
    assert inplace.y.attrs == {"units": "N", "long_name": "response"}
    assert inplace.v.dims == ("a", "b", "seed", "comp") and inplace.diverged.dtype == bool
    assert inplace.attrs == {"description": "toy v1", "n_points": 12, "paradigm": "toy"}
    xr.testing.assert_identical(inplace.load(), mem)
    assert inplace.y.encoding["chunks"] == (1, 1, 2)  # one zarr chunk per sweep chunk
    xr.testing.assert_identical(cpsych.load(tmp_path / "s" / "sweep.nc"), mem)


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_fsspec_url_store(tmp_path, kind):
    """Two 'hosts' fill one store through an fsspec URL; the running sweep reads in place
    with NaN where chunks are missing; the result equals an in-memory sweep."""
    import uuid

    import fsspec

    url = (tmp_path / "s").as_uri() if kind == "file" else f"memory://sweep-{uuid.uuid4().hex}"
    g = make_grid({"a": "0:1:5", "b": [2.0, 3.0]})
    single = sweep(toy, g, ["y", "v"], chunk_size=4)
    st = {}
    assert sweep(toy, g, ["y", "v"], store=url, chunk_size=4, host_index=0, host_count=2,
                 stats=st) is None
    assert st["computed"] == [0, 2] and st["missing"] == [1]
    running = xr.open_zarr(url).load()
    np.testing.assert_array_equal(running.y.values[[0, 1, 4]], single.y.values[[0, 1, 4]])
    assert np.isnan(running.y.values[2:4]).all()
    st = {}
    ds = sweep(toy, g, ["y", "v"], store=url, chunk_size=4, host_index=1, host_count=2,
               stats=st)
    assert st["computed"] == [1] and st["skipped"] == []
    xr.testing.assert_identical(ds, single)
    xr.testing.assert_identical(xr.open_zarr(url).load(), single)
    st = {}
    sweep(toy, g, ["y", "v"], store=url, stats=st)  # resume: nothing to do
    assert st["computed"] == [] and st["skipped"] == [0, 1, 2]
    fs, root = fsspec.core.url_to_fs(url)
    (tmp_path / "copy.nc").write_bytes(fs.cat_file(root + "/sweep.nc"))
    xr.testing.assert_identical(cpsych.load(tmp_path / "copy.nc"), single)
    assert fs.exists(root + "/_cpsych/done/c000002.json")
    assert not fs.glob(root + "/**/.*.tmp")
    with pytest.raises(ValueError, match="different sweep"):
        sweep(toy, make_grid({"a": "0:1:4", "b": [2.0, 3.0]}), ["y", "v"], store=url)


def test_store_url_mangled_by_pathlib(tmp_path):
    with pytest.raises(ValueError, match="mangled by pathlib; pass the URL as a string"):
        sweep(toy, make_grid({"a": [1.0], "b": [2.0]}), ["y"], store=Path("file:///tmp/x"))


def _flip_byte(path, offset=-5):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_chunks_recomputed(tmp_path):
    g = make_grid({"a": "0:1:4", "b": [2.0, 3.0]})
    full = sweep(toy, g, ["y", "v"], store=tmp_path, chunk_size=2)
    _flip_byte(tmp_path / "v" / "c" / "1" / "0" / "0")      # bit rot in chunk 1
    (tmp_path / "diverged" / "c" / "2" / "0").unlink()        # a lost file of chunk 3
    (tmp_path / "_cpsych" / "done" / "c000000.json").write_text("{trunc")  # chunk 0's record
    st = {}
    with pytest.warns(RuntimeWarning) as rec:
        ds = sweep(toy, g, ["y", "v"], store=tmp_path, stats=st)
    msgs = sorted(str(w.message) for w in rec)
    assert len(msgs) == 3 and all("\n" not in m for m in msgs)
    assert "chunk 0 of" in msgs[0] and "c000000.json is unreadable" in msgs[0]
    assert "chunk 1 of" in msgs[1] and "v/c/1/0/0 fails its sha256 checksum" in msgs[1]
    assert "chunk 2 of" in msgs[2] and "diverged/c/2/0 is missing" in msgs[2]
    assert st["damaged"] == [0, 1, 2] and st["computed"] == [0, 1, 2] and st["skipped"] == [3]
    xr.testing.assert_identical(ds, full)
    xr.testing.assert_identical(xr.open_zarr(tmp_path).load(), full)
    # a damaged chunk of another host is redone by whichever host assembles the store
    _flip_byte(tmp_path / "y" / "c" / "3" / "0")
    st = {}
    with pytest.warns(RuntimeWarning, match=r"chunk 3 of .* \(y/c/3/0 fails its sha256"):
        ds = sweep(toy, g, ["y", "v"], store=tmp_path, host_index=0, host_count=2, stats=st)
    assert st["computed"] == [3] and st["damaged"] == [3]
    xr.testing.assert_identical(ds, full)
    # merge only (compute=False, --merge-only) computes nothing: the store is incomplete
    _flip_byte(tmp_path / "y" / "c" / "2" / "0")
    st = {}
    with pytest.warns(RuntimeWarning, match=r"chunk 2 .*rerun with compute=True"):
        assert sweep(toy, g, ["y", "v"], store=tmp_path, compute=False, stats=st) is None
    assert st["computed"] == [] and st["missing"] == [2]


def test_damaged_manifest_raises(tmp_path):
    g = make_grid({"a": "0:1:4", "b": [2.0, 3.0]})
    sweep(toy, g, ["y"], store=tmp_path, chunk_size=2)
    root = tmp_path / "zarr.json"
    good = root.read_text()
    root.write_text(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError) as e:
        sweep(toy, g, ["y"], store=tmp_path)
    msg = str(e.value)
    assert str(root) in msg and "damaged" in msg and "expected zarr group metadata" in msg
    assert "\n" not in msg
    root.write_text(good.replace('"max_abs": 100000000.0', '"max_abs": 1000.0'))  # edited
    with pytest.raises(ValueError, match=f"{root}.* manifest does not match its fingerprint"):
        sweep(toy, g, ["y"], store=tmp_path)
    root.write_text(good)
    sweep(toy, g, ["y"], store=tmp_path)  # restored: fine


SLURM_VARS = ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
              "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT", "SLURM_PROCID",
              "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"]


@pytest.mark.parametrize("env, expect", [
    ({}, (0, 1)),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "6",
      "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "1"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "8",
      "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "4"}, (2, 3)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, (1, 3)),
    ({"SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "3", "SLURM_NTASKS": "3"}, (2, 3)),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, (0, 1)),  # the batch script, not a task
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "1",
      "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "3"},
     (5, 6)),
])
def test_host_from_env(monkeypatch, env, expect):
    from cpsych.sweep import host_from_env

    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert host_from_env() == expect


def test_host_from_env_jax_distributed(monkeypatch):
    """Under jax.distributed the process index/count (SLURM_PROCID/SLURM_NTASKS under SLURM)
    split the chunks; an array task multiplies them."""
    from cpsych.sweep import host_from_env

    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    monkeypatch.setattr(jax, "process_index", lambda: 3)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert host_from_env() == (3, 4)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert host_from_env() == (11, 12)


@pytest.mark.parametrize("env, msg", [
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7",
      "SLURM_ARRAY_TASK_COUNT": "3"}, "evenly spaced"),  # --array=1,3,7
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"}, "SLURM_ARRAY_TASK_ID='x'"),
    ({"SLURM_ARRAY_TASK_ID": "1"}, "neither SLURM_ARRAY_TASK_COUNT"),
])
def test_host_from_env_errors(monkeypatch, env, msg):
    from cpsych.sweep import host_from_env

    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=msg) as e:
        host_from_env()
    assert "\n" not in str(e.value)


def test_sweep_takes_hosts_from_slurm_array(monkeypatch, tmp_path):
    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
    g = make_grid({"a": "0:1:5", "b": [2.0, 3.0]})
    for task, computed in ((11, [1, 4]), (10, [0, 3]), (12, [2])):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
        monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", "12")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
        st = {}
        ds = sweep(toy, g, ["y"], store=tmp_path, chunk_size=2, stats=st)
        assert st["computed"] == computed
    xr.testing.assert_identical(ds, sweep(toy, g, ["y"], chunk_size=2))
    st = {}  # explicit arguments win over the environment
    sweep(toy, g, ["y"], store=tmp_path / "x", chunk_size=2, host_index=0, host_count=1,
          stats=st)
    assert st["computed"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("text, msg", [
    ("1:0:5", "reversed"), ("0:1:0", "empty"), ("0:x:3", "non-numeric"),
    ("1,two", "'two' is not a number"), ("0:1", "start:stop:num"), ("", "no values"),
])
def test_parse_values_errors(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_values(text, "grid 'prior'")


def test_parse_values():
    np.testing.assert_allclose(parse_values("-2:10:33"), np.linspace(-2, 10, 33))
    np.testing.assert_allclose(parse_values("1, 2.5,4"), [1, 2.5, 4])


@pytest.mark.parametrize("grid, msg", [
    ("bogus=0:1:3", "unknown parameter 'bogus'"), ("prior=5:1:3", "reversed"),
    ("prior=0:1:0", "empty"), ("prior=a,b", "'a' is not a number"), ("prior", "NAME=VALUES"),
])
def test_cli_bad_grid(tmp_path, capsys, grid, msg):
    from cpsych.cli import main

    rc = main(["sweep", "force-matching", "--grid", grid, "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert msg in err and err.count("\n") == 0 and "Traceback" not in err


def test_cli_bad_grid_subprocess(tmp_path):
    res = subprocess.run([sys.executable, "-m", "cpsych.cli", "sweep", "pursuit", "--grid",
                          "retina=4:2:3", "--out", str(tmp_path)], env=_env(1), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "retina" in res.stderr and "reversed" in res.stderr


def test_pursuit_sweep_equals_single_runs():
    from cpsych.experiments.sweep_cli import run_sweep
    from cpsych.models import pursuit as pu

    ds = run_sweep("pursuit", {"retina": [4.0, 6.0], "state2": [0.0, 4.0]}, chunk_size=4,
                   readouts=["gain_visible", "gain_occluded", "peak_eye_velocity"])
    assert not ds.diverged.any()
    for r in (4.0, 6.0):
        for s2 in (0.0, 4.0):
            _, ro = pu.simulate(precisions=pu.Precisions(retina=r, state2=s2))
            for k in ("gain_visible", "gain_occluded", "peak_eye_velocity"):
                assert float(ds[k].sel(retina=r, state2=s2)) == pytest.approx(ro[k], rel=1e-10)
    # the schizophrenia preset (state2 = 0) lowers the occluded gain (SPEC 5.5)
    assert float(ds.gain_occluded.sel(retina=4, state2=0)) < \
        float(ds.gain_occluded.sel(retina=4, state2=4))


def _leaky_paradigm():
    """A registered toy paradigm: x_{t+1} = x_t + k (1 - x_t) from 0, so x_5 = 1 - (1-k)^5."""
    def simulate(values, design, key):
        k = values["k"]
        xs = jax.lax.scan(lambda x, _: (x + k * (1.0 - x), x), 0.0, None,
                          length=int(design["T"]))[1]
        return {"final": xs[-1]}

    return cpsych.Paradigm(
        name="leaky", title="leaky integrator",
        parameters=(cpsych.Parameter("k", 0.5, "1/bin", "rate", (0.5, 0.1), (0.0, 1.0)),),
        presets={"control": {}}, readouts=(cpsych.Readout("final", "1", "value at the end"),),
        simulate=simulate, design={"T": 6}, coords={}, references=("none",))


def test_cli_takes_hosts_from_slurm_array(tmp_path, monkeypatch, capsys):
    """`cpsych sweep` run as three SLURM array tasks (ids 4, 6, 8: --array=4-8:2) fills one
    store; the last to finish writes sweep.nc, equal to a one-host run and the closed form."""
    from cpsych import paradigm as registry
    from cpsych.cli import main
    from cpsych.experiments.sweep_cli import run_sweep

    monkeypatch.setitem(registry._EXTRA, "leaky", _leaky_paradigm())
    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in {"MIN": "4", "MAX": "8", "STEP": "2", "COUNT": "3"}.items():
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{k}", v)
    args = ["sweep", "leaky", "--grid", "k=0.1:0.9:9", "--chunk-size", "2", "--out",
            str(tmp_path)]
    for task, n in (("8", 1), ("4", 2)):  # hosts 2 and 0: chunks [2] and [0, 3]
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        assert main(args) == 0
        err = capsys.readouterr().err
        assert f"{n} chunk(s) computed, 0 already stored, of 5" in err and "incomplete" in err
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "6")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 chunk(s) computed" in err and "sweep.nc" in err
    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
    one = run_sweep("leaky", {"k": "0.1:0.9:9"}, chunk_size=2)
    res = cpsych.load(tmp_path / "sweep.nc")
    xr.testing.assert_identical(res, one)
    np.testing.assert_allclose(res.final.values, 1 - (1 - res.k.values) ** 5, rtol=1e-13)


@pytest.mark.slow
def test_force_matching_sweep_equals_experiment():
    from cpsych.experiments import force_matching as exp
    from cpsych.experiments.sweep_cli import run_sweep
    from cpsych.models import force_matching as fm

    ds = run_sweep("force-matching", {"h": [4.0, 6.0]}, chunk_size=2)
    res = exp.results_dataset(exp.compute())
    ctl = ds.sel(h=6.0)
    np.testing.assert_allclose(ctl.overcompensation.values,
                               res.overcompensation.sel(group="control").values, rtol=1e-8)
    assert float(ctl.illusion) > 0  # the illusion: self-generated forces exceed matched ones
    assert fm.PRESETS["control"].h == 6.0


DIST_SCRIPT = """
import sys, numpy as np, jax
jax.distributed.initialize(coordinator_address="127.0.0.1:" + sys.argv[1], num_processes=2,
                           process_id=int(sys.argv[2]), local_device_ids=[0])
import cpsych
from cpsych.sweep import make_grid, sweep
{toy}
st = {{}}
ds = sweep(toy, make_grid({{"a": "0:1:7", "b": [2.0, 3.0]}}), ["y"], store=sys.argv[3],
           chunk_size=3, stats=st, progress=False)
print("computed", st["computed"], "index", jax.process_index(), "of", jax.process_count())
"""


def test_jax_distributed_processes_fill_one_store(tmp_path):
    """Two processes under jax.distributed (a coordinator on loopback) each take their slice
    of the grid from jax.process_index(); the merged store equals a single-process sweep."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, "-c", DIST_SCRIPT.format(toy=TOY), port, str(i),
                               str(store)], env=_env(1), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert "computed [0, 2, 4, 6] index 0 of 2" in outs[0][0]
    assert "computed [1, 3, 5] index 1 of 2" in outs[1][0]
    merged = xr.open_dataset(store / "sweep.nc").load()
    single = sweep(toy, make_grid({"a": "0:1:7", "b": [2.0, 3.0]}), ["y"], chunk_size=3)
    np.testing.assert_array_equal(merged["y"].values, single["y"].values)
