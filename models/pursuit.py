"""Smooth pursuit of an occluded target under active inference (SPEC 5.5).

Adams, Perrinet & Friston (2012), "Smooth pursuit and visual occlusion: active inference and
oculomotor control in schizophrenia", PLoS ONE 7(10): e47502; SPM12 demo ``ADEM_occlusion``.

**Generative process** (the world). The eye has angle and velocity ``o = [o1, o2]`` and is
driven by action ``a``; the target's angle ``x_t`` follows its cause ``v`` (the experimenter's
trajectory)::

    do1/dt = o2,     do2/dt = a/4 - o2/8,     dx_t/dt = v - x_t

Sensations are proprioception ``[o1, o2]`` and 17 retinal units with receptive fields at
offsets ``k = -8..8`` (model units) responding to the target's retinal position ``x_t - o1``::

    y_k = exp(-(k - x_t + o1)^2) * gate(x_t)

where ``gate`` is zero while the target is behind the occluder (``x_t >= 1/2``). All process
noise has log-precision 16 (nearly deterministic; by default no noise is drawn).

**Generative model** (the agent), three levels (SPM's ``M(1..3)``):

1. eye and target are both attracted to the believed cause ``v`` of target motion::

       do1/dt = o2,   do2/dt = (v - o1)/4 - o2/2,   dx_t/dt = v - x_t

   predicting the same sensations as the process (including the occluder, which the agent
   knows about);
2. a hidden oscillator ``dx2/dt = [x2_2, -x2_1] * v3/8`` whose first state predicts ``v``:
   the agent's memory of the periodic motion that carries it through occlusion;
3. the oscillator's angular frequency ``v3`` with prior mean ``8 w``, ``w = 2 pi / 32`` per bin.

All model log-precisions are 4 (proprioceptive and retinal channels, level-1 and level-2
states, level-2 causes and the prior on ``v3``). Generalised coordinates: ``n = 5`` for
states (SPM ``E.n = 4``), ``d = 2`` for causes (``E.d = 1``), smoothness ``s = 1/2`` bin.
One time bin is 16 ms; 64 bins; the target is ``sin(w t)`` from bin 17 on (``t = 1..T``,
1-based as in SPM).

**Action** descends free energy through the proprioceptive errors only, with precision
``exp(4)`` (SPM's ``G(1).U``, an absolute action precision): the action mask is ``exp(4)`` on
the two proprioceptive channels and 0 on the retina, whatever proprioceptive precision the
agent's perception is given.

**Occlusion gate.** SPM uses the hard step ``x_t < 1/2``; its derivative is zero almost
everywhere, so the agent's Jacobians are those of SPM's finite differences. The hard step is
the default (``gate_slope=None``). For gradient-based fitting through the agent's belief about
the occluder, ``gate_slope=k`` gives the logistic ``1 / (1 + exp(k (x_t - 1/2)))``; the
process target trajectory does not depend on any fitted parameter, so the process gate may
stay hard.

**Psychiatric presets** (SPEC 6):

- control: as above;
- schizophrenia: log-precision of the level-2 (oscillator) state fluctuations 4 -> 0: the
  agent's prior beliefs about the target's periodic motion lose precision (SPM: ``M(2).W =
  exp(0)``);
- autism (Lawson, Rees & Friston 2014; Karvelis et al. 2018): the precision of the sensory
  (first) level raised relative to the higher-level priors, which are left as in control:
  retinal log-precision 4 -> 6 and level-1 state log-precision 4 -> 6. Proprioception and
  action precision are unchanged, so the preset changes visual inference, not the motor
  gain. (Raising all 19 sensory channels to 6, proprioception included, makes the eye
  overshoot, visible gain ~1.2, and tracks an unexpected reversal worse than control; raising
  the retina alone leaves reversal tracking unchanged, because the eye follows the believed
  cause ``v`` and retinal evidence reaches ``v`` only through the level-1 target dynamics.
  With both raised, reversals are tracked better and the frequency is learned faster.)

**Scenarios**: ``occlusion`` (64 bins, occluder present); ``reversal`` (no occluder, target
sign flipped from bin 50 on); ``frequency`` (no occluder, 128 bins, prior mean ``w/8`` on
``v3`` with log-precision -4: the agent must learn the frequency).

**Units of the read-outs.** One model unit of angle is 2 degrees; one bin is 16 ms.

**Fitting** (the section at the end of this module): differentiable read-outs
(:func:`pursuit_readouts`) and the eye-tracking data format (:func:`load_eye_tracking`,
:func:`load_spem`), built on the generic CSV machinery of :mod:`cpsych.fit.data`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import cpsych.active as active
from cpsych import HDM, DataFormat, Level, Paradigm, Parameter, Process, Readout
from cpsych.fit.data import DataError, check_columns, check_widths, parse_number, read_table

__all__ = [
    "PARADIGM",
    "W", "DT_MS", "DEG_PER_UNIT", "OFFSETS", "OCCLUDER_EDGE", "PRESETS", "SCENARIOS",
    "Precisions", "Scenario", "Traces", "gate", "process", "model", "action_mask",
    "scenario", "prepare", "simulate_traces", "readouts", "simulate", "pad", "batch_inputs",
    "simulate_batch", "simulate_batch_jit", "scenario_log_pi",
    "pursuit_readouts", "EYE_REQUIRED", "EYE_OPTIONAL", "load_eye_tracking", "load_spem",
]

W = 2 * np.pi / 32  # angular frequency of the target (rad per bin)
DT_MS = 16.0  # one time bin in ms
DEG_PER_UNIT = 2.0  # one model unit of angle in degrees
OFFSETS = np.arange(-8.0, 9.0)  # retinal receptive-field centres (model units)
OCCLUDER_EDGE = 0.5  # the target is hidden while x_t >= 1/2
ONSET = 17  # first bin (1-based) of target motion
REVERSAL = 50  # first bin (1-based) of the reversed trajectory
N_Y = 2 + OFFSETS.size


@dataclasses.dataclass(frozen=True)
class Precisions:
    """Log-precisions of the agent's generative model (SPEC 5.5: all 4 in health).

    Attributes
    ----------
    proprio : log-precision of the two proprioceptive channels (eye angle and velocity).
    retina : log-precision of the 17 retinal channels.
    state1 : log-precision of the level-1 state fluctuations (eye and target motion).
    cause2 : log-precision of the level-2 prediction of the target's cause ``v``.
    state2 : log-precision of the level-2 (oscillator) state fluctuations.
    prior : log-precision of the prior on the oscillator's frequency ``v3``.
    """

    proprio: float = 4.0
    retina: float = 4.0
    state1: float = 4.0
    cause2: float = 4.0
    state2: float = 4.0
    prior: float = 4.0

    def as_array(self) -> np.ndarray:
        """``[proprio, retina, state1, cause2, state2, prior]`` (the order of ``log_pi``)."""
        return np.array([self.proprio, self.retina, self.state1, self.cause2, self.state2,
                         self.prior], dtype=float)


PRESETS: dict[str, Precisions] = {
    "control": Precisions(),
    "schizophrenia": Precisions(state2=0.0),
    "autism": Precisions(retina=6.0, state1=6.0),
}

SCENARIOS = ("occlusion", "reversal", "frequency")


def gate(x_t: jax.Array, slope: float | None = None) -> jax.Array:
    """Visibility of the target: 1 in view, 0 behind the occluder (``x_t >= 1/2``).

    ``slope=None`` is SPM's hard step; a number gives the logistic
    ``1 / (1 + exp(slope (x_t - 1/2)))``.
    """
    if slope is None:
        return jnp.where(x_t < OCCLUDER_EDGE, 1.0, 0.0)
    return jax.nn.sigmoid(slope * (OCCLUDER_EDGE - x_t))


def _sensations(o1, o2, x_t, theta) -> jax.Array:
    visible = 1.0 - theta["occluder"] * (1.0 - gate(x_t, theta["gate_slope"]))
    retina = jnp.exp(-((theta["offsets"] - x_t + o1) ** 2)) * visible
    return jnp.concatenate([jnp.stack([o1, o2]), retina])


def _process_f(x, v, a, theta):
    return jnp.stack([x[1], a[0] / 4 - x[1] / 8, v[0] - x[2]])


def _process_g(x, v, a, theta):
    return _sensations(x[0], x[1], x[2], theta)


def _f1(x, v, theta):
    return jnp.stack([x[1], (v[0] - x[0]) / 4 - x[1] / 2, v[0] - x[2]])


def _g1(x, v, theta):
    return _sensations(x[0], x[1], x[2], theta)


def _f2(x, v, theta):
    return jnp.stack([x[1], -x[0]]) * v[0] / 8


def _g2(x, v, theta):
    return x[:1]


Y_NAMES = ("o1", "o2") + tuple(f"retina{int(k):+d}" for k in OFFSETS)


def _theta(occluder: float | jax.Array, gate_slope: float | None) -> dict[str, Any]:
    return {"occluder": jnp.asarray(occluder, float) if isinstance(occluder, jax.Array)
            else np.asarray(occluder, float), "gate_slope": gate_slope, "offsets": OFFSETS}


def process(occluder: float = 1.0, gate_slope: float | None = None,
            log_pi_z: float = 16.0, log_pi_w: float = 16.0) -> Process:
    """The world: oculomotor plant, target and retina (``occluder=0`` removes the occluder)."""
    return Process(
        f=_process_f, g=_process_g, n_x=3, n_v=1, n_a=1, theta=_theta(occluder, gate_slope),
        log_pi_z=log_pi_z, log_pi_w=log_pi_w,
        x_names=("eye_angle", "eye_velocity", "target_angle"), v_names=("target_cause",),
        a_names=("oculomotor_force",), y_names=Y_NAMES,
    )


def model(precisions: Precisions | None = None, prior_mean: float = 8 * W,
          occluder: float = 1.0, gate_slope: float | None = None,
          n: int = 5, d: int = 2, s: float = 0.5) -> HDM:
    """The agent's three-level generative model (two HDM levels plus the prior on ``v3``)."""
    p = precisions or Precisions()
    level1 = Level(
        g=_g1, f=_f1, n_x=3, n_v=1, theta=_theta(occluder, gate_slope),
        log_pi_z=np.r_[np.full(2, p.proprio), np.full(OFFSETS.size, p.retina)],
        log_pi_w=p.state1,
        x_names=("eye_angle", "eye_velocity", "target_angle"), v_names=("target_cause",),
        out_names=Y_NAMES,
    )
    level2 = Level(
        g=_g2, f=_f2, n_x=2, n_v=1, log_pi_z=p.cause2, log_pi_w=p.state2,
        x_names=("oscillator_1", "oscillator_2"), v_names=("frequency",),
    )
    return HDM(levels=(level1, level2), eta=prior_mean, log_pi_eta=p.prior, n=n, d=d, s=s)


