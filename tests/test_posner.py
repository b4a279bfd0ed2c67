"""Posner cueing: attention as precision (SPEC 5.3; Feldman & Friston 2010)."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpsych
from cpsych.energy import gibbs_energy
from cpsych.models import posner

BIN_MS = posner.DT_MS


@pytest.fixture(scope="module")
def rts():
    """Reaction times (ms) for both cues, with attention (gain 1) and without (gain 0)."""
    return {(cue, g): posner.simulate_trial(cue, g).attrs["rt_ms"]
            for cue in posner.CUES for g in (1.0, 0.0)}


def test_valid_cue_faster_than_invalid(rts):
    valid, invalid = rts[("valid", 1.0)], rts[("invalid", 1.0)]
    assert np.isfinite(valid) and np.isfinite(invalid)
    # measured: 70.2 ms vs 114.7 ms (44.5 ms); human validity effects are tens of ms
    assert invalid - valid >= 4 * BIN_MS
    assert invalid - valid <= 10 * BIN_MS
    # cue benefit and cost relative to the uncued (gain 0) observer, 87.4 ms
    neutral = rts[("valid", 0.0)]
    assert valid < neutral - BIN_MS
    assert invalid > neutral + 2 * BIN_MS


def test_no_attention_no_validity_effect(rts):
    # without attention the two trials are mirror images (left/right); the measured residual
    # is 1.8e-5 ms, the numerical asymmetry of the integration: allow 1e-3 ms
    assert abs(rts[("invalid", 0.0)] - rts[("valid", 0.0)]) < 1e-3
    assert np.isfinite(rts[("valid", 0.0)])


def test_cue_raises_precision_of_cued_channel():
    ds = posner.simulate_trial("valid")
    onset = int(np.ceil(posner.timing()["target_onset"]))
    lp = ds["log_pi_y"].isel(time=onset)
    assert float(ds["x"].sel(state="attention").isel(time=onset)) > 1.0
    assert float(lp.sel(channel="left")) > 3.0 > 1.0 > float(lp.sel(channel="right"))
    assert float(lp.sel(channel="cue")) == pytest.approx(4.0)
    # before the cue nothing is attended
    assert float(ds["log_pi_y"].sel(channel="left").isel(time=5)) == pytest.approx(2.0, abs=1e-6)


def test_belief_at_steady_state_matches_precision_weighting():
    """Without attention, a sustained target is believed at pi / (pi + 1), pi = exp(2)."""
    ds = posner.simulate_trial("valid", 0.0)
    expected = np.exp(2.0) / (np.exp(2.0) + 1.0)  # 0.881
    assert float(ds["belief"].isel(time=-1)) == pytest.approx(expected, abs=0.01)


def test_reaction_time_interpolates_and_misses():
    b = np.array([0.0, 0.0, 0.2, 0.6, 1.0, 1.0])
    # crosses 0.4 half way between bins 2 and 3: 2.5 bins after onset 0 -> 25 ms
    assert posner.reaction_time(b, 0.4, onset=0.0) == pytest.approx(25.0)
    assert posner.reaction_time(b, 0.4, onset=1.0) == pytest.approx(15.0)
    assert np.isnan(posner.reaction_time(b * 0.3, 0.4))


@pytest.mark.parametrize("kw, match", [
    ({"cue": "neutral"}, "cue"),
    ({"threshold": 1.5}, "threshold"),
    ({"threshold": 0.0}, "threshold"),
    ({"threshold": "high"}, "threshold"),
    ({"attention_gain": float("nan")}, "attention_gain"),
    ({"n_bins": 8}, "n_bins"),
])
def test_bad_inputs_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        posner.simulate_trial(**kw)


def test_bad_stimulus_and_process_inputs():
    with pytest.raises(ValueError, match="cue"):
        posner.stimuli("left")
    with pytest.raises(ValueError, match="tau"):
        posner.process(tau=0.0)
    with pytest.raises(ValueError, match="belief"):
        posner.reaction_time(np.zeros((2, 3)), 0.5)


def test_results_file_and_figures(tmp_path):
    from cpsych.experiments import posner as exp

    args = argparse.Namespace(out=str(tmp_path), threshold=None, attention_gain=1.0)
    assert exp.run(args) == 0
    for stem in ("posner", "posner_trial_valid", "posner_trial_invalid"):
        for ext in ("png", "pdf"):
            assert (tmp_path / f"{stem}.{ext}").stat().st_size > 1000
    ds = cpsych.load(tmp_path / "posner.nc")
    assert list(ds["cue"].values) == ["valid", "invalid"]
    assert ds.sizes["time"] == posner.T_BINS
    assert ds["time"].attrs["units"] == "ms"
    np.testing.assert_allclose(ds["time"].values, np.arange(64) * 10.0)
    for name in ("belief", "belief_sd", "belief_no_attention", "attention", "log_pi_target",
                 "target_sensed"):
        assert ds[name].dims == ("cue", "time"), name
        assert "units" in ds[name].attrs, name
    assert ds["rt_ms"].dims == ("cue",) and ds["rt_ms"].attrs["units"] == "ms"
    assert ds.attrs["threshold"] == posner.THRESHOLD
    eff = float(ds["rt_ms"].sel(cue="invalid") - ds["rt_ms"].sel(cue="valid"))
    assert eff == pytest.approx(ds.attrs["validity_effect_ms"])
    assert eff > 4 * BIN_MS


def test_cli_rejects_bad_threshold(tmp_path, capsys):
    from cpsych.cli import main

    assert main(["posner", "--out", str(tmp_path), "--threshold", "2"]) == 2
    assert "threshold" in capsys.readouterr().err


def test_state_dependent_gradient_fd():
    """Gradients of the free energy with state-dependent precision agree with finite
    differences (jax.grad of the Gibbs energy vs central differences, step 1e-6)."""
    A = jnp.array([[-0.5, 0.3], [-0.2, -0.4]])
    B = jnp.array([[1.0], [0.5]])
    C = jnp.array([[1.0, -0.5], [0.3, 0.8], [0.2, 0.1]])

    def f(x, v, th):
        return A @ x + B @ v

    def g(x, v, th):
        return C @ x

    def log_pi(x, v, th):  # precision depends on both states and the cause
        return jnp.array([2.0 + 0.7 * x[0], 3.0 - 0.4 * x[1] + 0.5 * v[0], 1.0 + 0.3 * x[0]])

    lv = cpsych.Level(g=g, f=f, n_x=2, n_v=1, log_pi_z_fn=log_pi, log_pi_w=3.0)
    m = cpsych.HDM(levels=(lv,), eta=0.0, log_pi_eta=1.0, n=3, d=2, s=0.5).validate()
    n_y = 3
    rng = np.random.default_rng(0)
    nu = m.n * m.n_x + m.d * m.n_v
    u = jnp.asarray(rng.normal(scale=0.5, size=nu))
    w = jnp.asarray(rng.normal(scale=0.5, size=m.n * n_y + m.d * m.n_top))

    @jax.jit
    def L(uu):
        return gibbs_energy(m, uu, w, n_y)

    grad = np.asarray(jax.jit(jax.grad(L))(u))
    h = 1e-6
    steps = h * np.eye(nu)
    fd = np.array([(L(u + e) - L(u - e)) / (2 * h) for e in steps])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)
    # the state-dependent terms matter: freezing the precision at its value at u changes the
    # gradient, so the check above covers the derivative of the precision
    lp_u = np.asarray(log_pi(np.asarray(u[:2]), np.asarray(u[m.n * m.n_x:][:1]), None))
    frozen = cpsych.HDM(levels=(cpsych.Level(g=g, f=f, n_x=2, n_v=1, log_pi_z=lp_u,
                                             log_pi_w=3.0),),
                        eta=0.0, log_pi_eta=1.0, n=3, d=2, s=0.5).validate()
    L_frozen = jax.jit(lambda uu: gibbs_energy(frozen, uu, w, n_y))
    assert float(L_frozen(u)) == pytest.approx(float(L(u)), rel=1e-12)
    grad_frozen = np.asarray(jax.jit(jax.grad(L_frozen))(u))
    assert np.max(np.abs(grad - grad_frozen)) > 0.05
