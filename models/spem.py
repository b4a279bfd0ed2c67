"""Smooth pursuit of the SPEM experiment (Adams et al. 2015 data) as a fittable paradigm.

The pursuit agent of :mod:`cpsych.models.pursuit` (SPEC 5.5: eye plant, target and 17 retinal
units; a three-level generative model whose level-2 oscillator carries the eye through
occlusion) in the geometry of SPM's smooth-pursuit experiment (Adams, Aponte, Marshall &
Friston 2015): one cycle of a target moving as ``600 px * cos(2 pi t / P)``, ``P`` = 4173 ms
(fast) or 5100 ms (slow), smooth or noisy, hidden behind an occluder while its normalised
position is inside the band ``-0.8 < x_t < 0``.

**Time.** The model runs 32 bins per target cycle (the period of SPEC 5.5), so one bin is
``P / 32`` ms: 130.4 ms (fast), 159.4 ms (slow). The target rests at ``+1`` for 16 bins of
fixation, then follows the cycle: the cause is ``cos(w t) - w sin(w t)`` (so that the target
itself, ``dx_t/dt = v - x_t``, is ``cos(w t)``), and model bin ``16 + b`` sits at the centre
of data bin ``b``, ``(b + 1/2) P / 32`` ms after the target starts. Velocities are in target
amplitudes (600 px) per 1/32 cycle: the target's peak velocity is ``w = 2 pi / 32`` in every
condition, and a pursuit gain is a ratio of two such velocities.

**Occluder.** A hard step on the band in the world and in the agent's model (SPM's choice). A
logistic gate in the agent's model makes it lose the target for good (it explains the blank
retina by believing the target off the retina, from which no gradient brings it back); with
the hard step the gate pattern is piecewise constant in the parameters and the gradient is
exact almost everywhere.

**Kinetics of the agent's model** (as in SPM's DCM of these data): the believed eye
accelerates toward the believed cause ``v`` and toward the believed target angle ``x_t``, with
gains that change while the believed target is hidden (``h = 1`` inside the band), and the
believed target is drawn to the cause::

    do2/dt = [exp(k_c + h k_h) (v - o1) + k_t exp(h k_th) (x_t - o1)] / 4 - exp(k_d) o2 / 2
    dx_t/dt = exp(k_r) (v - x_t)

All six zero is SPEC 5.5's model. With those kinetics no setting of the precisions gives an
occluded gain below ~0.9 (humans 0.34-0.39); ``k_h`` and ``k_d`` reach it.

**Parameters**: the six log-precisions of :class:`cpsych.models.pursuit.Precisions` and the six
kinetic parameters. Each may be a scalar (every condition alike: the agent runs once) or one
value per condition of the design (``design["conditions"]``), which is how condition effects
enter (the agent then runs once per condition).

**Read-outs**: ``eye_velocity`` over ``(condition, time_ms)`` (linear interpolation between
the model's bin centres of each condition: exact at the data's bin centres), and the
model's own pursuit gains ``gain_visible`` and ``gain_occluded`` per condition (slope of eye
on target velocity over the 32 bins of the cycle, the bins next to a change of visibility
left out; :func:`gains`).

**Data** (:func:`bin_raw`, :func:`write_binned`): the four grand-average recordings binned in
32 bins per cycle into one tidy CSV, one row per (condition, bin): ``participant`` (one,
``grand_average``), ``condition``, ``time_ms`` (bin centre), ``eye_velocity`` (smooth eye
velocity, saccades removed) and, as extra columns, ``bin``, ``target_position`` and
``target_velocity`` (of the smooth target of the same speed: the noisy target is not stored).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import cpsych.active as active
from cpsych import HDM, DataFormat, Level, Paradigm, Parameter, Process, Readout
from cpsych.models import pursuit as P

__all__ = [
    "PARADIGM", "CONDITIONS", "PERIOD_MS", "BINS", "FIX", "OCC_LO", "OCC_HI", "PRECISIONS",
    "KINETIC", "PARAMETER_NAMES", "VELOCITY_UNIT", "RAW_FILES", "BINNED_HEADER",
    "speed", "bin_times", "time_grid", "occluded", "cause", "prepare", "simulate_agent",
    "simulate", "gains", "bin_raw", "tidy_rows", "write_binned",
]

CONDITIONS = ("fast_smooth", "fast_noisy", "slow_smooth", "slow_noisy")
#: Target period per speed (ms): the least-squares period of the recorded smooth target
#: (:func:`bin_raw` finds these on a 1 ms grid; a test checks it).
PERIOD_MS = {"fast": 4173.0, "slow": 5100.0}
BINS = 32  # bins per target cycle (the model's period, SPEC 5.5)
FIX = 16  # fixation bins before the target moves
T = FIX + BINS
OCC_LO, OCC_HI = -0.8, 0.0  # occluded band of normalised target position
AMPLITUDE_PX = 600.0
VEL_UNITS_PER_PX_MS = 21.6  # recorded velocity units per px/ms (data README)
VELOCITY_UNIT = "target amplitudes (600 px) per 1/32 cycle"
PRECISIONS = P.FIELDS  # proprio, retina, state1, cause2, state2, prior
KINETIC = ("k_c", "k_h", "k_t", "k_th", "k_d", "k_r")
PARAMETER_NAMES = PRECISIONS + KINETIC
RAW_FILES = {c: f"{c}_10ms.csv" for c in CONDITIONS}


def speed(condition: str) -> str:
    """``"fast"`` or ``"slow"``: the speed of a condition (one-line error otherwise)."""
    if condition not in CONDITIONS:
        raise ValueError(f"conditions: unknown condition '{condition}'; choose from "
                         f"{', '.join(CONDITIONS)}")
    return condition.split("_")[0]


def bin_times(condition: str) -> np.ndarray:
    """Centres (ms from target onset) of the 32 bins of a condition's cycle."""
    return (np.arange(BINS) + 0.5) * PERIOD_MS[speed(condition)] / BINS