def action_mask(log_pi_proprio: float | jax.Array = 4.0,
                log_pi_action: float = 4.0) -> jax.Array:
    """Action precision ``exp(log_pi_action)`` on proprioception, 0 on the retina.

    ``log_pi_proprio`` (the agent's perceptual precision) does not enter: action precision is
    absolute. It is kept in the signature for callers that pass it.
    """
    del log_pi_proprio
    return jnp.concatenate([jnp.full(2, jnp.exp(log_pi_action)), jnp.zeros(OFFSETS.size)])


class Scenario(NamedTuple):
    """Inputs of one scenario (arrays, so scenarios of equal length can be vmapped)."""

    cause: np.ndarray  # (T,) target cause v
    occluder: float  # 1 with the occluder, 0 without
    prior_mean: float  # prior mean of v3
    prior_log_pi: float | None  # overrides the preset's prior log-precision (None: keep)


def scenario(name: str) -> Scenario:
    """The three scenarios of Adams et al. (2012) / ``ADEM_occlusion``."""
    if name == "occlusion":
        T = 64
        t = np.arange(1, T + 1)
        return Scenario(np.sin(W * t) * (t >= ONSET), 1.0, 8 * W, None)
    if name == "reversal":
        T = 64
        t = np.arange(1, T + 1)
        c = np.sin(W * t) * (t >= ONSET)
        c[t >= REVERSAL] *= -1
        return Scenario(c, 0.0, 8 * W, None)
    if name == "frequency":
        T = 128
        t = np.arange(1, T + 1)
        return Scenario(np.sin(W * t) * (t >= ONSET), 0.0, W / 8, -4.0)
    raise ValueError(f"scenario: unknown scenario '{name}'; choose from {SCENARIOS}")


