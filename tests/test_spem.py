"""The ``pursuit-spem`` paradigm (cpsych.models.spem) and the pursuit fit to human data.

Oracles: the raw SPEM recordings (the binned file must regenerate from them), the simulator of
the retired fit_pursuit code path (rebuilt here as it was at commit ea0b20b, on today's
engine, at its parameter sets frozen in tests/data/spem_fit), and closed-form gains.
"""

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpsych
from cpsych.experiments import fit_pursuit as fp
from cpsych.fit.data import read_data
from cpsych.models import spem

OLD = Path(__file__).parent / "data" / "spem_fit"
PAR = cpsych.paradigm.get("pursuit-spem")


def _old_traces(theta):
    """The retired fit_pursuit simulator (commit ea0b20b: its _templates, simulate_condition
    and condition_parameters), on today's engine: eye velocity (4, 32) of a 17-vector."""
    import dataclasses

    import cpsych.active as active
    from cpsych import HDM, Level, Process
    from cpsych.models import pursuit as P

    def occluded(x):
        return jnp.where((x > -0.8) & (x < 0.0), 1.0, 0.0)

    def sens(o1, o2, x_t):
        retina = jnp.exp(-((jnp.asarray(P.OFFSETS) - x_t + o1) ** 2)) * (1.0 - occluded(x_t))
        return jnp.concatenate([jnp.stack([o1, o2]), retina])

    def f1(x, v, th):
        occ = occluded(x[2])
        g_cause = jnp.exp(th["cause_gain"] + occ * th["hidden_gain"])
        g_target = th["target_gain"] * jnp.exp(occ * th["hidden_target_gain"])
        acc = (g_cause * (v[0] - x[0]) + g_target * (x[2] - x[0])) / 4 \
            - jnp.exp(th["damping"]) * x[1] / 2
        return jnp.stack([x[1], acc, jnp.exp(th["target_rate"]) * (v[0] - x[2])])

    kinetic = ("cause_gain", "hidden_gain", "target_gain", "hidden_target_gain", "damping",
               "target_rate")
    T = 48
    proc = Process(f=lambda x, v, a, th: jnp.stack([x[1], a[0] / 4 - x[1] / 8, v[0] - x[2]]),
                   g=lambda x, v, a, th: sens(x[0], x[1], x[2]), n_x=3, n_v=1, n_a=1,
                   log_pi_z=16.0, log_pi_w=16.0, y_names=P.Y_NAMES)
    l1 = Level(g=lambda x, v, th: sens(x[0], x[1], x[2]), f=f1, n_x=3, n_v=1, log_pi_z=4.0,
               log_pi_w=4.0, theta={k: np.asarray(0.0) for k in kinetic})
    l2 = Level(g=lambda x, v, th: x[:1], f=lambda x, v, th: jnp.stack([x[1], -x[0]]) * v[0] / 8,
               n_x=2, n_v=1, log_pi_z=4.0, log_pi_w=4.0)
    mod = HDM(levels=(l1, l2), eta=8 * P.W, log_pi_eta=4.0, n=5, d=2, s=0.5)
    proc, mod, _, _, _ = active.check_inputs(proc, mod, np.zeros((1, T)), np.zeros((1, T)),
                                             np.asarray(P.action_mask()))
    t = np.arange(T) - 16 + 0.5
    v = jnp.asarray(np.where(t < 0, 1.0, np.cos(P.W * t) - P.W * np.sin(P.W * t)))
    X = jnp.asarray(_DESIGN)
    th = jnp.asarray(theta)
    kin = jnp.stack([X @ th[6:9], X @ th[9:12], *(jnp.full(4, th[i]) for i in range(12, 16))],
                    axis=1)

    def one(retina, state2, k):
        a, b = mod.levels
        lz1 = jnp.concatenate([jnp.full(2, 4.0), jnp.full(17, 1.0) * retina])
        a = dataclasses.replace(a, log_pi_z=lz1, theta={n: k[i] for i, n in enumerate(kinetic)})
        b = dataclasses.replace(b, log_pi_w=jnp.full(2, 1.0) * state2)
        out = active.run(proc, dataclasses.replace(mod, levels=(a, b)), v[None, :],
                         jnp.full((1, T), 8 * P.W), action_mask=P.action_mask(4.0),
                         kappa_a=1.0, log_pi_a=-2.0)
        return out.x_process[16:, 1]

    return jax.jit(jax.vmap(one))(X @ th[0:3], X @ th[3:6], kin)


#: The retired path's (condition, [intercept, noisy, fast]) design of its condition effects.
_DESIGN = np.array([[1.0, "noisy" in c, "fast" in c] for c in spem.CONDITIONS])


def _old_values(theta):
    """The retired path's 17-vector as every paradigm parameter per condition: retina,
    state2, k_c, k_h with intercept, noisy and fast effects; k_t, k_th, k_d, k_r shared."""
    values = {p.name: np.full(4, p.default) for p in PAR.parameters}
    for i, name in enumerate(("retina", "state2", "k_c", "k_h")):
        values[name] = _DESIGN @ theta[3 * i:3 * i + 3]
    for i, name in enumerate(("k_t", "k_th", "k_d", "k_r")):
        values[name] = np.full(4, theta[12 + i])
    return values


