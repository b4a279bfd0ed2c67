"""Active inference engine: action, the action mask, state-dependent precision, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpsych
from cpsych.energy import gibbs_energy, laplace_terms


def reaching(set_point=2.0, T=48):
    """Process: dx/dt = a - x/4, y = x. Model: dx/dt = (v - x)/2, prior v = set point."""
    proc = cpsych.Process(f=lambda x, v, a, th: a - x / 4, g=lambda x, v, a, th: x,
                          n_x=1, n_v=0, n_a=1)
    lv = cpsych.Level(g=lambda x, v, th: x, f=lambda x, v, th: (v - x) / 2, n_x=1, n_v=1,
                      log_pi_z=4.0, log_pi_w=4.0)
    model = cpsych.HDM(levels=(lv,), log_pi_eta=4.0, n=4, d=2, s=0.5)
    return proc, model, np.full((1, T), set_point)


def test_reaching_agent_moves_the_world_to_its_set_point():
    proc, model, priors = reaching(2.0)
    ds = cpsych.simulate(proc, model, None, priors, key=jax.random.key(1),
                         action_mask=[np.exp(4.0)])
    x_end = ds["x_process"].isel(time=slice(-10, None)).values
    # the agent's belief and the world both settle at the set point (within 1 %)
    assert np.all(np.abs(x_end - 2.0) < 0.02)
    assert np.all(np.abs(ds["x"].isel(time=slice(-10, None)).values - 2.0) < 0.02)
    # at equilibrium the action balances the world's decay: a = x / 4
    np.testing.assert_allclose(ds["a"].isel(time=-1).item(), 0.5, atol=0.01)


def test_closed_action_mask_moves_nothing():
    proc, model, priors = reaching(2.0)
    ds = cpsych.simulate(proc, model, None, priors, action_mask=[0.0], key=jax.random.key(1))
    assert np.max(np.abs(ds["a"].values)) < 1e-12
    # only process noise (log-precision 16) moves the world
    assert np.max(np.abs(ds["x_process"].values)) < 0.01
    # the belief is a compromise between the set point and the evidence, and the sensory
    # prediction error that action would have removed persists
    assert 0.1 < ds["x"].isel(time=-1).item() < 1.0
    assert ds["eps_y"].isel(time=-1).item() < -0.1


def sd_model():
    """Linear model whose sensory log-precision depends on states and causes."""
    lv = cpsych.Level(
        g=lambda x, v, th: jnp.stack([x[0], x[0] + x[1]]),
        f=lambda x, v, th: v - x / 4, n_x=2, n_v=2, log_pi_z=8.0, log_pi_w=4.0,
        theta={"h": 3.0},
        log_pi_z_fn=lambda x, v, th: 8.0 - th["h"] * jnp.tanh(v[0] + x[0]) * jnp.ones(2),
    )
    return cpsych.HDM(levels=(lv,), log_pi_eta=jnp.array([6.0, 0.0]), n=5, d=3, s=0.5).validate()


def test_state_dependent_gradient_and_curvature_match_finite_differences():
    m = sd_model()
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=5 * 2 + 3 * 2)) * 0.3
    w = jnp.asarray(rng.normal(size=5 * 2 + 3 * 2)) * 0.3
    c = jax.jit(laplace_terms, static_argnums=(3, 4, 5))(m, u, w, 2, False, True)

    L = jax.jit(lambda uu: gibbs_energy(m, uu, w, 2))
    dL = jax.jit(jax.grad(L))

    h = 1e-6
    eye = np.eye(u.size)
    g_fd = np.array([(L(u + h * e) - L(u - h * e)) / (2 * h) for e in eye])
    assert np.max(np.abs(c.grad - g_fd)) / np.max(np.abs(g_fd)) < 1e-7
    H_fd = np.array([(dL(u + h * e) - dL(u - h * e)) / (2 * h) for e in eye])
    assert np.max(np.abs(c.H - H_fd)) / np.max(np.abs(H_fd)) < 1e-7
    # the log-determinant term matters: without it the gradient is wrong
    c_const = laplace_terms(
        cpsych.HDM(levels=(m.levels[0].__class__(**{**m.levels[0].__dict__,
                                                     "log_pi_z_fn": None}),),
                   log_pi_eta=m.log_pi_eta, n=5, d=3, s=0.5).validate(),
        u, w, 2, spm_top_order=False)
    assert np.max(np.abs(c_const.grad - g_fd)) / np.max(np.abs(g_fd)) > 1e-3


def test_default_curvature_is_positive_semidefinite_with_state_dependent_precision():
    m = sd_model()
    rng = np.random.default_rng(1)
    u = jnp.asarray(rng.normal(size=16)) * 0.3
    w = jnp.asarray(rng.normal(size=16)) * 0.3
    exact = laplace_terms(m, u, w, 2, exact_curvature=True).H
    stable = laplace_terms(m, u, w, 2).H
    assert np.min(np.linalg.eigvalsh(0.5 * (exact + exact.T))) < 0  # indefinite
    assert np.min(np.linalg.eigvalsh(0.5 * (stable + stable.T))) > -1e-6 * np.max(np.abs(stable))


def test_precisions_in_force_are_reported():
    proc = cpsych.Process(f=lambda x, v, a, th: a - x / 4, g=lambda x, v, a, th: x, n_x=1,
                          n_v=0, n_a=1)
    lv = cpsych.Level(g=lambda x, v, th: x, f=lambda x, v, th: v - x / 4, n_x=1, n_v=1,
                      log_pi_w=4.0, theta={"h": 2.0},
                      log_pi_z_fn=lambda x, v, th: 8.0 - th["h"] * jnp.tanh(v + x))
    model = cpsych.HDM(levels=(lv,), log_pi_eta=6.0, n=5, d=3, s=0.5)
    ds = cpsych.simulate(proc, model, None, np.full((1, 32), 1.0))
    expected = 8.0 - 2.0 * np.tanh(ds["v"].values[:, 0] + ds["x"].values[:, 0])
    np.testing.assert_allclose(ds["log_pi_y"].values[:, 0], expected, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(action_mask=[1.0, 1.0]), r"action_mask: expected shape \(1,\)"),
        (dict(action_mask=[-1.0]), r"action_mask: values must be >= 0, got -1"),
        (dict(priors=np.ones((2, 10))), r"priors: expected shape \(n_top, T\) = \(1, T\)"),
        (dict(causes=np.ones((1, 10))), r"causes: expected shape \(n_v, T\) = \(0, 10\)"),
        (dict(priors=np.full((1, 10), np.nan)), "simulate: field 'priors' has non-finite"),
    ],
)
def test_bad_inputs_are_rejected(kwargs, message):
    proc, model, priors = reaching(T=10)
    args = dict(causes=None, priors=priors)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        cpsych.simulate(proc, model, args.pop("causes"), args.pop("priors"), **args)


def test_process_and_model_with_different_channels_are_rejected():
    proc, model, priors = reaching(T=10)
    two = cpsych.Process(f=lambda x, v, a, th: a - x, g=lambda x, v, a, th: jnp.stack([x[0], x[0]]),
                         n_x=1, n_v=0, n_a=1)
    with pytest.raises(ValueError, match="process's 'g' returns 2 channels but the model's "
                                         "level-1 'g' predicts 1"):
        cpsych.simulate(two, model, None, priors)


def test_bad_process_is_rejected():
    bad = cpsych.Process(f=lambda x, v, a, th: jnp.stack([x[0], x[0]]), g=lambda x, v, a, th: x,
                         n_x=1, n_v=0, n_a=1)
    _, model, priors = reaching(T=10)
    with pytest.raises(ValueError, match=r"process: field 'f' returns shape \(2,\), expected"):
        cpsych.simulate(bad, model, None, priors)


def test_sensory_attenuation_lets_an_agent_move():
    """SPEC 5.4's logic in its simplest form: one proprioceptive channel whose precision falls
    while the agent believes it is pushing (log-precision 8 - h tanh(v + x))."""
    world = cpsych.Process(f=lambda x, v, a, th: jnp.tanh(a) - x / 4, g=lambda x, v, a, th: x,
                           n_x=1, n_v=0, n_a=1, log_pi_z=8.0, log_pi_w=8.0)
    t = np.arange(32)
    intention = np.exp(-((t - 16) ** 2) / 16)[None]  # prior belief: "I push"

    def peak(h):
        lv = cpsych.Level(g=lambda x, v, th: x, f=lambda x, v, th: v - x / 4, n_x=1, n_v=1,
                          log_pi_w=4.0, theta={"h": h},
                          log_pi_z_fn=lambda x, v, th: 8.0 - th["h"] * jnp.tanh(v + x))
        agent = cpsych.HDM(levels=(lv,), log_pi_eta=4.0, n=5, d=3, s=0.5)
        ds = cpsych.simulate(world, agent, None, intention, noise=False)
        return ds["x_process"].max().item(), ds["log_pi_y"].min().item()

    still, pi_still = peak(0.0)
    moving, pi_moving = peak(6.0)
    assert still < 0.25  # precise proprioception: the intention is explained away
    assert moving > 0.8 and moving > 3 * still  # attenuated: the agent acts on it
    assert pi_still == 8.0 and pi_moving < 8.0 - 3.0  # precision fell during the movement


def test_diverging_world_is_reported():
    boom = cpsych.Process(f=lambda x, v, a, th: 60.0 * x + 1.0, g=lambda x, v, a, th: x,
                          n_x=1, n_v=0, n_a=1)
    _, model, priors = reaching(T=64)
    with pytest.raises(FloatingPointError, match="active inference diverged"):
        cpsych.simulate(boom, model, None, priors, noise=False)
    ds = cpsych.simulate(boom, model, None, priors, noise=False, on_divergence="flag")
    assert ds.attrs["diverged"] == 1


# ------------------------------------------- action's generalised motion (spm_ALAP's history)
@pytest.mark.parametrize("n", [1, 2, 4, 5, 8])
@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_action_history_operator_is_the_embedding_of_the_action_so_far(n, dt):
    from cpsych.active import action_history_operator

    rng = np.random.default_rng(n)
    A = rng.normal(size=(2, 12))
    W, K = action_history_operator(n, dt), n // 2
    for t in range(1, 12):
        past = A[:, np.clip(np.arange(t - K, t + 1), 0, None)]  # before 0: the first action
        expected = np.asarray(cpsych.embed(A[:, :t + 1], n, t, dt))  # SPM: future = now
        np.testing.assert_allclose(W[min(t, n)] @ past.T, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(W[0] @ np.ones(K + 1), np.eye(n)[0], atol=1e-9)  # no motion


def test_generalised_action_enters_the_worlds_motion_by_the_chain_rule():
    from cpsych.active import _sensations

    proc = cpsych.Process(f=lambda x, v, a, th: -x / 2 + 3 * a,
                          g=lambda x, v, a, th: jnp.stack([x[0], a[0] ** 2]), n_x=1, n_v=0,
                          n_a=1).validate()
    x, a = jnp.array([0.7]), jnp.array([0.4])
    a_hi = jnp.array([[0.3], [-0.2], [0.1]])  # a', a'', a'''
    Y, _ = _sensations(proc, 4, x, a, jnp.zeros((4, 3)), a_hi)
    x1 = -0.7 / 2 + 3 * 0.4
    x2 = -x1 / 2 + 3 * 0.3
    x3 = -x2 / 2 + 3 * -0.2
    np.testing.assert_allclose(Y[:, 0], [0.7, x1, x2, x3], rtol=1e-14)
    np.testing.assert_allclose(Y[:, 1], [0.16, 0.8 * 0.3, 0.8 * -0.2, 0.8 * 0.1], rtol=1e-14)
    Y0, _ = _sensations(proc, 4, x, a, jnp.zeros((4, 3)))  # action's motion zero
    np.testing.assert_allclose(Y0[:, 1], [0.16, 0, 0, 0], atol=1e-15)


def test_reflex_arc_is_first_order_as_spm():
    """spm_ADEM/spm_ALAP's reflex arc is dy^(0)/da = g_a, dy^(k)/da = g_x f_x^(k-1) f_a: with
    f and g linearised at the bin's point (``at``) the second derivatives (here g_aa a^(k))
    drop out of dY/da; linearised at the moving point they would be there."""
    from cpsych.active import _sensations

    proc = cpsych.Process(f=lambda x, v, a, th: -x / 2 + 3 * a,
                          g=lambda x, v, a, th: jnp.stack([x[0], a[0] ** 2]), n_x=1, n_v=0,
                          n_a=1).validate()
    x, a, e = jnp.array([0.7]), jnp.array([0.4]), jnp.zeros((4, 3))
    a_hi = jnp.array([[0.3], [-0.2], [0.1]])
    first = jax.jacfwd(lambda a_: _sensations(proc, 4, x, a_, e, a_hi,
                                              at=(x, e[0, :0], a))[0])(a)[..., 0]
    moving = jax.jacfwd(lambda a_: _sensations(proc, 4, x, a_, e, a_hi)[0])(a)[..., 0]
    # proprioception: g_x f_x^(k-1) f_a = 3, -3/2, 3/4; the second channel: 2a at order 0 only
    np.testing.assert_allclose(first[:, 0], [0, 3, -1.5, 0.75], atol=1e-14)
    np.testing.assert_allclose(first[:, 1], [0.8, 0, 0, 0], atol=1e-14)
    np.testing.assert_allclose(moving[:, 1], [0.8, 0.6, -0.4, 0.2], atol=1e-14)


def test_world_option_is_checked():
    proc2, model2, priors2 = reaching(T=10)
    with pytest.raises(ValueError, match="world: expected one of 'generalised', 'instant'"):
        cpsych.simulate(proc2, model2, None, priors2, world="spm")


def test_action_motion_option():
    from cpsych.models import force_matching as fm

    proc, mdl = fm.process(), fm.model()
    pri = fm.priors(0.5)
    mask = jnp.array([1.0, 0.0])
    ext = jnp.zeros((1, fm.N_BINS))
    peak = {m: float(jnp.max(cpsych.active.run(proc, mdl, ext, pri, action_mask=mask,
                                               action_motion=m).x_process))
            for m in ("history", "zero")}
    default = float(jnp.max(cpsych.active.run(proc, mdl, ext, pri, action_mask=mask).x_process))
    assert default == peak["history"]
    # measured 0.6190 N (history, SPM) and 0.6034 N (zero) at the 0.5 N target (world
    # 'instant'; 0.6066 and 0.5871 N under 'generalised')
    assert peak["history"] - peak["zero"] > 0.01
    proc2, model2, priors2 = reaching(T=10)
    with pytest.raises(ValueError, match="action_motion: expected one of 'history', 'zero'"):
        cpsych.simulate(proc2, model2, None, priors2, action_motion="spm")
