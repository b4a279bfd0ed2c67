"""Fitting the force-matching paradigm to behaviour (SPEC 7).

The paradigm itself (simulator, presets, read-outs, ``PARADIGM``) is
:mod:`cpsych.models.force_matching`; this module holds what fitting it to data needs, built on
the generic machinery of :mod:`cpsych.fit` (CSV reading, the table emulator, MAP and NUTS):

* the data format: :func:`load_force_matching`, :func:`write_force_matching`;
* differentiable read-outs: :func:`force_trial`;
* the emulator of the matched force: :func:`force_grid`, :func:`matched_table`,
  :func:`build_emulator`, :func:`default_emulator`, :func:`emulator_error`;
* the hierarchical model: :class:`ForcePriors`, :class:`ForceData`, :func:`force_data`,
  :func:`force_matching_model`;
* the fit end to end: :func:`map_force_matching`, :func:`fit_force_matching`;
* synthetic participants: :func:`synthetic_force_data`.

>>> ds = load_force_matching("experiments/data/force_matching_example.csv")   # doctest: +SKIP
>>> fit = fit_force_matching(ds)                                              # doctest: +SKIP
>>> fit.posterior["delta_h"].mean(("chain", "draw"))                          # doctest: +SKIP

Data
----
One row per trial: ``participant``, ``group``, ``condition``, ``target`` (N) and ``matched``
(N). In the force-matching task (Shergill et al. 2003) the experimenter applies a *target*
force to the participant's finger and the participant then reproduces it; *matched* is the
force they produce. ``group`` and ``condition`` may be absent (one group / condition,
``"all"``). Extra columns are kept as data variables if numeric, and ignored (with a note in
``attrs``) otherwise. Files with the data format's optional second response, reported
uncertainty (column ``uncertainty``), are fitted by the generic
:func:`cpsych.fit.hierarchical.fit`, not here. The file is read by
:func:`cpsych.fit.data.read_data` in the data format of
:data:`cpsych.models.force_matching.PARADIGM`: forces outside its plausible range (0-20 N),
duplicated rows, participants assigned to two groups, binary or non-UTF-8 files and
groups named in ``groups=`` without rows are :class:`~cpsych.fit.data.DataError`\\ s.

Gradients through the simulator
-------------------------------
The simulator is pure JAX: the precisions are arguments, and the whole time integration (a
``lax.scan`` over bins, each step a matrix exponential of the joint Jacobian) can be
differentiated with ``jax.jacfwd`` (cheapest for the few precision parameters fitted;
``jax.grad`` works too). The specification's read-out is not differentiable: the percept is
read at the time of the true peak force, ``t* = argmax_t x(t)``, an index piecewise constant in
the parameters, so the read-out jumps when the peak moves from one bin to the next. The
surrogate weighs every bin by a soft-argmax, ``w_t = softmax(x(t) / tau)`` with
``tau = 0.01`` N (the peak bin dominates: bins 0.05 N below it weigh ``exp(-5)`` as much): true
peak ``sum_t w_t x(t)``, percept ``sum_t w_t confident(x_self(t))``. As ``tau -> 0`` it is the
specification's read-out.

Emulator (for NUTS)
-------------------
Hamiltonian Monte Carlo evaluates the likelihood and its gradient ~10^5 times. A force trial
costs ~20 ms batched on two CPU cores (32 bins, each a 40 x 40 matrix exponential) and the
matching prediction needs the whole force curve of a participant (a root of
``percept(level) = target``), so running the simulator inside NUTS would take hours. Instead
the simulator is run once on a grid of attenuation ``h`` x intended force level, the curve is
inverted at each grid ``h`` (:func:`matched_table`), and the likelihood interpolates the table
with :class:`cpsych.fit.emulator.Emulator` (``x = h``, ``y = target``): cubic Hermite in ``h``
(C1, so NUTS sees continuous gradients), linear in the target force, linear extrapolation
outside the grid (finite gradients at the edges of the prior). :func:`emulator_error`
measures the interpolation error against direct simulation.

Hierarchical model
------------------
Each participant ``i`` (group ``g(i)``) has an attenuation ``h_i`` (SPEC 5.4: the fall of
sensory log-precision while the agent believes it is pushing; 6 in health, ``6 - D`` in
schizophrenia). Group means and participants are non-centred::

    mu_h            ~ Normal(6, 2)              reference-group mean attenuation
    delta_h[k]      ~ Normal(0, 2)              group k minus the reference group, k = 1..G-1
    sigma_h         ~ HalfNormal(1)             between-participant SD (log-precision units)
    z_i             ~ Normal(0, 1)
    h_i             = mu_h + delta_h[g(i)] + sigma_h z_i      (delta_h[reference] = 0)
    beta_h[c]       ~ Normal(0, 2)              condition c minus the reference condition
    sigma_obs       ~ HalfNormal(0.5)           N

Observation model: on a trial with external target force ``T`` in condition ``c`` the
participant produces (the matched force)::

    matched ~ Normal(m(h_i + beta_h[c], T), sigma_obs)

where ``m(h, T)`` is the force an agent with attenuation ``h`` produces when its percept of its
own force equals ``T`` (:func:`matched_table`, through the emulator). The other precisions of
the agent stay at the control preset (sensory 8, state 4, prior on ``v_self`` 6): with one
behavioural read-out per target level, attenuation is what the data identify; the
schizophrenia preset's co-varying prior precisions are absorbed into ``h``. Group and
condition effects are additive in log-precision units (``delta_h = -2`` is the ``D = 2``
schizophrenia preset's change of ``h``). The reference group and condition are the first in
the data's sorted labels unless given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import xarray as xr

from cpsych import validation as val
from cpsych.fit.data import DataError, read_data, write_csv
from cpsych.fit.emulator import Emulator, table_emulator, uniform_grid
from cpsych.fit.infer import Fit, MapResult, map_estimate, sample_nuts
from cpsych.models import force_matching as fm

__all__ = [
    "FORCE_COLUMNS",
    "load_force_matching",
    "write_force_matching",
    "TAU_PEAK",
    "force_readouts",
    "force_trial",
    "force_grid",
    "matched_table",
    "build_emulator",
    "emulator_error",
    "default_emulator",
    "ForcePriors",
    "ForceData",
    "force_data",
    "force_matching_model",
    "FORCE_ATTRS",
    "force_dims",
    "force_coords",
    "map_force_matching",
    "fit_force_matching",
    "synthetic_force_data",
]


# ----------------------------------------------------------------------------- data format
#: Required columns of a force-matching table, in the order they are written.
FORCE_COLUMNS = ("participant", "group", "condition", "target", "matched")


def load_force_matching(path: str | Path, groups: Sequence[str] | None = None,
                        conditions: Sequence[str] | None = None) -> xr.Dataset:
    """Read a force-matching table.

    Parameters
    ----------
    path : CSV file with columns ``participant, group, condition, target, matched``, read
        strictly by :func:`cpsych.fit.data.read_data` in the paradigm's data format
        (``group`` and ``condition`` may be absent: a single level ``"all"``).
    groups, conditions : expected labels; a label found in the file but not listed, or listed
        without any row, is an error (the second is the "empty group" case). ``None`` accepts
        whatever labels the file has.

    Returns
    -------
    xarray.Dataset with dimension ``trial`` (one per data row, file order): data variables
    ``target`` and ``matched`` (N); coordinates ``participant``, ``group``, ``condition``
    (strings) and ``line`` (the file's line number of each trial). ``attrs`` hold the source
    path and the sorted labels (``participants``, ``groups``, ``conditions``).
    """
    data = read_data(path, fm.PARADIGM)
    path = Path(path)
    if "uncertainty" in data:  # a second kind of response: the generic fit models it
        found = np.flatnonzero(np.isfinite(data["uncertainty"].values))
        if found.size:
            raise DataError(path, "this file holds uncertainty reports, which this 1-D fit of "
                                  "matched forces does not model; fit it with "
                                  "cpsych.fit.hierarchical.fit (cpsych fit force-matching)",
                            int(data["line"].values[found[0]]), "uncertainty")
        data = data.drop_vars("uncertainty")  # an empty column: nothing to model
    labels = {c: [str(v) for v in data[c].values] for c in ("participant", "group", "condition")}
    for column, expected in (("group", groups), ("condition", conditions)):
        found = sorted(set(labels[column]))
        if expected is None:
            continue
        unknown = [f for f in found if f not in expected]
        if unknown:
            line = int(data["line"].values[labels[column].index(unknown[0])])
            raise DataError(path, f"unexpected {column} '{unknown[0]}' (expected one of "
                                  f"{list(expected)})", line, column)
        empty = [e for e in expected if e not in found]
        if empty:
            raise DataError(path, f"{column} '{empty[0]}' has no rows (empty {column}); "
                                  f"found {found}", None, column)
    ds = xr.Dataset(
        {c: ("trial", data[c].values, {"units": "N"}) for c in ("target", "matched")},
        coords={**{c: ("trial", data[c].values) for c in labels},
                "line": ("trial", data["line"].values)},
        attrs={"source": str(path), "participants": sorted(set(labels["participant"])),
               "groups": sorted(set(labels["group"])),
               "conditions": sorted(set(labels["condition"]))},
    )
    ds["target"].attrs["long_name"] = "target force applied by the experimenter"
    ds["matched"].attrs["long_name"] = "force produced by the participant to match it"
    for h in data.data_vars:
        if h not in FORCE_COLUMNS:
            ds[h] = ("trial", data[h].values)
    for key in ("ignored_columns", "filled_columns", "notes"):
        if key in data.attrs:
            ds.attrs[key] = data.attrs[key]
    return ds


def write_force_matching(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a force-matching dataset (as returned by :func:`load_force_matching`) to CSV.

    Atomically (:func:`cpsych.fit.data.write_csv`): an error mid-write leaves ``path`` as it
    was.
    """
    rows = [[str(ds.participant.values[i]), str(ds.group.values[i]),
             str(ds.condition.values[i]), f"{float(ds.target[i]):.4f}",
             f"{float(ds.matched[i]):.4f}"] for i in range(ds.sizes["trial"])]
    return write_csv(path, FORCE_COLUMNS, rows)


# ----------------------------------------------------------------------------- read-outs
#: Temperature (N) of the soft-argmax that locates the peak force.
TAU_PEAK: float = 0.01


def force_readouts(out, tau: float = TAU_PEAK) -> tuple[jax.Array, jax.Array]:
    """Smooth read-outs of a force trial: (true peak force, perceived force), N.

    Parameters
    ----------
    out : ``ActiveOutput`` of :func:`cpsych.models.force_matching.trial_output`.
    tau : soft-argmax temperature (N); see the module docstring.
    """
    x = out.x_process[:, 0]
    w = jax.nn.softmax(x / tau)
    perc = fm.confident(out.x[:, 0], out.x_var[:, 0])
    return jnp.sum(w * x), jnp.sum(w * perc)


def force_trial(h: jax.Array, level: jax.Array, base: fm.Params | None = None,
                tau: float = TAU_PEAK) -> jax.Array:
    """``[true peak, perceived]`` (N) of a self-generated trial at attenuation ``h``.

    ``level`` is the intended peak force (the prior bump's height); the other precisions are
    those of ``base`` (default: the control preset). Pure JAX: jit/vmap/grad-able in ``h``,
    ``level`` and every field of ``base``.
    """
    base = fm.Params() if base is None else base
    out = fm.trial_output(base._replace(h=h), level)
    return jnp.stack(force_readouts(out, tau))


# ----------------------------------------------------------------------------- emulator
@jax.jit
def _grid_batch(h: jax.Array, level: jax.Array) -> jax.Array:
    return jax.vmap(force_trial)(h, level)


def force_grid(h_grid: Sequence[float], levels: Sequence[float],
               batch: int = 256) -> xr.Dataset:
    """Run the force-matching simulator on a grid of attenuation x intended level.

    Returns a dataset over ``(h, level)`` with ``peak`` and ``perceived`` (N).
    """
    h_grid = np.asarray(h_grid, float)
    levels = np.asarray(levels, float)
    H, L = np.meshgrid(h_grid, levels, indexing="ij")
    hf, lf = H.ravel(), L.ravel()
    n = hf.size
    pad = (-n) % batch
    hf = np.r_[hf, np.full(pad, hf[-1])]
    lf = np.r_[lf, np.full(pad, lf[-1])]
    res = np.concatenate([np.asarray(_grid_batch(jnp.asarray(hf[i:i + batch]),
                                                 jnp.asarray(lf[i:i + batch])))
                          for i in range(0, hf.size, batch)])[:n]
    res = res.reshape(h_grid.size, levels.size, 2)
    return xr.Dataset(
        {"peak": (("h", "level"), res[..., 0], {"units": "N",
                                                  "long_name": "true peak self-generated force"}),
         "perceived": (("h", "level"), res[..., 1],
                       {"units": "N", "long_name": "perceived self-generated force"})},
        coords={"h": ("h", h_grid, {"long_name": "attenuation", "units": "log-precision"}),
                "level": ("level", levels, {"units": "N", "long_name": "intended peak force"})},
    )


def matched_table(grid: xr.Dataset, targets: Sequence[float],
                  min_step: float = 1e-3) -> np.ndarray:
    """Invert each grid curve: the force produced to match each external target (N).

    For each ``h`` the simulator gives, per intended level, the true peak force and its
    percept. The participant matches an external target force ``T`` (perceived veridically,
    SPEC 5.4) by producing the force whose percept equals ``T``: the produced (matched) force
    is the true peak at the level where ``percept = T``, by linear interpolation along the
    curve. Percepts that fall as the level rises (at extreme ``h``) are replaced by their
    running maximum and knots closer than ``min_step`` (N) in percept are merged (the smallest
    level reaching a percept is used). Targets beyond the largest percept (an agent too
    weakly attenuated, or too strongly, to feel itself pushing that hard) are extrapolated
    along the curve's overall chord, its slope bounded to [1/2, 3]. Returns
    ``(n_h, n_targets)``.
    """
    targets = np.asarray(targets, float)
    out = np.empty((grid.sizes["h"], targets.size))
    for k in range(grid.sizes["h"]):
        perc = np.maximum.accumulate(grid["perceived"].values[k])
        peak = grid["peak"].values[k]
        keep = np.r_[True, np.diff(perc) > min_step]  # knots at least min_step N apart
        x, y = perc[keep], peak[keep]
        if x.size < 2:  # a flat curve: the agent never perceives itself pushing harder
            out[k] = y[-1]
            continue
        # beyond the curve: extrapolate along its overall chord (slope bounded to [1/2, 3])
        chord = float(np.clip((y[-1] - y[0]) / (x[-1] - x[0]), 0.5, 3.0))
        val = np.interp(targets, x, y)
        lo, hi = targets < x[0], targets > x[-1]
        val[lo] = y[0] + (targets[lo] - x[0]) * chord
        val[hi] = y[-1] + (targets[hi] - x[-1]) * chord
        out[k] = val
    return out


def build_emulator(h_grid: Sequence[float] = tuple(np.arange(-2.0, 12.01, 0.5)),
                   levels: Sequence[float] = tuple(np.arange(0.0, 4.01, 0.125)),
                   targets: Sequence[float] = tuple(np.arange(0.0, 3.01, 0.05)),
                   grid: xr.Dataset | None = None) -> tuple[Emulator, xr.Dataset]:
    """Simulate the grid (unless given) and build the matched-force emulator.

    ``h_grid`` and ``targets`` must be uniformly spaced. Returns ``(emulator, grid)``: the
    emulator maps ``(h, target)`` to the matched force (N); ``grid`` is :func:`force_grid`'s
    dataset with the ``matched`` table added over ``(h, target)``.
    """
    h_grid = uniform_grid(h_grid, "h_grid")
    targets = uniform_grid(targets, "targets")
    if grid is None:
        grid = force_grid(h_grid, levels)
    elif not np.allclose(grid["h"].values, h_grid):
        raise ValueError("grid: its 'h' coordinate differs from h_grid")
    table = matched_table(grid, targets)
    emu = table_emulator(h_grid, targets, table)
    grid = grid.assign(matched=(("h", "target"), table, {
        "units": "N", "long_name": "force produced to match an external target"}))
    grid = grid.assign_coords(target=("target", targets, {"units": "N"}))
    return emu, grid


def emulator_error(emulator: Emulator, h: Sequence[float], targets: Sequence[float],
                   levels: Sequence[float]) -> float:
    """Largest |emulated - simulated| matched force (N) at (off-grid) attenuations ``h``.

    The direct value simulates ``levels`` at each ``h`` and inverts the curve
    (:func:`matched_table`).
    """
    direct = matched_table(force_grid(h, levels), targets)
    emu = np.asarray(emulator(np.asarray(h, float)[:, None],
                              np.asarray(targets, float)[None, :]))
    return float(np.max(np.abs(emu - direct)))


@functools.lru_cache(maxsize=4)
def default_emulator(h_lo: float = -2.0, h_hi: float = 12.0, dh: float = 0.5,
                     level_hi: float = 4.0, dlevel: float = 0.125,
                     target_hi: float = 3.0) -> tuple[Emulator, xr.Dataset]:
    """The force-matching emulator on a standard grid (cached per process).

    Default: ``h`` from -2 to 12 in steps of 0.5 (the prior ``N(6, 2)`` +- 4 SD), intended
    levels 0..4 N in steps of 0.125 N, targets 0..3 N in steps of 0.05 N:
    29 x 33 = 957 simulated trials.
    """
    n_h = int(round((h_hi - h_lo) / dh)) + 1
    n_l = int(round(level_hi / dlevel)) + 1
    return build_emulator(np.linspace(h_lo, h_hi, n_h), np.linspace(0.0, level_hi, n_l),
                          np.linspace(0.0, target_hi, int(round(target_hi / 0.05)) + 1))


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ForcePriors:
    """Priors of :func:`force_matching_model` (log-precision units; N for ``sigma_obs``)."""

    mu_h_loc: float = 6.0
    mu_h_scale: float = 2.0
    delta_h_scale: float = 2.0
    sigma_h_scale: float = 1.0
    beta_h_scale: float = 2.0
    sigma_obs_scale: float = 0.5

    def __post_init__(self):
        for name, v in self.__dict__.items():
            if not np.isfinite(v) or (name != "mu_h_loc" and v <= 0):
                raise ValueError(f"ForcePriors: field '{name}' must be finite"
                                 f"{' and > 0' if name != 'mu_h_loc' else ''}, got {v}")


@dataclass(frozen=True)
class ForceData:
    """Integer-coded force-matching data for the numpyro model."""

    participant: np.ndarray  # (n_trials,) participant index
    condition: np.ndarray  # (n_trials,) condition index
    target: np.ndarray  # (n_trials,) N
    matched: np.ndarray  # (n_trials,) N
    group_of: np.ndarray  # (n_participants,) group index
    participants: tuple[str, ...]
    groups: tuple[str, ...]  # reference group first
    conditions: tuple[str, ...]  # reference condition first
    priors: ForcePriors = field(default_factory=ForcePriors)

    @property
    def group_contrasts(self) -> list[str]:
        return [f"{g} - {self.groups[0]}" for g in self.groups[1:]]

    @property
    def condition_contrasts(self) -> list[str]:
        return [f"{c} - {self.conditions[0]}" for c in self.conditions[1:]]


def _order(found: Sequence[str], reference: str | None, what: str) -> tuple[str, ...]:
    found = sorted(found)
    if reference is None:
        return tuple(found)
    if reference not in found:
        raise ValueError(f"reference_{what}: '{reference}' is not in the data's {what}s "
                         f"{found}")
    return (reference,) + tuple(f for f in found if f != reference)


def force_data(ds: xr.Dataset, reference_group: str | None = None,
               reference_condition: str | None = None,
               priors: ForcePriors | None = None) -> ForceData:
    """Code a dataset from :func:`load_force_matching` for fitting."""
    for v in FORCE_COLUMNS:
        if v not in ds:
            raise ValueError(f"data: variable or coordinate '{v}' missing")
    parts = sorted(set(ds["participant"].values.tolist()))
    groups = _order(set(ds["group"].values.tolist()), reference_group, "group")
    conds = _order(set(ds["condition"].values.tolist()), reference_condition, "condition")
    pidx = {p: i for i, p in enumerate(parts)}
    gidx = {g: i for i, g in enumerate(groups)}
    cidx = {c: i for i, c in enumerate(conds)}
    group_of = np.zeros(len(parts), int)
    for p, g in zip(ds["participant"].values, ds["group"].values, strict=True):
        group_of[pidx[p]] = gidx[g]
    return ForceData(
        participant=np.array([pidx[p] for p in ds["participant"].values]),
        condition=np.array([cidx[c] for c in ds["condition"].values]),
        target=np.asarray(ds["target"].values, float),
        matched=np.asarray(ds["matched"].values, float),
        group_of=group_of, participants=tuple(parts), groups=groups, conditions=conds,
        priors=priors or ForcePriors(),
    )


def force_matching_model(data: ForceData, emulator: Emulator,
                         matched: jnp.ndarray | None = None) -> None:
    """numpyro model of force-matching data (see the module docstring).

    ``matched=None`` samples the observations (prior / posterior predictive).
    """
    pr = data.priors
    n_p, n_g, n_c = len(data.participants), len(data.groups), len(data.conditions)
    mu = numpyro.sample("mu_h", dist.Normal(pr.mu_h_loc, pr.mu_h_scale))
    if n_g > 1:
        delta = numpyro.sample("delta_h", dist.Normal(0.0, pr.delta_h_scale).expand([n_g - 1]))
        offsets = jnp.concatenate([jnp.zeros(1), delta])
    else:
        offsets = jnp.zeros(1)
    numpyro.deterministic("group_mean_h", mu + offsets)
    sigma_h = numpyro.sample("sigma_h", dist.HalfNormal(pr.sigma_h_scale))
    with numpyro.plate("participant", n_p):
        z = numpyro.sample("z_h", dist.Normal(0.0, 1.0))
    h = numpyro.deterministic("h", mu + offsets[data.group_of] + sigma_h * z)
    if n_c > 1:
        beta = numpyro.sample("beta_h", dist.Normal(0.0, pr.beta_h_scale).expand([n_c - 1]))
        cond = jnp.concatenate([jnp.zeros(1), beta])
    else:
        cond = jnp.zeros(1)
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(pr.sigma_obs_scale))
    h_trial = h[data.participant] + cond[data.condition]
    mean = emulator(h_trial, jnp.asarray(data.target))
    with numpyro.plate("trial", data.target.size):
        numpyro.sample("matched", dist.Normal(mean, sigma_obs), obs=matched)