def prepare(T: int, gate_slope: float | None = None):
    """Validate the process/model structure once (concrete values) for traced simulation.

    Returns the validated ``(process, model)`` templates whose numeric leaves
    :func:`simulate_traces` replaces with traced values.
    """
    proc = process(gate_slope=gate_slope)
    mod = model(gate_slope=gate_slope)
    proc, mod, _, _, _ = active.check_inputs(proc, mod, np.zeros((1, T)), np.zeros((1, T)),
                                             np.asarray(action_mask()))
    return proc, mod


class Traces(NamedTuple):
    """Simulated traces in model units per bin (see :func:`readouts` for physical units)."""

    eye_angle: jax.Array
    eye_velocity: jax.Array
    target_angle: jax.Array
    target_velocity: jax.Array
    occluded: jax.Array
    action: jax.Array
    believed_cause: jax.Array
    frequency: jax.Array  # posterior expectation of v3


def simulate_traces(log_pi: jax.Array, cause: jax.Array, occluder: jax.Array,
                    prior_mean: jax.Array, templates: tuple[Process, HDM],
                    key: jax.Array | None = None, noise: bool = False) -> Traces:
    """One pursuit trial, pure JAX (jit-, vmap- and grad-able in every numeric argument).

    Parameters
    ----------
    log_pi : (6,) log-precisions ``[proprio, retina, state1, cause2, state2, prior]``
        (:class:`Precisions`).
    cause : (T,) the target's cause ``v``.
    occluder : scalar, 1 with the occluder and 0 without.
    prior_mean : scalar, prior mean of the oscillator frequency ``v3``.
    templates : output of :func:`prepare` for this ``T``.
    key, noise : process noise (log-precision 16); off by default (deterministic world).
    """
    proc, mod = templates
    occluder = jnp.asarray(occluder, float)
    th = {**proc.theta, "occluder": occluder}
    proc = dataclasses.replace(proc, theta=th)
    l1, l2 = mod.levels
    n_y = l1.log_pi_z.shape[0]
    lz1 = jnp.concatenate([jnp.full(2, log_pi[0]), jnp.full(n_y - 2, log_pi[1])])
    l1 = dataclasses.replace(l1, theta=th, log_pi_z=lz1, log_pi_w=jnp.full(3, log_pi[2]))
    l2 = dataclasses.replace(l2, log_pi_z=jnp.full(1, log_pi[3]), log_pi_w=jnp.full(2, log_pi[4]))
    mod = dataclasses.replace(mod, levels=(l1, l2), log_pi_eta=jnp.full(1, log_pi[5]))
    T = cause.shape[0]
    causes = jnp.asarray(cause, float)[None, :]
    priors = jnp.broadcast_to(jnp.asarray(prior_mean, float), (1, T))
    # the noise generator needs a concrete smoothness (the templates' s)
    z, w = active.draw_noise(proc, key, T, float(np.asarray(mod.s))) if noise else (None, None)
    out = active.run(proc, mod, causes, priors, z=z, w=w, action_mask=action_mask(log_pi[0]),
                     kappa_a=1.0, log_pi_a=-2.0)
    xg = out.x_process
    target_velocity = out.v_process[:, 0] - xg[:, 2]
    visible = 1.0 - occluder * (1.0 - gate(xg[:, 2], proc.theta["gate_slope"]))
    return Traces(eye_angle=xg[:, 0], eye_velocity=xg[:, 1], target_angle=xg[:, 2],
                  target_velocity=target_velocity, occluded=1.0 - visible, action=out.a[:, 0],
                  believed_cause=out.v[:, 0], frequency=out.v[:, 1])


