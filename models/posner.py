"""Attention as precision: the Posner cueing paradigm (SPEC 5.3; Feldman & Friston 2010,
"Attention, uncertainty, and free-energy", Front. Hum. Neurosci. 4:215).

Paradigm
--------
A trial lasts ``T = 64`` bins of 10 ms. The display has two target locations (left, right) and a
central cue. The cue (a 50 ms flash at ``T/4``) always points to the left. The target comes on at
``2 T/3`` and stays on: at the left (cued) location on *valid* trials, at the right on *invalid*
trials. Onsets and offsets are raised-cosine edges of 20 ms.

Generative process (the world)
------------------------------
The three display signals ``v_G = [target_left, target_right, cue]`` are sensed through a
first-order low-pass filter (temporal integration by the sensory epithelium)::

    dx_G/dt = (v_G - x_G) / tau,     y = x_G + z,      tau = 4 bins (40 ms),

almost noiselessly (log-precision 16 on ``z`` and on the state noise). The observer cannot act:
its action gates are all zero, so this is perceptual inference run through the active-inference
integrator (:func:`cpsych.simulate`).

Generative model (the observer)
-------------------------------
Causes ``v = [v_L, v_R, v_c]``: the intensities of the two targets and of the cue, with prior
expectation 0 (nothing there) and log-precision ``log_pi_eta = 0``. They predict the senses
directly, ``g(x, v) = v``. One hidden state, attention ``x`` (positive: to the left), is
oriented by the cue and captured by targets, and decays slowly::

    dx/dt = k_c v_c + k_t (v_L - v_R) - x / 32 + w,       k_c = 1/2,  k_t = 1/4,

with state log-precision 4. Attention sets the *precision* of the sensory errors
(state-dependent noise, SPEC 3)::

    log pi_z(x) = [2 + gamma x,  2 - gamma x,  4]          (left, right, cue)

where ``gamma`` (``attention_gain``; 1 in the paper) scales attention's effect on precision.
``gamma = 0`` removes it. Embedding ``n = 4``, ``d = 2``, smoothness ``s = 1/2`` bin.

Read-out
--------
The observer's *belief in the target* is its posterior expectation of the target's intensity at
the location where the target appeared. With sensory precision ``pi`` and unit prior precision
that belief settles at about ``pi / (pi + 1)`` of the sensed intensity, so when the cue has
raised the precision of the target's channel the belief tracks the rising sensation more fully
and reaches a threshold (default 0.75) sooner. On invalid trials the belief starts low and
rises as the target captures attention (and thus precision) away from the cued side. The
reaction time is the time from target onset to the first crossing of the threshold (linearly
interpolated between bins; ``nan`` if the belief never reaches it, a miss).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from cpsych import HDM, Level, Paradigm, Parameter, Process, Readout
from cpsych.active import check_inputs, draw_noise
from cpsych.active import run as active_run
from cpsych.hdm import check_finite

__all__ = [
    "CUES", "DT_MS", "T_BINS", "CHANNELS", "timing", "stimuli", "model", "process",
    "simulate_trial", "target_belief", "reaction_time", "crossing_time", "check_threshold",
    "check_cue", "PARADIGM",
]

#: Number of time bins of a trial and their duration (ms).
T_BINS = 64
DT_MS = 10.0
#: Trial types: the target at the cued (valid) or the uncued (invalid) location.
CUES = ("valid", "invalid")
#: Sensory channels (outputs of the model's ``g``).
CHANNELS = ("left", "right", "cue")
#: Default decision threshold on the belief in the target (fraction of its intensity).
THRESHOLD = 0.75

CUE_DURATION = 5.0  # bins (50 ms)
EDGE = 2.0  # bins (20 ms) raised-cosine onset/offset


# ----------------------------------------------------------------------------- validation
def check_cue(cue: str) -> str:
    """Return ``cue`` if it names a trial type, else raise ``ValueError``."""
    if cue not in CUES:
        raise ValueError(f"cue: expected one of {CUES}, got {cue!r}")
    return cue


def check_threshold(threshold: float) -> float:
    """A belief threshold must be a number strictly between 0 and 1 (target intensity 1)."""
    try:
        th = float(threshold)
    except (TypeError, ValueError) as err:
        raise ValueError(f"threshold: expected a number in (0, 1), got {threshold!r}") from err
    if not 0.0 < th < 1.0:
        raise ValueError(f"threshold: must lie strictly between 0 and 1 (a fraction of the "
                         f"target's intensity), got {th}")
    return th


def _check_bins(n_bins: int) -> int:
    if not isinstance(n_bins, int | np.integer) or n_bins < 16:
        raise ValueError(f"n_bins: expected an integer >= 16, got {n_bins!r}")
    return int(n_bins)


def _check_number(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, jax.core.Tracer):  # traced (sweeps, fits): checked before tracing
        return value
    try:
        x = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a number, got {value!r}") from err
    check_finite(x, "posner", name, positive=positive)
    return x


# ------------------------------------------------------------------------------- stimuli
def _edge(t: np.ndarray, t0: float) -> np.ndarray:
    """Raised-cosine step from 0 (before ``t0``) to 1 (after ``t0 + EDGE``)."""
    s = np.clip((t - t0) / EDGE, 0.0, 1.0)
    return 0.5 * (1.0 - np.cos(np.pi * s))


def timing(n_bins: int = T_BINS) -> dict[str, float]:
    """Cue onset ``T/4`` and target onset ``2T/3`` in bins."""
    n_bins = _check_bins(n_bins)
    return {"cue_onset": n_bins / 4.0, "target_onset": 2.0 * n_bins / 3.0}


def stimuli(cue: str = "valid", n_bins: int = T_BINS) -> np.ndarray:
    """The display ``(3, n_bins)``: target left, target right, cue (time in bins from 0).

    The cue points left; the target appears left on ``"valid"`` and right on ``"invalid"``
    trials.
    """
    check_cue(cue)
    tm = timing(n_bins)
    t = np.arange(n_bins, dtype=float)
    flash = _edge(t, tm["cue_onset"]) - _edge(t, tm["cue_onset"] + CUE_DURATION)
    target = _edge(t, tm["target_onset"])
    out = np.zeros((3, n_bins))
    out[0 if cue == "valid" else 1] = target
    out[2] = flash
    return out


# -------------------------------------------------------------------------------- model
def _flow(x: jax.Array, v: jax.Array, th: dict) -> jax.Array:
    """Attention: oriented by the cue, captured by targets, slowly forgotten."""
    dx = th["k_cue"] * v[2] + th["k_target"] * (v[0] - v[1]) - th["decay"] * x[0]
    return jnp.atleast_1d(dx)


def _predict(x: jax.Array, v: jax.Array, th: dict) -> jax.Array:
    return v


def _log_precision(x: jax.Array, v: jax.Array, th: dict) -> jax.Array:
    """``[2 + gamma x, 2 - gamma x, 4]``: attention trades precision between locations."""
    a = th["gain"] * x[0]
    return jnp.stack([th["lp_target"] + a, th["lp_target"] - a, th["lp_cue"] + 0.0 * a])


def model(attention_gain: float = 1.0, *, cue_gain: float = 0.5, capture: float = 0.25,
          decay: float = 1.0 / 32.0, log_pi_target: float = 2.0, log_pi_cue: float = 4.0,
          log_pi_w: float = 4.0, log_pi_eta: float = 0.0, s: float = 0.5) -> HDM:
    """The observer's generative model with the paper's settings as defaults.

    Parameters
    ----------
    attention_gain : float
        ``gamma``: how strongly attention shifts sensory log-precision between the two target
        locations (``0`` removes attention's effect on precision).
    cue_gain, capture, decay : float
        ``k_c``, ``k_t`` and the decay rate (per bin) in the flow of attention.
    log_pi_target, log_pi_cue : float
        Baseline sensory log-precisions of the target channels and of the cue channel.
    log_pi_w : float
        Log-precision of the attention state's fluctuations.
    log_pi_eta : float
        Log-precision of the prior that no stimulus is present.
    s : float
        Smoothness of the fluctuations (bins).
    """
    theta = {
        "gain": _check_number(attention_gain, "attention_gain"),
        "k_cue": _check_number(cue_gain, "cue_gain"),
        "k_target": _check_number(capture, "capture"),
        "decay": _check_number(decay, "decay"),
        "lp_target": _check_number(log_pi_target, "log_pi_target"),
        "lp_cue": _check_number(log_pi_cue, "log_pi_cue"),
    }
    level = Level(g=_predict, f=_flow, n_x=1, n_v=3, theta=theta, log_pi_w=log_pi_w,
                  log_pi_z_fn=_log_precision, x_names=("attention",),
                  v_names=("target_left", "target_right", "cue"), out_names=CHANNELS)
    return HDM(levels=(level,), eta=0.0, log_pi_eta=log_pi_eta, n=4, d=2, s=s)


def _sense_flow(x, v, a, th):
    return (v - x) / th["tau"]


def _sense(x, v, a, th):
    return x


def process(tau: float = 4.0, log_pi_z: float = 16.0) -> Process:
    """The world: the display seen through a low-pass filter of time constant ``tau`` bins."""
    tau = _check_number(tau, "tau", positive=True)
    return Process(f=_sense_flow, g=_sense, n_x=3, n_v=3, n_a=1, theta={"tau": tau},
                   log_pi_z=log_pi_z, log_pi_w=16.0,
                   x_names=("sensed_left", "sensed_right", "sensed_cue"),
                   v_names=("display_left", "display_right", "display_cue"),
                   a_names=("none",), y_names=CHANNELS)


# ------------------------------------------------------------------------------ read-out
def target_belief(ds: xr.Dataset, cue: str) -> xr.DataArray:
    """Posterior expectation of the target's intensity where it appeared."""
    check_cue(cue)
    return ds["v"].sel(cause="target_left" if cue == "valid" else "target_right")


def crossing_time(belief: jax.Array, threshold: float | jax.Array, onset: float,
                  dt: float = DT_MS) -> jax.Array:
    """Reaction time in pure JAX: time (``dt`` units) from ``onset`` (bins) to the belief's
    first upward crossing of ``threshold`` after onset, linearly interpolated between bins;
    ``nan`` if it never crosses (a miss)."""
    b = jnp.asarray(belief)
    k = jnp.arange(1, b.shape[0])
    start = max(int(math.floor(onset)), 0)
    up = (b[1:] >= threshold) & (b[:-1] < threshold) & (k >= max(start, 1))
    i = jnp.argmax(up)  # first crossing (index into b[1:])
    lo, hi = b[i], b[i + 1]
    t = i + (threshold - lo) / jnp.where(hi > lo, hi - lo, 1.0)
    return jnp.where(jnp.any(up), (jnp.maximum(t, onset) - onset) * dt, jnp.nan)


def reaction_time(belief: Any, threshold: float = THRESHOLD, onset: float = 0.0,
                  dt: float = DT_MS) -> float:
    """Time (``dt`` units) from ``onset`` (bins) to the belief's first upward crossing of
    ``threshold`` after onset, interpolated linearly between bins; ``nan`` if it never does
    (:func:`crossing_time` on concrete values)."""
    threshold = check_threshold(threshold)
    b = np.asarray(belief, dtype=float)
    if b.ndim != 1 or b.size < 2:
        raise ValueError(f"belief: expected a 1-D time course, got shape {b.shape}")
    return float(crossing_time(b, threshold, onset, dt))


def simulate_trial(cue: str = "valid", attention_gain: float = 1.0, *,
                   threshold: float = THRESHOLD, n_bins: int = T_BINS,
                   key: jax.Array | None = None, **model_kw: Any) -> xr.Dataset:
    """Simulate one Posner trial and read out the reaction time.

    Parameters
    ----------
    cue : ``"valid"`` or ``"invalid"``
    attention_gain : float
        ``gamma`` in the log-precision ``2 +- gamma x`` (``0``: no attention).
    threshold : float in (0, 1)
        Decision threshold on the belief in the target.
    n_bins : int
        Trial length in 10 ms bins (cue at ``T/4``, target at ``2T/3``).
    key : jax.Array, optional
        Draw the (nearly negligible) sensory noise of the world with this key; default none.
    **model_kw
        Further settings of :func:`model`.

    Returns
    -------
    xarray.Dataset
        The output of :func:`cpsych.simulate` (time in ms) plus ``belief`` (the belief in the
        target) and attrs ``rt_ms``, ``threshold``, ``cue``, ``attention_gain``,
        ``target_onset_ms``.
    """
    import cpsych

    check_cue(cue)
    threshold = check_threshold(threshold)
    n_bins = _check_bins(n_bins)
    m = model(attention_gain, **model_kw)
    display = stimuli(cue, n_bins)
    ds = cpsych.simulate(process(), m, display, np.zeros((3, n_bins)), key=key,
                         action_mask=np.zeros(3), noise=key is not None,
                         time=np.arange(n_bins) * DT_MS, time_units="ms")
    onset = timing(n_bins)["target_onset"]
    b = target_belief(ds, cue)
    ds["belief"] = b.drop_vars("cause").assign_attrs(
        long_name="belief in the target (posterior expectation of its intensity)",
        units="fraction of target intensity")
    rt = reaction_time(b.values, threshold, onset)
    ds.attrs.update({"paradigm": "Posner cueing (Feldman & Friston 2010)", "cue": cue,
                     "attention_gain": float(attention_gain), "threshold": threshold,
                     "rt_ms": rt, "target_onset_ms": onset * DT_MS})
    return ds


# ------------------------------------------------------------------------------ the paradigm
def _simulate(values: dict[str, Any], design: dict[str, Any], key: jax.Array | None):
    """Reaction times on a valid and an invalid trial (pure JAX)."""
    n_bins, threshold = int(design["n_bins"]), float(design["threshold"])
    with jax.ensure_compile_time_eval():  # validate the world on concrete values
        proc, _, _, _, _ = check_inputs(process(), model(), np.zeros((3, n_bins)),
                                        np.zeros((3, n_bins)), np.zeros(3))
    m = model(values["gamma"], cue_gain=values["cue_gain"], capture=values["capture"],
              log_pi_target=values["log_pi_target"], log_pi_w=values["log_pi_w"]).validate()
    onset = timing(n_bins)["target_onset"]
    out = {}
    for cue, k in (("valid", 0), ("invalid", 1)):
        z = None
        if key is not None:
            z, _ = draw_noise(proc, jax.random.fold_in(key, k), n_bins, 0.5)
        res = active_run(proc, m, jnp.asarray(stimuli(cue, n_bins)), jnp.zeros((3, n_bins)),
                         z=z, action_mask=jnp.zeros(3))
        out[f"rt_{cue}"] = crossing_time(res.v[:, k], threshold, onset)
    out["validity_effect"] = out["rt_invalid"] - out["rt_valid"]
    return out


PARADIGM = Paradigm(
    name="posner",
    title="Attention as precision: Posner cueing (Feldman & Friston 2010)",
    parameters=(
        Parameter("gamma", 1.0, "log-precision per unit attention",
                  "how strongly attention shifts sensory log-precision between locations",
                  (1.0, 1.0), (-4.0, 8.0)),
        Parameter("log_pi_target", 2.0, "log-precision",
                  "baseline sensory log-precision of the target channels", (2.0, 2.0),
                  (-4.0, 12.0)),
        Parameter("log_pi_w", 4.0, "log-precision", "log-precision of attention's fluctuations",
                  (4.0, 2.0), (-4.0, 12.0)),
        Parameter("cue_gain", 0.5, "1/bin", "k_c: how strongly the cue orients attention",
                  (0.5, 0.25), (0.0, 4.0)),
        Parameter("capture", 0.25, "1/bin", "k_t: how strongly a target captures attention",
                  (0.25, 0.25), (0.0, 4.0)),
    ),
    presets={"control": {}},
    readouts=(
        Readout("rt_valid", "ms", "reaction time on a validly cued trial"),
        Readout("rt_invalid", "ms", "reaction time on an invalidly cued trial"),
        Readout("validity_effect", "ms", "invalid minus valid reaction time"),
    ),
    simulate=_simulate,
    design={"n_bins": T_BINS, "threshold": THRESHOLD},
    references=("Feldman H, Friston KJ (2010). Attention, uncertainty, and free-energy. "
                "Front Hum Neurosci 4:215.",
                "Posner MI (1980). Orienting of attention. Q J Exp Psychol 32:3-25."),
)