# ----------------------------------------------------------------------------- the fit
FORCE_ATTRS = {
    "mu_h": {"units": "log-precision", "long_name": "reference-group mean attenuation"},
    "delta_h": {"units": "log-precision", "long_name": "group difference in mean attenuation"},
    "group_mean_h": {"units": "log-precision", "long_name": "group mean attenuation"},
    "sigma_h": {"units": "log-precision", "long_name": "between-participant SD of attenuation"},
    "z_h": {"units": "1", "long_name": "standardised participant deviation (non-centred)"},
    "h": {"units": "log-precision", "long_name": "attenuation (reference condition)"},
    "beta_h": {"units": "log-precision", "long_name": "condition effect on attenuation"},
    "sigma_obs": {"units": "N", "long_name": "SD of matched force about the model"},
    "matched": {"units": "N", "long_name": "matched (produced) force"},
}


def force_dims(data: ForceData) -> dict[str, tuple[str, ...]]:
    """Dimension names (after ``chain, draw``) of each site of :func:`force_matching_model`."""
    return {"delta_h": ("group_contrast",), "group_mean_h": ("group",),
            "z_h": ("participant",), "h": ("participant",), "beta_h": ("condition_contrast",),
            "matched": ("trial",)}


def force_coords(data: ForceData) -> dict[str, np.ndarray]:
    """Labels of the dimensions of :func:`force_dims`."""
    return {"participant": np.asarray(data.participants), "group": np.asarray(data.groups),
            "group_contrast": np.asarray(data.group_contrasts),
            "condition_contrast": np.asarray(data.condition_contrasts),
            "trial": np.arange(data.target.size)}