def _slope(x, y, w):
    """Least-squares slope (through the origin) of ``y`` on ``x`` over weights ``w``."""
    return jnp.sum(w * x * y) / jnp.maximum(jnp.sum(w * x * x), 1e-12)


def _shift(x: jax.Array, tau: jax.Array) -> jax.Array:
    """``x(t - tau)`` by linear interpolation (edge values held)."""
    t = jnp.arange(x.shape[0], dtype=float)
    return jnp.interp(t - tau, t, x)


def readouts(tr: Traces, onset: int = ONSET, score_from: int | None = None,
             n_bins: int | jax.Array | None = None, window: int = 8,
             max_lag: float = 12.0) -> dict[str, jax.Array]:
    """Behavioural read-outs in physical units (degrees, deg/s, ms); pure JAX.

    Parameters
    ----------
    tr : Traces
    onset : first (1-based) bin of target motion; bins before it are not scored.
    score_from : first (1-based) bin of the RMS-error window (default: ``onset``).
    n_bins : score only bins ``1..n_bins`` (default: all); lets trials padded to a common
        length share one compiled read-out.
    window : bins after the target's first reappearance searched for the catch-up saccade.
    max_lag : largest lag (bins) searched.

    Returns
    -------
    dict with ``gain_visible`` and ``gain_occluded`` (least-squares slope of eye velocity on
    target velocity while the target is visible / occluded, moving bins only),
    ``lag_ms`` (shift of the target trace that best matches the eye while visible),
    ``rms_error_deg`` (eye minus target angle from ``score_from``) and ``peak_eye_velocity``
    (largest absolute eye velocity, deg/s, in the ``window`` bins after reappearance; for
    trials without occlusion, the peak over the scored period).
    """
    T = tr.eye_angle.shape[0]
    t = jnp.arange(1, T + 1)
    inside = t <= (T if n_bins is None else n_bins)
    moving = ((t >= onset) & inside).astype(float)
    vis = moving * (1.0 - tr.occluded)
    occ = moving * tr.occluded
    deg_s = DEG_PER_UNIT * 1000.0 / DT_MS
    gain_visible = _slope(tr.target_velocity, tr.eye_velocity, vis)
    gain_occluded = jnp.where(jnp.sum(occ) > 0,
                              _slope(tr.target_velocity, tr.eye_velocity, occ), jnp.nan)
    taus = jnp.linspace(-4.0, max_lag, int((max_lag + 4.0) * 20) + 1)
    sse = jax.vmap(lambda tau: jnp.sum(vis * (tr.eye_angle - _shift(tr.target_angle, tau)) ** 2))(
        taus)
    lag_ms = taus[jnp.argmin(sse)] * DT_MS
    start = onset if score_from is None else score_from
    scored = ((t >= start) & inside).astype(float)
    rms = jnp.sqrt(jnp.sum(scored * (tr.eye_angle - tr.target_angle) ** 2) / jnp.sum(scored))
    # first reappearance: first moving, visible bin after an occluded one
    occ_b = occ > 0.5
    reappear = moving * jnp.concatenate([jnp.zeros(1), (occ_b[:-1] & ~occ_b[1:]).astype(float)])
    has_occ = jnp.any(reappear > 0)
    first = jnp.where(has_occ, jnp.argmax(reappear > 0), onset - 1)
    idx = jnp.arange(T)
    win = jnp.where(has_occ, (idx >= first) & (idx < first + window), moving > 0)
    peak = jnp.max(jnp.where(win, jnp.abs(tr.eye_velocity), 0.0)) * deg_s
    return {"gain_visible": gain_visible, "gain_occluded": gain_occluded, "lag_ms": lag_ms,
            "rms_error_deg": rms * DEG_PER_UNIT, "peak_eye_velocity": peak}


