"""The paradigm contract, the registry and the one integrator."""

from __future__ import annotations

import math
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpsych
from cpsych import integrator
from cpsych import paradigm as registry

SHIPPED = ("convolution", "force-matching", "mmn", "posner", "pursuit")


# ----------------------------------------------------------------------------- integrator
def test_integrator_is_exact_for_polynomial_inputs():
    """dz/dt = a z + b w(t) with w a quadratic in t: the input's generalised motion is exact
    (w''' = 0), so local linearisation must reproduce the closed-form solution."""
    a, b, dt, T = -0.7, 1.3, 0.25, 40
    c0, c1, c2 = 0.5, -0.2, 0.03  # w(t) = c0 + c1 t + c2 t^2

    def w_gen(t):
        return jnp.stack([c0 + c1 * t + c2 * t**2, c1 + 2 * c2 * t, 2 * c2 + 0 * t])[:, None]

    def flow(z, w):
        return integrator.Flow(q=a * z + b * w[0], A=jnp.array([[a]]),
                               B=jnp.zeros((1, 3)).at[0, 0].set(b)), z[0]

    ts = jnp.arange(T) * dt
    zs = integrator.integrate(flow, jnp.array([1.0]), jax.vmap(w_gen)(ts), dt)

    def exact(t):  # z = e^{at} z0 + int_0^t e^{a(t-s)} b w(s) ds, particular solution p(t)
        # p = p0 + p1 t + p2 t^2 with p' = a p + b w
        p2 = -b * c2 / a
        p1 = (2 * p2 - b * c1) / a
        p0 = (p1 - b * c0) / a
        return np.exp(a * t) * (1.0 - p0) + p0 + p1 * t + p2 * t**2

    np.testing.assert_allclose(np.asarray(zs), exact(np.asarray(ts)), rtol=0, atol=1e-12)


def test_shift_inputs_drops_orders_per_leaf():
    w = (jnp.arange(6.0).reshape(3, 2), jnp.arange(2.0).reshape(2, 1))
    s1 = integrator.shift_inputs(w, 1)
    np.testing.assert_array_equal(s1[0], [[2, 3], [4, 5], [0, 0]])
    np.testing.assert_array_equal(s1[1], [[1], [0]])
    s5 = integrator.shift_inputs(w, 5)
    assert float(jnp.abs(integrator.flatten_inputs(s5)).sum()) == 0.0


# ----------------------------------------------------------------------------- registry
def test_registry_lists_the_shipped_paradigms():
    names = registry.names()
    for name in SHIPPED:
        assert name in names
        assert isinstance(registry.get(name), cpsych.Paradigm)


def test_unknown_paradigm_is_one_line_naming_the_choices():
    with pytest.raises(ValueError, match=r"paradigm: unknown paradigm 'nope'; choose from .*"
                                         r"force-matching"):
        registry.get("nope")


@pytest.mark.parametrize("name", SHIPPED)
def test_contract_fields(name):
    par = registry.get(name)
    assert par.title and par.references
    assert "control" in par.presets
    assert len(set(par.parameter_names)) == len(par.parameters) >= 2
    for p in par.parameters:
        assert p.unit and p.meaning
        lo, hi = p.bounds
        assert lo <= p.default <= hi, p
        assert p.prior[1] > 0 and math.isfinite(p.prior[0])
    for preset in par.presets.values():
        assert set(preset) <= set(par.parameter_names)
    for r in par.readouts:
        assert r.unit and r.meaning
    assert set(par.params()) == set(par.parameter_names)


def test_params_checks_bounds_names_and_presets():
    par = registry.get("force-matching")
    assert par.params("schizophrenia")["h"] == pytest.approx(4.0)
    assert par.params("control", h=2.5)["h"] == 2.5
    with pytest.raises(ValueError, match="preset: unknown preset 'sad'"):
        par.params("sad")
    with pytest.raises(ValueError, match="'bogus' is not a parameter of force-matching"):
        par.params(bogus=1.0)
    with pytest.raises(ValueError, match="parameter 'kappa' .* outside its plausible range"):
        par.params(kappa=-1.0)
    with pytest.raises(ValueError, match="parameter 'h' of force-matching must be finite"):
        par.params(h=float("nan"))
    with pytest.raises(ValueError, match="design: 'speed' is not a design option"):
        par.full_design({"speed": 2})