def _check_fit_args(ds, emulator, seed: int, **counts: int) -> None:
    """Entry checks of the fits: the data, the emulator, the seed and the counts (>= 1)."""
    val.check_type(ds, "ds", (xr.Dataset, ForceData),
                   "a force-matching table (load_force_matching) or ForceData",
                   fix="load the CSV first with load_force_matching(path)")
    if emulator is not None:
        val.check_callable(emulator, "emulator", "emulator(h, target) -> matched force")
    val.check_int(seed, "seed", minimum=0)
    for name, value in counts.items():
        val.check_int(value, name, minimum=1)


def map_force_matching(ds: xr.Dataset | ForceData, emulator: Emulator | None = None,
                       steps: int = 500, seed: int = 0, **kw) -> MapResult:
    """Quick MAP point estimate (optax L-BFGS) of the force-matching model."""
    _check_fit_args(ds, emulator, seed=seed, steps=steps)
    data = ds if isinstance(ds, ForceData) else force_data(ds, **kw)
    emulator = emulator or default_emulator()[0]
    return map_estimate(force_matching_model, data, emulator,
                        matched=jnp.asarray(data.matched), steps=steps, seed=seed)


def fit_force_matching(ds: xr.Dataset | ForceData, emulator: Emulator | None = None,
                       chains: int = 4, warmup: int = 500, draws: int = 1000, seed: int = 0,
                       reference_group: str | None = None,
                       reference_condition: str | None = None,
                       priors: ForcePriors | None = None, init_map: bool = True,
                       progress: bool = False) -> Fit:
    """Hierarchical NUTS fit of force-matching data (MAP-initialised).

    Returns a :class:`~cpsych.fit.infer.Fit`; the posterior has ``h`` (participant),
    ``group_mean_h`` (group), ``delta_h`` (group contrast), ``beta_h`` (condition contrast),
    ``mu_h``, ``sigma_h``, ``sigma_obs``; the posterior predictive has ``matched`` (trial).
    """
    _check_fit_args(ds, emulator, seed=seed, chains=chains, warmup=warmup, draws=draws)
    val.check_bool(init_map, "init_map")
    data = ds if isinstance(ds, ForceData) else force_data(
        ds, reference_group, reference_condition, priors)
    emulator = emulator or default_emulator()[0]
    init = None
    if init_map:
        m = map_force_matching(data, emulator, seed=seed)
        if np.all([np.all(np.isfinite(v)) for v in m.values.values()]):
            init = {k: m.values[k] for k in m.values
                    if k in ("mu_h", "delta_h", "sigma_h", "z_h", "beta_h", "sigma_obs")}
    fit = sample_nuts(force_matching_model, data, emulator,
                      observed={"matched": jnp.asarray(data.matched)},
                      dims=force_dims(data), coords=force_coords(data), attrs=FORCE_ATTRS,
                      chains=chains, warmup=warmup, draws=draws, seed=seed, init=init,
                      progress=progress)
    obs = fit.observed_data
    obs = obs.assign_coords(
        participant_of_trial=("trial", np.asarray(data.participants)[data.participant]),
        group_of_trial=("trial", np.asarray(data.groups)[data.group_of[data.participant]]),
        condition_of_trial=("trial", np.asarray(data.conditions)[data.condition]),
        target=("trial", data.target, {"units": "N"}))
    fit.observed_data = obs
    fit.posterior = fit.posterior.assign_coords(
        group_of_participant=("participant", np.asarray(data.groups)[data.group_of]))
    fit.posterior.attrs.update({"reference_group": data.groups[0],
                                "reference_condition": data.conditions[0],
                                "model": f"{__name__}.force_matching_model"})
    return fit