def time_grid(conditions: Sequence[str] = CONDITIONS) -> tuple[float, ...]:
    """Sorted union of the conditions' bin centres (the default ``time_ms`` coordinate)."""
    return tuple(float(t) for t in np.unique(np.concatenate([bin_times(c) for c in conditions])))


# ----------------------------------------------------------------------------- the agent
def occluded(x: jax.Array, slope: float | None = None) -> jax.Array:
    """1 while the target is inside the occluded band ``OCC_LO < x < OCC_HI`` (hard step), or
    a logistic band of the given slope."""
    if slope is None:
        return jnp.where((x > OCC_LO) & (x < OCC_HI), 1.0, 0.0)
    return jax.nn.sigmoid(slope * (x - OCC_LO)) * jax.nn.sigmoid(slope * (OCC_HI - x))


def _sensations(o1, o2, x_t):
    retina = jnp.exp(-((jnp.asarray(P.OFFSETS) - x_t + o1) ** 2)) * (1.0 - occluded(x_t))
    return jnp.concatenate([jnp.stack([o1, o2]), retina])


def _process_f(x, v, a, th):
    return jnp.stack([x[1], a[0] / 4 - x[1] / 8, v[0] - x[2]])


def _process_g(x, v, a, th):
    return _sensations(x[0], x[1], x[2])


def _f1(x, v, th):
    h = occluded(x[2])  # believed target hidden
    g_cause = jnp.exp(th["k_c"] + h * th["k_h"])
    g_target = th["k_t"] * jnp.exp(h * th["k_th"])
    acc = (g_cause * (v[0] - x[0]) + g_target * (x[2] - x[0])) / 4 - jnp.exp(th["k_d"]) * x[1] / 2
    return jnp.stack([x[1], acc, jnp.exp(th["k_r"]) * (v[0] - x[2])])


def _g1(x, v, th):
    return _sensations(x[0], x[1], x[2])


def _f2(x, v, th):
    return jnp.stack([x[1], -x[0]]) * v[0] / 8


def _g2(x, v, th):
    return x[:1]