def _old_cases():
    """The old path's start, prior mean, MAP (of a full run) and a prior draw, with the -log
    posterior it gave on the engine of commit ea0b20b."""
    with (OLD / "old_path_theta.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {r["case"]: np.array([float(v) for v in list(r.values())[1:18]]) for r in rows}


@pytest.fixture(scope="module")
def data():
    return fp.prepare_data()


# ----------------------------------------------------------------------------- data
def test_binned_file_regenerates_from_the_raw_files(tmp_path):
    path = spem.write_binned(fp.DATA, tmp_path / "binned.csv")
    with path.open() as a, fp.BINNED.open() as b:
        new, shipped = list(csv.reader(a)), list(csv.reader(b))
    assert new[0] == shipped[0] == list(spem.BINNED_HEADER)
    assert len(new) == len(shipped) == 1 + 4 * 32
    for r_new, r_old in zip(new[1:], shipped[1:], strict=True):
        assert r_new[:2] == r_old[:2] and r_new[4] == r_old[4]
        np.testing.assert_allclose(np.asarray(r_new[2:], float), np.asarray(r_old[2:], float),
                                   rtol=1e-12, atol=0)
    # the periods found by least squares on the recorded targets are the paradigm's
    assert spem.bin_raw(fp.DATA)["period_ms"].values.tolist() == [
        spem.PERIOD_MS[spem.speed(c)] for c in spem.CONDITIONS]


def test_binned_file_reads_in_the_paradigms_format(data):
    rows = read_data(fp.BINNED, PAR)
    assert rows.sizes["obs"] == 128 and set(rows["participant"].values) == {"grand_average"}
    assert tuple(dict.fromkeys(rows["condition"].values)) == spem.CONDITIONS
    for c in spem.CONDITIONS:
        np.testing.assert_array_equal(rows["time_ms"].values[rows["condition"] == c],
                                      spem.bin_times(c))
    # every row's time is a coordinate of the read-out: a row looks its prediction up
    assert set(rows["time_ms"].values) <= set(PAR.coords["time_ms"])
    # the data's gains (the published pattern: noisy targets pursued with lower gain)
    g = np.array([fp.gains(data["eye_velocity"].values[i], data["target_velocity"].values[i],
                           data["occluded"].values[i]) for i in range(4)])
    np.testing.assert_allclose(g, [[0.86, 0.39], [0.69, 0.39], [0.96, 0.35], [0.75, 0.34]],
                               atol=0.006)


def test_prepare_data_rejects_a_time_off_the_bin_centres(tmp_path):
    lines = fp.BINNED.read_text().splitlines()
    cells = lines[5].split(",")
    cells[2] = str(float(cells[2]) + 1.0)
    lines[5] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 6, column 'time_ms': .* not a bin "
                                         r"centre of fast_smooth"):
        fp.prepare_data(bad)


# ----------------------------------------------------------------------------- gains
def test_gains_recover_known_slopes_leaving_out_edges_and_gaps():
    tv = -spem.P.W * np.sin(spem.P.W * (np.arange(32) + 0.5))
    occ = np.zeros(32, bool)
    occ[10:16] = True
    eye = np.where(occ, 0.3, 0.8) * tv
    eye[[9, 16]] = 5.0  # next to a change of visibility: left out
    eye[3] = np.nan  # a missing bin: left out
    g_vis, g_occ = fp.gains(eye, tv, occ)
    assert g_vis == pytest.approx(0.8, abs=1e-12) and g_occ == pytest.approx(0.3, abs=1e-12)


def test_bad_design_is_one_line_before_simulating():
    with pytest.raises(ValueError, match="conditions: unknown condition 'medium_smooth'"):
        PAR.simulate(PAR.params(), {"conditions": ("medium_smooth",), "times_ms": (1.0,)},
                     None)
    with pytest.raises(ValueError, match="times_ms"):
        PAR.simulate(PAR.params(), {"conditions": spem.CONDITIONS, "times_ms": ()}, None)
    with pytest.raises(ValueError, match="parameter 'k_d' .* outside its plausible range"):
        PAR.params(k_d=9.0)


# ----------------------------------------------------------------------------- the simulator
@pytest.mark.slow
def test_simulate_reproduces_the_old_fit_path(data):
    """Per-condition parameters (the old fit's 17-vector) through the paradigm
    (:func:`fit_pursuit.traces`) reproduce the retired code path's eye velocity at four
    parameter sets: its start, the prior mean, its MAP and a prior draw."""
    for case, theta in _old_cases().items():
        ref = np.asarray(_old_traces(theta))
        e = fp.traces(data, _old_values(theta))
        assert np.max(np.abs(e - ref)) <= 1e-10, case
    # scalar parameters (one run for every condition) equal the same values per condition;
    # the read-out's time axis is each condition's bin centres
    values = {k: np.asarray(v)[2] for k, v in _old_values(_old_cases()["old_map"]).items()}
    ro = PAR.run(**{k: float(v) for k, v in values.items()})
    per = PAR.compiled()({k: np.full(4, v) for k, v in values.items()}, None)
    for k in ro:
        np.testing.assert_allclose(ro[k], np.asarray(per[k]), rtol=0, atol=1e-12)
    grid = np.asarray(PAR.coords["time_ms"])
    i = np.searchsorted(grid, spem.bin_times("slow_smooth"))
    e = fp.traces(data, _old_values(_old_cases()["old_map"]))
    np.testing.assert_allclose(ro["eye_velocity"][2, i], e[2], rtol=0, atol=1e-10)
    assert ro["eye_velocity"].shape == (4, 64) and ro["gain_visible"].shape == (4,)