# ----------------------------------------------------------------------------- synthetic data
def synthetic_force_data(h: Sequence[float], groups: Sequence[str],
                         targets: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
                         conditions: Sequence[str] = ("finger",),
                         condition_effects: Sequence[float] = (0.0,),
                         repeats: int = 1, noise_sd: float = 0.1,
                         emulator: Emulator | None = None, seed: int = 0) -> xr.Dataset:
    """Synthetic participants: matched forces from known attenuations plus Gaussian noise.

    Participant ``i`` in condition ``c`` has attenuation ``h[i] + condition_effects[c]``; its
    noiseless matched force is the emulator's (default) or, for ``emulator=False``, the
    direct simulator's (a grid of intended levels simulated per participant and inverted:
    slower, and free of the emulator's interpolation error). Negative draws are clipped at
    0 N (forces are non-negative). Returns the layout of :func:`load_force_matching`.
    """
    h = np.asarray(h, float)
    if len(groups) != h.size:
        raise ValueError(f"groups: expected {h.size} labels (one per participant), "
                         f"got {len(groups)}")
    if len(condition_effects) != len(conditions):
        raise ValueError("condition_effects: expected one per condition")
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, float)
    hc = h[:, None] + np.asarray(condition_effects, float)[None, :]  # (participant, cond)
    if emulator is False:
        levels = np.linspace(0.0, 4.0, 33)
        g = force_grid(hc.ravel(), levels)
        mean = matched_table(g, targets).reshape(*hc.shape, targets.size)
    else:
        emu = emulator or default_emulator()[0]
        mean = np.asarray(emu(hc[..., None], targets[None, None, :]))
    rows = {"participant": [], "group": [], "condition": [], "target": [], "matched": []}
    width = len(str(h.size))
    for i in range(h.size):
        for c, cname in enumerate(conditions):
            for _ in range(repeats):
                for j, t in enumerate(targets):
                    rows["participant"].append(f"p{i + 1:0{width}d}")
                    rows["group"].append(groups[i])
                    rows["condition"].append(cname)
                    rows["target"].append(t)
                    rows["matched"].append(max(mean[i, c, j] + noise_sd * rng.normal(), 0.0))
    ds = xr.Dataset(
        {"target": ("trial", np.asarray(rows["target"]), {"units": "N"}),
         "matched": ("trial", np.asarray(rows["matched"]), {"units": "N"})},
        coords={k: ("trial", np.asarray(rows[k])) for k in ("participant", "group",
                                                             "condition")},
        attrs={"source": "synthetic", "noise_sd": noise_sd, "seed": seed})
    ds["h_true"] = ("participant_true", h)
    return ds
