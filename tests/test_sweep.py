"""Tests of cpsych.sweep: grid-point equality, devices, kill-and-resume, divergence, bad grids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
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
orig = sw._savez
def slow(path, out):
    calls[0] += 1
    if calls[0] > 3:  # stall while writing the 4th chunk: the parent kills us here
        time.sleep(600)
    orig(path, out)
sw._savez = slow
sweep(toy, make_grid({{"a": "0:1:10", "b": [2.0, 3.0]}}, seeds=2), ["y", "v"],
      store=sys.argv[1], chunk_size=5)
"""


def test_kill_and_resume_identical(tmp_path):
    grid = make_grid({"a": "0:1:10", "b": [2.0, 3.0]}, seeds=2)
    store = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(toy=TOY), str(store)],
                            env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = store / "chunks"
    t0 = time.time()
    try:
        while len(list(chunks.glob("c*.npz"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() - t0 < 90, "sweep subprocess too slow"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stored = sorted(chunks.glob("c*.npz"))
    assert [p.name for p in stored] == ["c000000.npz", "c000001.npz", "c000002.npz"]
    assert not (store / "sweep.nc").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in stored}
    st = {}
    resumed = sweep(toy, grid, ["y", "v"], store=store, stats=st)  # chunk size from manifest
    assert st["chunk_size"] == 5 and st["n_chunks"] == 8
    assert st["skipped"] == [0, 1, 2] and st["computed"] == [3, 4, 5, 6, 7]
    assert {p.name: p.stat().st_mtime_ns for p in stored} == mtimes
    full = sweep(toy, grid, ["y", "v"], store=tmp_path / "full", chunk_size=5)
    xr.testing.assert_identical(resumed, full)
    xr.testing.assert_identical(cpsych.load(store / "sweep.nc"),
                                cpsych.load(tmp_path / "full" / "sweep.nc"))
    # a third run recomputes nothing
    st2 = {}
    again = sweep(toy, grid, ["y", "v"], store=store, stats=st2)
    assert st2["computed"] == [] and len(st2["skipped"]) == 8
    xr.testing.assert_identical(again, full)


def test_hosts_fill_one_store(tmp_path):
    grid = make_grid({"a": "0:1:7", "b": [2.0, 3.0]})
    st0 = {}
    assert sweep(toy, grid, ["y"], store=tmp_path, chunk_size=3, host_index=0, host_count=2,
                 stats=st0) is None
    assert st0["computed"] == [0, 2, 4] and st0["missing"] == [1, 3]
    ds = sweep(toy, grid, ["y"], store=tmp_path, chunk_size=3, host_index=1, host_count=2)
    xr.testing.assert_identical(ds, sweep(toy, grid, ["y"], chunk_size=3))


def test_store_refuses_another_sweep(tmp_path):
    sweep(toy, make_grid({"a": [1.0, 2.0], "b": [2.0]}), ["y"], store=tmp_path, chunk_size=2)
    with pytest.raises(ValueError, match="different sweep.*grid"):
        sweep(toy, make_grid({"a": [1.0, 3.0], "b": [2.0]}), ["y"], store=tmp_path,
              chunk_size=2)


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
    assert "computed [0, 2, 4] index 0 of 2" in outs[0][0]
    assert "computed [1, 3] index 1 of 2" in outs[1][0]
    merged = xr.open_dataset(store / "sweep.nc").load()
    single = sweep(toy, make_grid({"a": "0:1:7", "b": [2.0, 3.0]}), ["y"], chunk_size=3)
    np.testing.assert_array_equal(merged["y"].values, single["y"].values)