def pad(cause: np.ndarray, T: int) -> np.ndarray:
    """Extend a cause to ``T`` bins by repeating its last sample.

    The engine's embedding clamps sample indices at the end of a series (SPEC 1), so the
    padded run reproduces the unpadded one exactly over the original bins (the simulation is
    causal): scenarios of different lengths then share one compiled, vmapped simulation.
    """
    cause = np.asarray(cause, float)
    return np.concatenate([cause, np.full(T - cause.size, cause[-1])])


def batch_inputs(groups: dict[str, Precisions], names: tuple[str, ...] = SCENARIOS,
                 T: int | None = None) -> tuple[np.ndarray, ...]:
    """Stacked inputs ``(log_pi, cause, occluder, prior_mean)`` for every (group, scenario).

    Rows run over groups (outer) and scenarios (inner); causes are padded to ``T`` (default:
    the longest scenario).
    """
    scs = [scenario(nm) for nm in names]
    T = T or max(sc.cause.size for sc in scs)
    rows = []
    for prec in groups.values():
        for sc in scs:
            lp = scenario_log_pi(prec.as_array(), sc)
            rows.append((lp, pad(sc.cause, T), sc.occluder, sc.prior_mean))
    return tuple(np.stack([r[i] for r in rows]) for i in range(4))