def test_register_rejects_non_paradigms_and_entry_points_load(monkeypatch):
    with pytest.raises(TypeError, match="expected a cpsych.Paradigm"):
        registry.register({"name": "x"})
    # a third-party package's entry point (here one naming a shipped paradigm object)
    ep = metadata.EntryPoint(name="third-party", value="cpsych.models.convolution:PARADIGM",
                             group=registry.ENTRY_POINT_GROUP)
    eps = dict(registry._entry_points())
    monkeypatch.setattr(registry, "_entry_points", lambda: {**eps, "third-party": ep})
    assert "third-party" in registry.names()
    assert registry.get("third-party") is registry.get("convolution")


def _toy() -> cpsych.Paradigm:
    """A leaky integrator observed through noise: the steady-state belief has a closed form."""
    def simulate(values, design, key):
        k = values["k"]
        T = int(design["T"])
        xs = jax.lax.scan(lambda x, _: (x + k * (1.0 - x), x), 0.0, None, length=T)[1]
        return {"final": xs[-1], "trace": xs}

    return cpsych.Paradigm(
        name="toy", title="toy", parameters=(
            cpsych.Parameter("k", 0.5, "1/bin", "rate", (0.5, 0.1), (0.0, 1.0)),
            cpsych.Parameter("unused", 0.0, "1", "not used", (0.0, 1.0))),
        presets={"control": {}},
        readouts=(cpsych.Readout("final", "1", "value at the end"),
                  cpsych.Readout("trace", "1", "trajectory", ("step",))),
        simulate=simulate, design={"T": 6}, coords={"step": np.arange(6)},
        references=("none",))


def test_a_registered_paradigm_sweeps(tmp_path):
    from cpsych.experiments.sweep_cli import run_sweep

    registry.register(_toy())
    try:
        ds = run_sweep("toy", {"k": [0.1, 0.5]}, store=tmp_path / "s", progress=False)
    finally:
        registry._EXTRA.pop("toy")
    expected = 1.0 - (1.0 - np.array([0.1, 0.5])) ** 5  # x_{t+1} = x_t + k (1 - x_t)
    np.testing.assert_allclose(ds["final"].values, expected, rtol=1e-12)
    assert ds["trace"].dims[-1] == "step"


# ----------------------------------------------------------------------------- oracles
@pytest.mark.slow
def test_force_matching_readouts_equal_the_experiment():
    """The paradigm's read-outs (one vmapped trial per target, replay calibration per
    parameter set) equal the experiment's own batched computation."""
    from cpsych.experiments import force_matching as exp

    res = exp.compute()
    par = registry.get("force-matching")
    for g, name in enumerate(exp.GROUPS):
        ro = par.run(name)
        np.testing.assert_allclose(ro["self_generated"], res["self_generated"][g], atol=1e-9)
        np.testing.assert_allclose(ro["matched"], res["matched"][g], atol=1e-6)
    assert par.run("control")["illusion"] > par.run("schizophrenia")["illusion"] > 0


@pytest.mark.slow
def test_posner_readouts_equal_the_labelled_simulation():
    from cpsych.models import posner

    ro = registry.get("posner").run()
    for cue in ("valid", "invalid"):
        assert ro[f"rt_{cue}"] == pytest.approx(posner.simulate_trial(cue).attrs["rt_ms"],
                                                abs=1e-9)
    assert ro["validity_effect"] > 30.0
    assert registry.get("posner").run(gamma=0.0)["validity_effect"] == pytest.approx(0, abs=1e-3)


@pytest.mark.slow
def test_convolution_paradigm_recovers_states_in_a_noiseless_world():
    par = registry.get("convolution")
    clean = par.run()
    assert clean["rmse_x"] < 0.01 and clean["rmse_v"] < 0.02
    # an observer that trusts its senses far less recovers the states worse
    assert par.run(log_pi_z=-4.0)["rmse_x"] > 5 * clean["rmse_x"]


@pytest.mark.slow
def test_pursuit_readouts_equal_the_direct_simulation():
    from cpsych.models import pursuit as pu

    par = registry.get("pursuit")
    for preset in ("control", "schizophrenia"):
        ro = par.run(preset)
        direct = pu.simulate(preset, "occlusion")[1]
        for k in ("gain_visible", "gain_occluded", "peak_eye_velocity"):
            assert ro[k] == pytest.approx(float(direct[k]), abs=1e-9), (preset, k)
    rev = par.run(design={"scenario": "reversal"})
    assert "gain_occluded" not in rev and np.isfinite(rev["rms_error_deg"])
    # the schizophrenia preset loses pursuit through occlusion (Adams et al. 2012)
    assert par.run("schizophrenia")["gain_occluded"] < par.run("control")["gain_occluded"] - 0.2
