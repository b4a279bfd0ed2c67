"""The roving-oddball mismatch negativity as predictive coding with learning (SPM12
``DEM_demo_MMN``; Friston 2005; Garrido et al. 2009).

Stimuli
-------
A presentation lasts ``T = 48`` bins of 5 ms. Each stimulus is the same Gaussian bump of
input, the cause ``v(t) = exp(-((t - 20) / 4)^2)`` (``t = 1..48``, peak at 100 ms). Stimuli
differ in how the hidden states are mapped to the senses (their "frequency" feature): the
coupling ``g21`` is 4 for stimulus A and 1 for stimulus B. The roving-oddball train is
``n_a`` presentations of A followed by ``n_b`` presentations of B (2 and 7 in SPM): the first
B is the *deviant*; repeated, B becomes the new *standard*. SPM discards the first presentation
as burn-in; here every presentation is simulated and reported.

Generative process (the world)
------------------------------
Two hidden states ``x`` are driven by the cause and observed through two channels::

    dx/dt = P_f x + [v; 0],        P_f = [[-1, 4], [-2, -1]] / 16
    y     = P_g x + [0; 16],       P_g = [[0, 1], [g21, 0]]

so ``y1 = x2`` (amplitude) and ``y2 = g21 x1 + 16`` (frequency). All fluctuations have
log-precision 16: the data are generated noiselessly (:func:`generate`, by
:func:`cpsych.generate`), or with smooth noise of a chosen log-precision when a PRNG key is
given to the paradigm's ``simulate``.

Generative model (the listener)
-------------------------------
The same equations, with the coupling ``g21`` unknown and the log-precision ``h`` of the sensory
noise unknown (``Pi_z = exp(h) I``); the state noise, the cause noise and the prior on the cause
(``eta = v(t)``, the expected stimulus time course) have log-precision 16. Generalised
coordinates: ``n = 7`` for states and data (SPM ``E.n = 6``), ``d = 3`` for causes
(``E.d = 2``), smoothness ``s = 1`` bin.

Inference and learning (DEM with one E-step per presentation)
-------------------------------------------------------------
Each presentation is perceived by generalised filtering under the current prior expectations
of ``g21`` and ``h`` (the D-step: :func:`cpsych.filtering.run`). After it, the listener learns
by one variational E- and M-step on the free energy of that trajectory (SPM's ``E.nE = 1``,
states held at the D-step path: the mean-field update of DEM). ``F`` below is SPM's
(negative) free energy, which the steps ascend:

* E-step (synaptic efficacy): one Gauss-Newton step on ``g21`` from its prior mean,
  ``dg = (1 - exp(-c tau)) / c * dF/dg``, with gradient ``dF/dg = -sum_t J' Pi e`` and
  curvature ``c = sum_t J' Pi J + 1/pC`` of the generalised sensory errors ``e`` (``J = de/dg``,
  ``Pi = kron(R(n, s), exp(h) I)``); ``tau = exp(1/2)`` is SPM's integration time, which makes
  it a full Newton step (``c tau >> 1``), and ``log_learning_time`` scales it;
* M-step (synaptic gain): Fisher scoring on ``h`` (at most 8 steps of ``exp(4)`` integration
  time, each clipped to +-2, stopping when the change falls below ``exp(-4)``) with gradient
  ``dF/dh = -1/2 exp(h) sum_t e' (R x I) e + T n n_y / 2 - (h - h_E) / hC`` and expected
  curvature ``-T n n_y / 2 - 1/hC``.

The posterior means become the prior means of the next presentation (the prior variances,
``pC = 1`` and ``hC = exp(-4)``, are not carried over). Because the listener takes one step
per presentation and the hidden states absorb part of the surprise, ``g21`` moves from 4
towards 1 gradually (3.0, 2.4, 2.0, ...): the prediction error to the repeated B shrinks
with each repetition (repetition suppression), and the deviant minus the last standard is the
mismatch response.

Why not :func:`cpsych.learn`: it returns the converged free-action optimum (L-BFGS through
the filter, a Laplace covariance), which for these noiseless data learns B's coupling in one
presentation (``g21 = 0.994``, ``h = 6.8`` after the first B) and so has no gradual
suppression; it is also a host-side loop, so it cannot run inside the traced ``simulate`` of a
paradigm. The update here is DEM's one E/M iteration, written with the engine's filtering,
generalised coordinates and temporal precision (see docs/mmn.md).

The "ERP"
---------
What SPM plots as the event-related response is the precision-weighted prediction error in
force during perception: ``sqrt(exp(h_E)) eps_y(t)`` at level 1 (sensory errors, two
channels; ``h_E`` is the prior log-precision of that presentation) and ``exp(8) eps_v(t)`` at
level 2 (errors on the cause). Read-outs are in units of the errors' standard deviations.

Presets
-------
* control: SPM's values.
* schizophrenia: a reduced MMN (Umbricht & Krljes 2005, meta-analysis: effect size about 1)
  modelled as *slower learning* (impaired short-term plasticity, NMDA-receptor hypofunction:
  Stephan, Baldeweg & Friston 2006; Baldeweg et al. 2004): ``log_learning_time`` 0.5 -> -8,
  so each presentation moves ``g21`` a fraction ``1 - exp(-c tau)`` of the Newton step (about
  half at the first B, less later as ``h`` and with it ``c`` fall). The MMN is reduced and no
  longer grows with the number of standards (Baldeweg et al. 2004). The sensory-precision
  account (Adams et al. 2013) is available through ``h0`` and ``log_hC``: a lower ``h0`` alone
  is re-learned within two presentations and hardly changes the MMN, while a low *and* rigid
  sensory precision (``h0 = 2``, ``log_hC = -8``) reduces it by two thirds (docs/mmn.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import cpsych
from cpsych import HDM, Level, Paradigm, Parameter, Readout, filtering
from cpsych.gencoords import embed_series, temporal_precision
from cpsych.generation import draw_noise, simulate_hdm

__all__ = [
    "PARADIGM", "N_BINS", "BIN_MS", "N_ORDERS", "D_ORDERS", "SMOOTHNESS", "P_F", "COUPLING_A",
    "COUPLING_B", "LOG_PI_FIXED", "SPM_LEARNING", "Belief", "Learning", "Presentation",
    "stimulus", "time_ms", "coupling_matrix", "model", "process", "generate", "present",
    "sequence", "readouts",
]

N_BINS = 48  # bins per presentation
BIN_MS = 5.0  # one bin in ms
ONSET, WIDTH = 20.0, 4.0  # peak (1-based bin) and width (bins) of the stimulus
N_ORDERS, D_ORDERS, SMOOTHNESS = 7, 3, 1.0  # SPM E.n = 6, E.d = 2, E.s = 1
P_F = np.array([[-1.0, 4.0], [-2.0, -1.0]]) / 16.0
OFFSET = np.array([0.0, 16.0])
COUPLING_A, COUPLING_B = 4.0, 1.0  # g21 of the two stimuli
LOG_PI_FIXED = 16.0  # state noise, cause noise and the prior on the cause
E_STEP_LOG_TIME = 0.5  # SPM's integration time of the first E-step, exp(1/2)
M_STEP_LOG_TIME, M_STEP_MAX, M_STEP_CLIP, M_STEP_TOL = 4.0, 8, 2.0, float(np.exp(-4.0))


def stimulus(T: int = N_BINS) -> np.ndarray:
    """The cause: ``exp(-((t - 20) / 4)^2)`` at 1-based bins ``t = 1..T``, shape ``(1, T)``."""
    t = np.arange(1, T + 1)
    return np.exp(-(((t - ONSET) / WIDTH) ** 2))[None, :]


def time_ms(T: int = N_BINS) -> np.ndarray:
    """Peristimulus time of each bin: 5, 10, ..., 5 T ms (SPM's ``pst``)."""
    return BIN_MS * np.arange(1, T + 1)


def coupling_matrix(g21: Any) -> jax.Array:
    """``P_g = [[0, 1], [g21, 0]]``."""
    return jnp.array([[0.0, 1.0], [0.0, 0.0]]).at[1, 0].set(g21)


def _f(x, v, th):
    return th["f"] @ x + jnp.concatenate([v, jnp.zeros(1, v.dtype)])


def _g(x, v, th):
    return coupling_matrix(th["g21"]) @ x + jnp.asarray(OFFSET)


def model(g21: Any = COUPLING_A, h: Any = 4.0, log_pi: float = LOG_PI_FIXED) -> HDM:
    """The listener's model (and, with ``h = 16``, the generative process) as an HDM.

    Parameters
    ----------
    g21 : coupling of the first hidden state to the second channel.
    h : log-precision of the sensory noise (both channels).
    log_pi : log-precision of the state noise, the cause noise and the prior on the cause.
    """
    level = Level(g=_g, f=_f, n_x=2, n_v=1, theta={"g21": g21, "f": P_F},
                  log_pi_z=h, log_pi_w=log_pi, x_names=("x1", "x2"), v_names=("v",),
                  out_names=("amplitude", "frequency"))
    return HDM(levels=(level,), eta=stimulus(), log_pi_eta=log_pi, n=N_ORDERS, d=D_ORDERS,
               s=SMOOTHNESS)


def process(g21: Any, log_pi: float = LOG_PI_FIXED) -> HDM:
    """The generative process of a stimulus with coupling ``g21`` (all noise at ``log_pi``)."""
    return model(g21, log_pi, log_pi)


def generate(g21: float, key: jax.Array | None = None, log_pi: float = LOG_PI_FIXED
             ) -> np.ndarray:
    """Data ``(2, T)`` of one presentation (:func:`cpsych.generate`); noiseless without a key."""
    m = process(g21, log_pi)
    if key is None:
        sim = cpsych.generate(m, stimulus(), z=np.zeros((3, N_BINS)), w=np.zeros((2, N_BINS)))
    else:
        sim = cpsych.generate(m, stimulus(), key)
    return sim["y"].values.T


class Belief(NamedTuple):
    """Prior (or posterior) expectations carried from one presentation to the next."""

    g21: jax.Array  # coupling (the stimulus mapping the listener expects)
    h: jax.Array  # sensory log-precision


class Learning(NamedTuple):
    """Priors and rate of learning (SPM: ``pC = 1``, ``hC = exp(-4)``, ``exp(1/2)``)."""

    log_pC: Any = 0.0  # log prior variance of g21
    log_hC: Any = -4.0  # log prior variance of h
    log_time: Any = E_STEP_LOG_TIME  # log integration time of the E-step (learning rate)


#: SPM's learning: prior variances 1 and exp(-4), E-step integration time exp(1/2).
SPM_LEARNING = Learning()


class Presentation(NamedTuple):
    """What one presentation produces."""

    posterior: Belief
    var_g21: jax.Array  # posterior variance of g21 (SPM qP.V)
    var_h: jax.Array  # posterior variance of h (SPM qH.C)
    erp1: jax.Array  # (T, 2) precision-weighted sensory prediction errors
    erp2: jax.Array  # (T,) precision-weighted prediction errors on the cause
    path: filtering.FilterOutput  # the D-step (filtering) outputs


def _regularised_step(curvature: jax.Array, gradient: jax.Array, log_time: Any) -> jax.Array:
    """Gauss-Newton ascent on ``F`` integrated for time ``exp(log_time)`` (scalar, exact):
    ``(1 - exp(-c tau)) / c * dF/dp`` with ``c = -d2F/dp2 > 0``."""
    tau = jnp.exp(log_time)
    return -jnp.expm1(-curvature * tau) / curvature * gradient


def _sensory_errors(g21: jax.Array, x_gen: jax.Array, y_gen: jax.Array) -> jax.Array:
    """Generalised sensory errors ``y~ - g~(x~)`` of every bin, ``(T, n, 2)``: ``g`` is linear
    in ``x``, so its generalised prediction is ``P_g x~`` plus the offset at order 0."""
    pred = jnp.einsum("ij,tkj->tki", coupling_matrix(g21), x_gen)
    return y_gen - pred.at[:, 0].add(jnp.asarray(OFFSET))


def _m_step(h_prior: jax.Array, q: jax.Array, n_data: int, log_hC: Any) -> tuple:
    """Fisher scoring of ``h`` on the trajectory's sum of squared errors ``q`` (SPM's M-step)."""
    ic = jnp.exp(-log_hC)
    curv = 0.5 * n_data + ic  # minus the expected second derivative

    def body(_, carry):
        h, done = carry
        grad = -0.5 * jnp.exp(h) * q + 0.5 * n_data - ic * (h - h_prior)
        dh = jnp.clip(_regularised_step(curv, grad, M_STEP_LOG_TIME), -M_STEP_CLIP, M_STEP_CLIP)
        h_new = jnp.where(done, h, h + dh)
        stop = done | (grad * dh < M_STEP_TOL) | (jnp.abs(dh) < M_STEP_TOL)
        return h_new, stop

    h, _ = jax.lax.fori_loop(0, M_STEP_MAX, body, (h_prior, jnp.asarray(False)))
    return h, 1.0 / curv


def present(prior: Belief, y: jax.Array, learning: Learning = SPM_LEARNING) -> Presentation:
    """Perceive one presentation ``y (2, T)`` under ``prior`` and learn from it (pure JAX).

    The D-step is generalised filtering (:func:`cpsych.filtering.run`) under the prior means;
    the E- and M-steps are one update of ``g21`` and ``h`` on the errors of that trajectory
    (module docstring).
    """
    m = model(prior.g21, prior.h).validate()
    path = filtering.run(m, y, jnp.asarray(stimulus()))
    R = temporal_precision(N_ORDERS, SMOOTHNESS)
    y_gen = embed_series(y, N_ORDERS)
    e = _sensory_errors(prior.g21, path.x_gen, y_gen)  # (T, n, 2)
    J = jax.jacfwd(_sensory_errors)(prior.g21, path.x_gen, y_gen)  # de/dg21
    pi = jnp.exp(prior.h)
    # E-step: gradient and curvature of the free energy in g21 at the prior mean
    grad = -pi * jnp.einsum("tkc,kl,tlc->", J, R, e)
    curv = pi * jnp.einsum("tkc,kl,tlc->", J, R, J) + jnp.exp(-learning.log_pC)
    g21 = prior.g21 + _regularised_step(curv, grad, learning.log_time)
    # M-step: the sensory log-precision
    q = jnp.einsum("tkc,kl,tlc->", e, R, e)
    h, var_h = _m_step(prior.h, q, e.size, learning.log_hC)
    erp1 = jnp.sqrt(pi) * path.ev[:, :2]
    erp2 = jnp.exp(0.5 * LOG_PI_FIXED) * path.ev[:, 2]
    return Presentation(Belief(g21, h), 1.0 / curv, var_h, erp1, erp2, path)


def _data(g21: jax.Array, key: jax.Array | None, log_pi: float) -> jax.Array:
    """One presentation's data, traceable: noiseless without a key."""
    m = process(g21, log_pi).validate()
    if key is None:
        z, w = jnp.zeros((3, N_BINS)), jnp.zeros((2, N_BINS))
    else:
        z, w = draw_noise(m, key, N_BINS, 2)
    return simulate_hdm(m, jnp.asarray(stimulus()), z, w).y.T


def sequence(prior: Belief, learning: Learning = SPM_LEARNING, n_a: int = 2, n_b: int = 7,
             couplings: tuple[float, float] = (COUPLING_A, COUPLING_B),
             key: jax.Array | None = None, log_pi: float = LOG_PI_FIXED) -> Presentation:
    """The roving-oddball train: ``n_a`` presentations of A, then ``n_b`` of B (pure JAX).

    The posterior means of each presentation are the prior means of the next. Returns the
    :class:`Presentation` of every presentation stacked on a leading axis; the priors in force
    at presentation ``i`` are the posteriors of ``i - 1`` (``prior`` for the first).
    """
    g_true = jnp.asarray([couplings[0]] * n_a + [couplings[1]] * n_b, float)
    keys = None if key is None else jax.random.split(key, n_a + n_b)

    def step(belief, inputs):
        g, k = inputs
        out = present(belief, _data(g, k, log_pi), learning)
        return out.posterior, out

    _, out = jax.lax.scan(step, Belief(*map(lambda a: jnp.asarray(a, float), prior)),
                          (g_true, keys))
    return out


def readouts(out: Presentation, n_a: int) -> dict[str, jax.Array]:
    """ERP amplitudes, mismatch responses and learned parameters of a train."""
    peak1 = jnp.max(jnp.abs(out.erp1), axis=(1, 2))
    peak2 = jnp.max(jnp.abs(out.erp2), axis=1)
    rms1 = jnp.sqrt(jnp.mean(out.erp1**2, axis=(1, 2)))
    b = slice(n_a, None)  # presentations of B: the deviant, then its repetitions
    return {
        "erp1": out.erp1.transpose(0, 2, 1), "erp2": out.erp2,
        "erp1_peak": peak1, "erp2_peak": peak2, "erp1_rms": rms1,
        "mmn": peak1[n_a] - peak1[-1], "mmn_level2": peak2[n_a] - peak2[-1],
        "mmn_by_repetition": peak1[n_a] - peak1[b],
        "g21": out.posterior.g21, "h": out.posterior.h,
        "g21_var": out.var_g21, "h_var": out.var_h,
    }


def _count(design: dict[str, Any], name: str, least: int) -> int:
    value = design[name]
    if not float(value).is_integer() or value < least:
        raise ValueError(f"design: '{name}' must be a whole number of presentations >= {least}, "
                         f"got {value}")
    return int(value)


def _simulate(values: dict[str, Any], design: dict[str, Any], key: jax.Array | None):
    n_a, n_b = _count(design, "n_a", 1), _count(design, "n_b", 2)
    prior = Belief(jnp.asarray(design["coupling_a"], float), jnp.asarray(values["h0"], float))
    learning = Learning(values["log_pC"], values["log_hC"], values["log_learning_time"])
    out = sequence(prior, learning, n_a, n_b, (design["coupling_a"], design["coupling_b"]),
                   key, float(design["noise_log_precision"]))
    return readouts(out, n_a)


_SD = "1 (error standard deviations)"
PARADIGM = Paradigm(
    name="mmn",
    title="Roving-oddball mismatch negativity: predictive coding with learning "
          "(Friston 2005; Garrido et al. 2009; SPM12 DEM_demo_MMN)",
    parameters=(
        Parameter("h0", 4.0, "log-precision", "prior expectation of the sensory "
                  "log-precision h at the first presentation", (4.0, 2.0), (-4.0, 12.0)),
        Parameter("log_hC", -4.0, "log-variance", "log prior variance of h (each "
                  "presentation)", (-4.0, 2.0), (-12.0, 4.0)),
        Parameter("log_pC", 0.0, "log-variance", "log prior variance of the coupling g21 "
                  "(each presentation)", (0.0, 2.0), (-12.0, 6.0)),
        Parameter("log_learning_time", E_STEP_LOG_TIME, "log(bin)",
                  "log integration time of the learning (E-) step: plasticity; 0.5 is a full "
                  "Gauss-Newton step", (0.5, 4.0), (-16.0, 8.0)),
    ),
    presets={"control": {},
             "schizophrenia": {"log_learning_time": -8.0}},
    readouts=(
        Readout("mmn", _SD, "mismatch response: peak level-1 ERP to the deviant minus to the "
                "last standard"),
        Readout("mmn_level2", _SD, "the same at level 2 (errors on the cause)"),
        Readout("mmn_by_repetition", _SD, "deviant minus k-th presentation of B (k = 1..n_b) "
                "peak level-1 ERP", ("repetition",)),
        Readout("erp1_peak", _SD, "peak |precision-weighted sensory prediction error| of "
                "each presentation", ("presentation",)),
        Readout("erp2_peak", _SD, "peak |precision-weighted cause prediction error| of each "
                "presentation", ("presentation",)),
        Readout("erp1_rms", _SD, "RMS precision-weighted sensory prediction error of each "
                "presentation", ("presentation",)),
        Readout("erp1", _SD, "level-1 ERP: precision-weighted sensory prediction errors",
                ("presentation", "channel", "time")),
        Readout("erp2", _SD, "level-2 ERP: precision-weighted prediction errors on the cause",
                ("presentation", "time")),
        Readout("g21", "1", "posterior expectation of the coupling after each presentation",
                ("presentation",)),
        Readout("h", "log-precision", "posterior sensory log-precision after each "
                "presentation", ("presentation",)),
        Readout("g21_var", "1", "posterior variance of the coupling (SPM qP.V)",
                ("presentation",)),
        Readout("h_var", "log-precision^2", "posterior variance of h (SPM qH.C)",
                ("presentation",)),
    ),
    simulate=_simulate,
    design={"n_a": 2, "n_b": 7, "coupling_a": COUPLING_A, "coupling_b": COUPLING_B,
            "noise_log_precision": LOG_PI_FIXED},
    coords={"channel": ["amplitude", "frequency"], "time": time_ms()},
    data=None,
    references=(
        "Friston K (2005). A theory of cortical responses. Phil Trans R Soc B 360:815-836.",
        "Garrido MI, Kilner JM, Kiebel SJ, Stephan KE, Baldeweg T, Friston KJ (2009). "
        "Repetition suppression and plasticity in the human brain. NeuroImage 48:269-279.",
        "Umbricht D, Krljes S (2005). Mismatch negativity in schizophrenia: a meta-analysis. "
        "Schizophr Res 76:1-23.",
        "Stephan KE, Baldeweg T, Friston KJ (2006). Synaptic plasticity and dysconnection in "
        "schizophrenia. Biol Psychiatry 59:929-939.",
        "Adams RA, Stephan KE, Brown HR, Frith CD, Friston KJ (2013). The computational "
        "anatomy of psychosis. Front Psychiatry 4:47.",
    ),
)