def simulate_batch(log_pi: jax.Array, cause: jax.Array, occluder: jax.Array,
                   prior_mean: jax.Array, templates: tuple[Process, HDM]) -> Traces:
    """:func:`simulate_traces` vmapped over the leading axis of every numeric argument."""
    return jax.vmap(simulate_traces, in_axes=(0, 0, 0, 0, None))(
        log_pi, cause, occluder, prior_mean, templates)


simulate_batch_jit = jax.jit(simulate_batch)


def scenario_log_pi(log_pi: jax.Array, sc: Scenario) -> jax.Array:
    """The log-precisions (order of :data:`FIELDS`) a scenario runs with: a scenario with its
    own prior precision on the frequency (``Scenario.prior_log_pi``) overrides ``prior``."""
    if sc.prior_log_pi is None:
        return log_pi
    i = FIELDS.index("prior")
    if isinstance(log_pi, np.ndarray):  # NumPy in, NumPy out (no compilation)
        out = log_pi.astype(float, copy=True)
        out[i] = sc.prior_log_pi
        return out
    return log_pi.at[i].set(sc.prior_log_pi)


def simulate(group: str = "control", name: str = "occlusion",
             precisions: Precisions | None = None,
             gate_slope: float | None = None) -> tuple[Traces, dict[str, float]]:
    """Convenience: one trial of a preset group in a named scenario (numpy outputs)."""
    if precisions is None:
        if group not in PRESETS:
            raise ValueError(f"group: unknown group '{group}'; choose from {tuple(PRESETS)}")
        precisions = PRESETS[group]
    sc = scenario(name)
    lp = scenario_log_pi(precisions.as_array(), sc)
    tmpl = prepare(sc.cause.size, gate_slope)
    tr = _jit_sim(jnp.asarray(lp), jnp.asarray(sc.cause), sc.occluder, sc.prior_mean, tmpl)
    ro = readouts(tr, score_from=REVERSAL if name == "reversal" else None)
    return (Traces(*(np.asarray(a) for a in tr)), {k: float(v) for k, v in ro.items()})


_jit_sim: Callable[..., Traces] = jax.jit(simulate_traces)


# ----------------------------------------------------------------------------- the paradigm
#: Parameter names, in the order of :meth:`Precisions.as_array`.
FIELDS: tuple[str, ...] = ("proprio", "retina", "state1", "cause2", "state2", "prior")


def _simulate(values: dict[str, Any], design: dict[str, Any], key: jax.Array | None):
    name = design["scenario"]
    sc = scenario(name)
    lp = scenario_log_pi(jnp.stack([jnp.asarray(values[k], float) for k in FIELDS]), sc)
    with jax.ensure_compile_time_eval():  # validate the templates on concrete values
        templates = prepare(sc.cause.size)
    tr = simulate_traces(lp, jnp.asarray(sc.cause), sc.occluder, sc.prior_mean, templates,
                         key, noise=key is not None)
    ro = readouts(tr, score_from=REVERSAL if name == "reversal" else None)
    if sc.occluder == 0:
        ro.pop("gain_occluded")
    return ro