@lru_cache(maxsize=4)
def prepare(n_bins: int = T) -> tuple[Process, HDM]:
    """The validated world and agent templates for ``n_bins`` bins (concrete values)."""
    proc = Process(f=_process_f, g=_process_g, n_x=3, n_v=1, n_a=1, log_pi_z=16.0,
                   log_pi_w=16.0, y_names=P.Y_NAMES,
                   x_names=("eye_angle", "eye_velocity", "target_angle"))
    l1 = Level(g=_g1, f=_f1, n_x=3, n_v=1, log_pi_z=4.0, log_pi_w=4.0,
               theta={k: np.asarray(0.0) for k in KINETIC})
    l2 = Level(g=_g2, f=_f2, n_x=2, n_v=1, log_pi_z=4.0, log_pi_w=4.0)
    mod = HDM(levels=(l1, l2), eta=8 * P.W, log_pi_eta=4.0, n=5, d=2, s=0.5)
    proc, mod, _, _, _ = active.check_inputs(proc, mod, np.zeros((1, n_bins)),
                                             np.zeros((1, n_bins)),
                                             np.asarray(P.action_mask()))
    return proc, mod


def cause(n_bins: int = T) -> np.ndarray:
    """Target cause: rest at +1 for ``FIX`` bins, then ``cos(w t) - w sin(w t)``."""
    t = np.arange(n_bins) - FIX + 0.5  # model bin FIX + b sits at data bin b's centre
    c = np.cos(P.W * t) - P.W * np.sin(P.W * t)
    return np.where(t < 0, 1.0, c)


def simulate_agent(values: Mapping[str, jax.Array], key: jax.Array | None = None,
                   n_bins: int = T) -> dict[str, jax.Array]:
    """One run of the agent (pure JAX): eye velocity, target angle and target velocity per bin.

    ``values`` maps every name of :data:`PARAMETER_NAMES` to a scalar; ``key`` draws the
    world's noise (log-precision 16), ``None`` for the deterministic world.
    """
    with jax.ensure_compile_time_eval():  # validate the templates on concrete values
        proc, mod = prepare(n_bins)
    lp = {k: jnp.asarray(values[k], float) for k in PRECISIONS}
    l1, l2 = mod.levels
    n_y = l1.log_pi_z.shape[0]
    l1 = dataclasses.replace(
        l1, log_pi_z=jnp.concatenate([jnp.full(2, lp["proprio"]),
                                      jnp.full(n_y - 2, lp["retina"])]),
        log_pi_w=jnp.full(3, lp["state1"]),
        theta={k: jnp.asarray(values[k], float) for k in KINETIC})
    l2 = dataclasses.replace(l2, log_pi_z=jnp.full(1, lp["cause2"]),
                             log_pi_w=jnp.full(2, lp["state2"]))
    mod = dataclasses.replace(mod, levels=(l1, l2), log_pi_eta=jnp.full(1, lp["prior"]))
    v = jnp.asarray(cause(n_bins))[None, :]
    z, w = (None, None) if key is None else active.draw_noise(proc, key, n_bins, 0.5)
    out = active.run(proc, mod, v, jnp.full((1, n_bins), 8 * P.W), z=z, w=w,
                     action_mask=P.action_mask(4.0), kappa_a=1.0, log_pi_a=-2.0)
    x = out.x_process
    return {"eye_velocity": x[:, 1], "target_angle": x[:, 2],
            "target_velocity": out.v_process[:, 0] - x[:, 2]}