_LOG_PI = "log-precision"
PARADIGM = Paradigm(
    name="pursuit",
    title="Smooth pursuit of an occluded target (Adams, Perrinet & Friston 2012)",
    parameters=(
        Parameter("proprio", 4.0, _LOG_PI, "proprioceptive log-precision", (4.0, 2.0),
                  (-8.0, 16.0)),
        Parameter("retina", 4.0, _LOG_PI, "retinal (level-1 sensory) log-precision",
                  (4.0, 2.0), (-8.0, 16.0)),
        Parameter("state1", 4.0, _LOG_PI, "level-1 state log-precision", (4.0, 2.0),
                  (-8.0, 16.0)),
        Parameter("cause2", 4.0, _LOG_PI, "level-2 cause log-precision", (4.0, 2.0),
                  (-8.0, 16.0)),
        Parameter("state2", 4.0, _LOG_PI, "level-2 (oscillator) state log-precision",
                  (4.0, 2.0), (-8.0, 16.0)),
        Parameter("prior", 4.0, _LOG_PI, "prior log-precision on the frequency",
                  (4.0, 2.0), (-8.0, 16.0)),
    ),
    presets={name: dict(zip(FIELDS, map(float, p.as_array()), strict=True))
             for name, p in PRESETS.items()},
    readouts=(
        Readout("gain_visible", "1", "pursuit gain, target visible"),
        Readout("gain_occluded", "1", "pursuit gain, target occluded (occlusion scenario)"),
        Readout("lag_ms", "ms", "pursuit lag"),
        Readout("rms_error_deg", "deg", "RMS eye-target error"),
        Readout("peak_eye_velocity", "deg/s", "catch-up saccade: peak eye velocity after "
                "the target reappears"),
    ),
    simulate=_simulate,
    design={"scenario": "occlusion"},
    data=DataFormat(
        # the columns every file of experiments/data/spem_fit has; eye_velocity (NaN where the
        # source has no sample) and target_position_px (smooth conditions only; it is
        # eye_position_px + lag) are read as extra numeric columns when present
        columns={"time_ms": "ms", "eye_position_px": "px",
                 "eye_velocity_desaccaded": "px/ms (x21.6)", "lag": "px"},
        response="eye_velocity_desaccaded", design=("time_ms",),
        # data: 0-5090 ms, |position| <= 604 px, |velocity| <= 15, |lag| <= 67 px
        plausible={"time_ms": (0.0, 60_000.0), "eye_position_px": (-2000.0, 3000.0),
                   "eye_velocity_desaccaded": (-150.0, 150.0), "lag": (-2000.0, 2000.0)},
        description="one file per condition: grand-average eye and target traces every "
                    "10 ms (the eye-tracking CSVs of experiments/data/spem_fit)"),
    references=("Adams RA, Perrinet LU, Friston K (2012). Smooth pursuit and visual "
                "occlusion: active inference and oculomotor control in schizophrenia. "
                "PLoS ONE 7:e47502.",),
)


# ----------------------------------------------------------------------------- fitting
# What fitting pursuit to behaviour needs (SPEC 7): differentiable read-outs and the
# eye-tracking data format, built on the generic CSV machinery of cpsych.fit.data.
def pursuit_readouts(log_pi: jax.Array, templates, cause: jax.Array, occluder: float = 1.0,
                     prior_mean: float | None = None) -> jax.Array:
    """``[visible gain, occluded gain, RMS error (deg)]`` of a pursuit trial (differentiable).

    ``templates`` from :func:`prepare` (``prepare(T, gate_slope=...)``). The occluder is a hard
    step in the agent's predictions; a ``gate_slope`` there (e.g. 8 per model unit: from 12 %
    to 88 % visible over 0.5 units) makes the agent's model smooth. The process gate stays
    hard: the target's trajectory does not depend on any fitted parameter. The gains are
    least-squares slopes (smooth); the lag (an ``argmin`` over shifts) is not returned.
    """
    pm = 8 * W if prior_mean is None else prior_mean
    r = readouts(simulate_traces(log_pi, cause, occluder, pm, templates))
    return jnp.stack([r["gain_visible"], r["gain_occluded"], r["rms_error_deg"]])


#: Required and optional columns of an eye-tracking table (the layout of ``shared/data/spem``).
EYE_REQUIRED = ("time_ms", "eye_position_px")
EYE_OPTIONAL = ("eye_velocity", "eye_velocity_desaccaded", "lag", "target_position_px")
_EYE_UNITS = {"time_ms": "ms", "eye_position_px": "px", "target_position_px": "px", "lag": "px",
              "eye_velocity": "as recorded", "eye_velocity_desaccaded": "as recorded"}


def load_eye_tracking(path: str | Path, condition: str | None = None) -> xr.Dataset:
    """Read one eye-tracking time series (one row per sample).

    Parameters
    ----------
    path : CSV with ``time_ms``, ``eye_position_px`` and optionally ``eye_velocity``,
        ``eye_velocity_desaccaded``, ``lag`` (target minus eye position, px, as recorded in
        the SPM data: ``target = eye + lag``), ``target_position_px``. Empty or ``nan`` cells
        are allowed in the optional columns (the source marks missing samples that way) and
        become NaN, counted in ``attrs["n_missing_<column>"]``; time stamps must increase.
        A malformed file raises :class:`cpsych.fit.data.DataError` naming file, line and
        column.
    condition : label stored in ``attrs`` (default: the file's stem).

    Returns
    -------
    xarray.Dataset over ``time`` (ms): one variable per column present (empty optional
    cells are NaN), and ``target_position_px`` reconstructed as ``eye + lag`` when the
    file has ``lag`` but no target column (``attrs["target_source"]`` says which).
    """
    path, header, rows = read_table(path)
    check_columns(path, header, EYE_REQUIRED, EYE_OPTIONAL)
    check_widths(path, header, rows)
    known = [h for h in header if h in EYE_REQUIRED or h in EYE_OPTIONAL]
    idx = {h: i for i, h in enumerate(header)}
    cols: dict[str, list[float]] = {h: [] for h in known}
    for line, row in rows:
        for h in known:
            cols[h].append(parse_number(path, line, h, row[idx[h]],
                                        allow_empty=h in EYE_OPTIONAL))
    t = np.asarray(cols.pop("time_ms"))
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        raise DataError(path, f"time does not increase ({t[bad[0]]:g} then {t[bad[0] + 1]:g})",
                        rows[bad[0] + 1][0], "time_ms")
    data = {}
    attrs = {"source": str(path), "condition": condition or path.stem}
    for h, v in cols.items():
        arr = np.asarray(v)
        data[h] = ("time", arr, {"units": _EYE_UNITS[h]})
        attrs[f"n_missing_{h}"] = int(np.isnan(arr).sum())
    if "target_position_px" not in data and "lag" in data:
        data["target_position_px"] = ("time", data["eye_position_px"][1] + data["lag"][1],
                                      {"units": "px", "long_name": "eye + lag"})
        attrs["target_source"] = "eye_position_px + lag"
    elif "target_position_px" in data:
        attrs["target_source"] = "target_position_px"
    return xr.Dataset(data, coords={"time": ("time", t, {"units": "ms"})}, attrs=attrs)


def load_spem(directory: str | Path,
              conditions: Sequence[str] = ("fast_smooth", "fast_noisy", "slow_smooth",
                                           "slow_noisy")) -> dict[str, xr.Dataset]:
    """The four SPM smooth-pursuit grand averages (``<directory>/<condition>.csv``).

    Returns a dict condition -> dataset of :func:`load_eye_tracking` (the conditions differ
    in length, so they are not stacked).
    """
    directory = Path(directory)
    return {c: load_eye_tracking(directory / f"{c}.csv", condition=c) for c in conditions}