def gains(eye_velocity: jax.Array, target_velocity: jax.Array,
          occluded_bins: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pursuit gain (least-squares slope through 0 of eye on target velocity) while the target
    is visible / occluded, over one cycle's bins (NumPy or JAX; differentiable).

    Bins next to a change of visibility, and missing (NaN) bins, are left out of both.
    """
    ve = jnp.asarray(eye_velocity, float)
    vt = jnp.asarray(target_velocity, float)
    occ = jnp.asarray(occluded_bins) > 0.5
    ok = jnp.isfinite(ve) & jnp.isfinite(vt)
    ve, vt = jnp.where(ok, ve, 0.0), jnp.where(ok, vt, 0.0)
    prev = jnp.concatenate([occ[:1], occ[:-1]])
    nxt = jnp.concatenate([occ[1:], occ[-1:]])
    steady = ok & (occ == prev) & (occ == nxt)
    out = []
    for sel in (steady & ~occ, steady & occ):
        w = sel.astype(float)
        out.append(jnp.sum(w * ve * vt) / jnp.sum(w * vt * vt))
    return out[0], out[1]


def _check_design(design: Mapping[str, Any]) -> tuple[tuple[str, ...], np.ndarray]:
    conds = tuple(design["conditions"])
    if not conds:
        raise ValueError("design: 'conditions' is empty; give at least one of "
                         f"{', '.join(CONDITIONS)}")
    for c in conds:
        speed(c)
    times = np.asarray(design["times_ms"], float).ravel()
    if times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError("design: 'times_ms' must be a non-empty tuple of finite times (ms)")
    return conds, times


def simulate(values: Mapping[str, Any], design: Mapping[str, Any],
             key: jax.Array | None = None) -> dict[str, jax.Array]:
    """The paradigm's ``simulate``: read-outs for every condition of ``design``.

    ``values`` maps every parameter name to a scalar or to one value per condition (shape
    ``(len(design["conditions"]),)``). ``design["times_ms"]``: the times (ms from target
    onset) of the ``eye_velocity`` read-out.
    """
    conds, times = _check_design(design)
    n = len(conds)
    vals = {k: jnp.asarray(values[k], float) for k in PARAMETER_NAMES}
    if any(a.ndim > 0 for a in vals.values()) or key is not None:
        vals = {k: jnp.broadcast_to(a, (n,)) for k, a in vals.items()}
        keys = None if key is None else jax.random.split(key, n)
        tr = jax.vmap(lambda p, k: simulate_agent(p, k), in_axes=(0, None if key is None
                                                                  else 0))(vals, keys)
    else:  # one run serves every condition: only the time axis differs
        tr = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), simulate_agent(vals))
    knots = np.stack([(np.arange(T) - FIX + 0.5) * PERIOD_MS[speed(c)] / BINS for c in conds])
    eye = jax.vmap(lambda k, e: jnp.interp(jnp.asarray(times), k, e))(
        jnp.asarray(knots), tr["eye_velocity"])
    cyc = slice(FIX, T)
    g_vis, g_occ = jax.vmap(gains)(tr["eye_velocity"][:, cyc], tr["target_velocity"][:, cyc],
                                   occluded(tr["target_angle"][:, cyc]))
    return {"eye_velocity": eye, "gain_visible": g_vis, "gain_occluded": g_occ}


# ----------------------------------------------------------------------------- data
def _period(t: np.ndarray, target: np.ndarray) -> float:
    """Period (ms) of ``A cos(2 pi t / P)`` best fitting the target (1 ms grid, 3-7 s)."""
    ps = np.arange(3000.0, 7000.0, 1.0)
    c = np.cos(2 * np.pi * t[None, :] / ps[:, None])
    amp = (c @ target) / np.sum(c * c, axis=1)
    sse = np.sum((target[None, :] - amp[:, None] * c) ** 2, axis=1)
    return float(ps[np.argmin(sse)])


def bin_raw(directory: str | Path) -> xr.Dataset:
    """The four raw grand averages (``<directory>/<condition>_10ms.csv``) in 32 bins per cycle.

    Positions are divided by the target's amplitude (600 px); velocities are converted from
    the recorded units (21.6 per px/ms) to target amplitudes per bin (``P / 32`` ms). The
    period ``P`` of each speed is the least-squares period of the recorded smooth target. The
    noisy conditions' target is not stored (``eye + lag`` departs from the target by up to
    140 px even in the smooth conditions), so the smooth target of the same speed stands for
    its mean trajectory. A bin holds the mean of its samples (at least half the bin's samples
    needed, else NaN).

    Returns
    -------
    xarray.Dataset over ``(condition, bin)``: ``eye``, ``target``, ``eye_velocity`` (smooth:
    saccades removed), ``target_velocity``, ``occluded`` (target inside the band),
    ``time_ms`` (bin centre) and ``period_ms`` (per condition).
    """
    directory = Path(directory)
    raw = {c: P.load_eye_tracking(directory / RAW_FILES[c], condition=c) for c in CONDITIONS}
    shape = (len(CONDITIONS), BINS)
    eye, tgt, vel, tvel, centre = (np.full(shape, np.nan) for _ in range(5))
    periods = {s: _period(raw[f"{s}_smooth"]["time"].values,
                          raw[f"{s}_smooth"]["target_position_px"].values)
               for s in ("fast", "slow")}
    for i, c in enumerate(CONDITIONS):
        ds, sm = raw[c], raw[f"{speed(c)}_smooth"]
        period = periods[speed(c)]
        t = ds["time"].values
        target = np.interp(t, sm["time"].values, sm["target_position_px"].values)
        per_bin = (period / BINS) / (VEL_UNITS_PER_PX_MS * AMPLITUDE_PX)
        v_eye = ds["eye_velocity_desaccaded"].values * per_bin
        v_tgt = np.gradient(target, t) * VEL_UNITS_PER_PX_MS * per_bin
        edges = np.arange(BINS + 1) * period / BINS
        for b in range(BINS):
            sel = (t >= edges[b]) & (t < edges[b + 1])
            if sel.sum() >= 0.5 * (period / BINS) / 10.0:  # at least half the bin's samples
                eye[i, b] = ds["eye_position_px"].values[sel].mean() / AMPLITUDE_PX
                tgt[i, b] = target[sel].mean() / AMPLITUDE_PX
                vel[i, b] = np.nanmean(v_eye[sel])
                tvel[i, b] = v_tgt[sel].mean()
                centre[i, b] = (edges[b] + edges[b + 1]) / 2
    amp = "target amplitude (600 px)"
    return xr.Dataset(
        {"eye": (("condition", "bin"), eye, {"units": amp, "long_name": "eye position"}),
         "target": (("condition", "bin"), tgt, {"units": amp}),
         "eye_velocity": (("condition", "bin"), vel, {
             "units": VELOCITY_UNIT, "long_name": "smooth eye velocity (saccades removed)"}),
         "target_velocity": (("condition", "bin"), tvel, {"units": VELOCITY_UNIT}),
         "occluded": (("condition", "bin"), (tgt > OCC_LO) & (tgt < OCC_HI)),
         "time_ms": (("condition", "bin"), centre, {"units": "ms"}),
         "period_ms": ("condition", [periods[speed(c)] for c in CONDITIONS], {"units": "ms"})},
        coords={"condition": list(CONDITIONS), "bin": np.arange(BINS)},
        attrs={"source": str(directory), "bins_per_cycle": BINS})


#: Columns of the binned tidy file: the data format's four, then three extra numeric ones.
BINNED_HEADER = ("participant", "condition", "time_ms", "eye_velocity", "bin",
                 "target_position", "target_velocity")


def tidy_rows(binned: xr.Dataset, participant: str = "grand_average") -> list[list[str]]:
    """One row per (condition, bin) with data (NaN bins left out), as formatted cells."""
    rows = []
    for c in binned["condition"].values:
        d = binned.sel(condition=c)
        for b in d["bin"].values:
            e = d.sel(bin=b)
            if not np.isfinite(float(e["eye_velocity"])):
                continue
            rows.append([participant, str(c), repr(float(e["time_ms"])),
                         repr(float(e["eye_velocity"])), str(int(b)),
                         repr(float(e["target"])), repr(float(e["target_velocity"]))])
    return rows


def write_binned(directory: str | Path, path: str | Path) -> Path:
    """Bin the four raw files of ``directory`` (:func:`bin_raw`) into the tidy CSV ``path``."""
    from cpsych.fit.data import write_csv

    return write_csv(path, BINNED_HEADER, tidy_rows(bin_raw(directory)))


# ----------------------------------------------------------------------------- the paradigm
_LOG_PI = "log-precision"
_KIN = "log gain"
PARADIGM = Paradigm(
    name="pursuit-spem",
    title="Smooth pursuit through occlusion fitted to human eye traces (Adams et al. 2015 "
          "SPEM data; agent of Adams, Perrinet & Friston 2012)",
    parameters=(
        Parameter("proprio", 4.0, _LOG_PI, "proprioceptive log-precision", (4.0, 1.0),
                  (-8.0, 16.0)),
        Parameter("retina", 4.0, _LOG_PI, "retinal (sensory precision of the target) "
                  "log-precision", (4.0, 1.0), (-8.0, 16.0)),
        Parameter("state1", 4.0, _LOG_PI, "level-1 state (eye and target motion) "
                  "log-precision", (4.0, 1.0), (-8.0, 16.0)),
        Parameter("cause2", 4.0, _LOG_PI, "level-2 cause log-precision", (4.0, 1.0),
                  (-8.0, 16.0)),
        Parameter("state2", 4.0, _LOG_PI, "level-2 (oscillator) state log-precision: the "
                  "precision of prior beliefs about the target's motion", (4.0, 1.0),
                  (-8.0, 16.0)),
        Parameter("prior", 4.0, _LOG_PI, "prior log-precision on the oscillator frequency",
                  (4.0, 1.0), (-8.0, 16.0)),
        Parameter("k_c", 0.0, _KIN, "believed eye's gain toward the believed cause",
                  (0.0, 1.0), (-5.0, 5.0)),
        Parameter("k_h", 0.0, _KIN, "change of k_c while the believed target is hidden",
                  (0.0, 1.0), (-5.0, 5.0)),
        Parameter("k_t", 0.0, "1", "believed eye's gain toward the believed target angle "
                  "(linear)", (0.0, 1.0), (-8.0, 8.0)),
        Parameter("k_th", 0.0, _KIN, "change of k_t while the believed target is hidden",
                  (0.0, 1.0), (-5.0, 5.0)),
        Parameter("k_d", 0.0, _KIN, "damping of the believed eye velocity", (0.0, 1.0),
                  (-5.0, 5.0)),
        Parameter("k_r", 0.0, "log rate", "rate at which the believed target follows the "
                  "cause", (0.0, 1.0), (-5.0, 5.0)),
    ),
    presets={"control": {},
             # SPM's schizophrenia simulation (M(2).W = exp(0)), as in the pursuit paradigm
             "schizophrenia": {"state2": 0.0}},
    readouts=(
        Readout("eye_velocity", VELOCITY_UNIT, "smooth eye velocity",
                ("condition", "time_ms")),
        Readout("gain_visible", "1", "pursuit gain while the target is visible",
                ("condition",)),
        Readout("gain_occluded", "1", "pursuit gain while the target is occluded",
                ("condition",)),
    ),
    simulate=simulate,
    design={"conditions": CONDITIONS, "times_ms": time_grid()},
    coords={"condition": CONDITIONS, "time_ms": time_grid()},
    data=DataFormat(
        columns={"participant": "label", "condition": "label", "time_ms": "ms",
                 "eye_velocity": VELOCITY_UNIT},
        response="eye_velocity", design=("condition", "time_ms"),
        # each condition is a stimulus (its speed and noise): simulated in its own condition
        design_options={"condition": "conditions", "time_ms": "times_ms"},
        # data: 65-5020 ms; |eye velocity| <= 0.24 (the target's peak is 2 pi / 32 = 0.196)
        plausible={"time_ms": (0.0, 60_000.0), "eye_velocity": (-1.0, 1.0)},
        description="one row per (condition, time bin): smooth eye velocity at the bin "
                    "centre (ms from target onset; 32 bins per cycle)"),
    references=(
        "Adams RA, Aponte E, Marshall L, Friston KJ (2015). Active inference and oculomotor "
        "pursuit: the dynamic causal modelling of eye movements. J Neurosci Methods "
        "242:1-14.",
        "Adams RA, Perrinet LU, Friston K (2012). Smooth pursuit and visual occlusion: active "
        "inference and oculomotor control in schizophrenia. PLoS ONE 7:e47502.",
    ),
)
