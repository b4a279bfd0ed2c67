"""Hierarchical fits of any registered paradigm to behaviour (SPEC 7; issue 13).

:func:`fit` fits the free parameters of a :class:`cpsych.Paradigm` (chosen by name; the others
stay at a preset) to a tidy data set in the paradigm's :class:`~cpsych.paradigm.DataFormat`:

* **Prediction of a row.** The read-out named by the data format
  (:attr:`~cpsych.paradigm.DataFormat.predicted_by`) at the row's design value: the design
  column is mapped to a design option of the paradigm (``design_options``); with
  ``match`` set, the design value is what the ``match`` read-out must equal and the
  prediction is found by a monotone inversion along ``match_grid`` (force matching: the
  participant produces the force whose percept matches the external target). A mapped
  ``condition`` column makes the conditions designs (pursuit: the stimulus): each
  participant x condition cell is simulated in its own condition, with one emulator per
  condition, besides the condition effects ``beta`` on the parameters.
* **Emulator or simulator.** ``emulator="auto"`` runs the simulator once on a grid over the
  free parameters (:func:`cpsych.sweep.sweep`, ``knots`` per dimension, spanning the prior
  mean +- ``span`` prior SDs clipped to the parameter's bounds) and interpolates it
  (:class:`cpsych.fit.emulator.GridEmulator`: tensor-product cubic Hermite, C1, differentiable
  for NUTS). Its interpolation error is measured against direct simulation at random points
  inside the grid and reported with the fit. ``emulator=None`` runs the simulator inside the
  likelihood (cheap paradigms, MAP).
* **Hierarchical model** (non-centred), per free parameter ``k`` with prior ``N(m_k, s_k)``
  from the paradigm::

      mu[k]          ~ Normal(m_k, s_k)             reference-group mean
      delta[g, k]    ~ Normal(0, s_k)               group g minus the reference group
      sigma[k]       ~ HalfNormal(s_k / 2)          between-participant SD
      z[i, k]        ~ Normal(0, 1)
      theta[i, k]    = mu[k] + delta[g(i), k] + sigma[k] z[i, k]
      beta[c, k]     ~ Normal(0, s_k)               condition c minus the reference
      y              ~ Normal(pred(theta[i] + beta[c], x), sigma_obs)      (or Student-t)
      sigma_obs      ~ HalfNormal(SD of the response);   nu ~ Gamma(2, 0.1) (Student-t)

  ``group_effect=False`` drops ``delta`` (one mean shared by every group: the comparison
  model). Reference group and condition: the first sorted labels unless given.
* **Inference.** numpyro NUTS (``method="nuts"``, chains vectorised, tqdm bar) or an optax
  L-BFGS MAP with a Laplace approximation (``method="map"``: the prior median, then the
  best of 8x prior draws, as ``starts`` starts; the best kept as ``FitResult.mode``; the
  Hessian's eigenvalues floored at the smallest prior precision, with a warning).
* **Output.** :class:`FitResult` holding an :class:`arviz.InferenceData` (posterior,
  posterior_predictive, log_likelihood, observed_data, constant_data, sample_stats);
  :meth:`FitResult.save` writes ``fit.nc``, ``summary.csv`` (``az.summary``) and figures.
  Diagnostics warn with numbers: R-hat > 1.01, divergences, bulk ESS < 400, Pareto k > 0.7.

:func:`compare` ranks fits by PSIS-LOO (``az.compare``); :func:`synthetic_data` draws
participants from the *direct* simulator and :func:`recovery` fits them back.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..paradigm import Paradigm
from ..paradigm import get as get_paradigm
from .emulator import GridEmulator, grid_emulator

__all__ = ["FitWarning", "Coded", "Predictor", "Emulated", "FitResult", "code_data",
           "make_predictor", "default_knots", "build_emulator", "parameter_range", "describe",
           "hierarchical_model", "fit", "diagnose",
           "compare", "synthetic_data", "recovery", "load_result", "LIKELIHOODS", "METHODS"]

LIKELIHOODS = ("gaussian", "student")
METHODS = ("nuts", "map")
#: Thresholds of the diagnostics (warnings name the numbers).
R_HAT_MAX, ESS_MIN, PARETO_K_MAX = 1.01, 400, 0.7
GROUP_VARS = ("mu", "delta", "beta", "sigma", "sigma_obs", "nu")


class FitWarning(UserWarning):
    """A fit diagnostic out of range (R-hat, divergences, ESS, Pareto k, emulator error)."""


# ----------------------------------------------------------------------------- data coding
@dataclasses.dataclass(frozen=True)
class Coded:
    """A data set coded for the hierarchical model (reference group/condition first).

    Rows are grouped into *cells* (participant x condition): the prediction is computed once
    per cell at every design value ``x_values`` and each row picks its own. With several
    kinds of response (``kinds``: the data format's response first, then its
    ``other_responses`` found in the data), ``x_values`` concatenates each kind's design
    values (``kind_sizes`` of them), ``row_kind`` is each row's kind and ``response`` (the
    likelihood's site) is ``"response"``.
    """

    participants: tuple[str, ...]
    groups: tuple[str, ...]
    conditions: tuple[str, ...]
    group_of: np.ndarray  # (P,)
    cell_participant: np.ndarray  # (n_cells,)
    cell_condition: np.ndarray  # (n_cells,)
    row_cell: np.ndarray  # (n,)
    row_x: np.ndarray  # (n,) index into x_values
    x_values: np.ndarray  # (n_x,) design values (one dummy value without a design column)
    y: np.ndarray  # (n,)
    line: np.ndarray  # (n,) line of each row in its file (or its index)
    response: str
    design_column: str | None
    units: str
    kinds: tuple[str, ...] = ()
    row_kind: np.ndarray | None = None  # (n,) index into kinds
    kind_sizes: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def several(self) -> bool:
        """More than one kind of response (each with its own observation noise)."""
        return len(self.kinds) > 1

    def kind_rows(self) -> np.ndarray:
        """Each row's kind of response (its column name)."""
        if not self.several:
            return np.full(self.n, self.kinds[0] if self.kinds else self.response)
        return np.asarray(self.kinds)[self.row_kind]

    def x_by_kind(self) -> dict[str, np.ndarray]:
        """Each kind's design values (the slices of ``x_values``)."""
        kinds = self.kinds or (self.response,)
        sizes = self.kind_sizes or (self.x_values.size,)
        return dict(zip(kinds, _by_kind(self.x_values, sizes), strict=True))

    def design_values(self) -> np.ndarray | dict[str, np.ndarray]:
        """What :func:`make_predictor` takes: ``x_values``, or per kind with several."""
        return self.x_by_kind() if self.several else self.x_values

    @property
    def group_contrasts(self) -> list[str]:
        return [f"{g} - {self.groups[0]}" for g in self.groups[1:]]

    @property
    def condition_contrasts(self) -> list[str]:
        return [f"{c} - {self.conditions[0]}" for c in self.conditions[1:]]

    def rows(self, what: str) -> np.ndarray:
        """Per-row labels: ``participant``, ``group`` or ``condition``."""
        p = self.cell_participant[self.row_cell]
        if what == "participant":
            return np.asarray(self.participants)[p]
        if what == "group":
            return np.asarray(self.groups)[self.group_of[p]]
        return np.asarray(self.conditions)[self.cell_condition[self.row_cell]]


def _by_kind(a: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """The last axis of ``a`` (kinds of response concatenated) split into each kind's
    ``sizes`` values."""
    return np.split(a, np.cumsum(sizes)[:-1], axis=-1)


def _order(found, reference, what) -> tuple[str, ...]:
    found = sorted({str(f) for f in found})
    if reference is None:
        return tuple(found)
    if reference not in found:
        raise ValueError(f"reference_{what}: '{reference}' is not among the data's {what}s "
                         f"{found}")
    return (reference,) + tuple(f for f in found if f != reference)


def _column(ds: xr.Dataset, name: str, n: int, default: str | None = None) -> np.ndarray:
    if name in ds.variables:
        return np.asarray(ds[name].values).reshape(-1)
    if default is not None:
        return np.full(n, default)
    raise ValueError(f"data: column '{name}' missing (have {sorted(map(str, ds.variables))})")


def code_data(paradigm: Paradigm, data: xr.Dataset, reference_group: str | None = None,
              reference_condition: str | None = None) -> Coded:
    """Code a data set (one dimension, one entry per row; e.g. from
    ``cpsych.fit.data.read_data``) for :func:`hierarchical_model`. Missing ``group`` or
    ``condition`` columns mean one level, ``"all"``."""
    fmt = _format(paradigm)
    if not isinstance(data, xr.Dataset):
        raise TypeError(f"data: expected an xarray.Dataset (read the CSV with "
                        f"cpsych.fit.data.read_data), got {type(data).__name__}")
    if len(data.dims) != 1:
        raise ValueError(f"data: expected one dimension (one entry per row), got "
                         f"{dict(data.sizes)}")
    n = int(next(iter(data.sizes.values())))
    if n == 0:
        raise ValueError("data: no rows")
    part = _column(data, "participant", n).astype(str)
    grp = _column(data, "group", n, "all").astype(str)
    cond = _column(data, "condition", n, "all").astype(str)
    kinds = tuple(r for r in fmt.responses if r == fmt.response or r in data.variables)
    Y = np.stack([np.asarray(_column(data, r, n), float) for r in kinds], axis=1)
    line = np.asarray(data["line"].values if "line" in data.variables else np.arange(n) + 2)
    if len(kinds) > 1:
        given = np.isfinite(Y).sum(axis=1)
        if np.any(given != 1):
            r = int(np.flatnonzero(given != 1)[0])
            raise ValueError(f"data: line {int(line[r])} holds {int(given[r])} responses; each "
                             f"row holds exactly one of {', '.join(kinds)} (the others NaN)")
        if not np.isfinite(Y[:, 0]).any():
            raise ValueError(f"data: column '{fmt.response}' has no values; a data set needs "
                             f"some {fmt.response} rows besides {', '.join(kinds[1:])}")
        row_kind = np.argmax(np.isfinite(Y), axis=1)
        y = Y[np.arange(n), row_kind]
        used = [0] + [k for k in range(1, len(kinds)) if np.any(row_kind == k)]
        if len(used) < len(kinds):  # a response column without any value: not a kind here
            kinds = tuple(kinds[k] for k in used)
            row_kind = np.searchsorted(np.asarray(used), row_kind)
    else:
        row_kind, y = np.zeros(n, int), Y[:, 0]
        if not np.all(np.isfinite(y)):
            raise ValueError(f"data: column '{fmt.response}' has "
                             f"{int(np.sum(~np.isfinite(y)))} non-finite values (nothing is "
                             "dropped silently: remove those rows)")
    design_col = fmt.x_column
    x = (np.asarray(_column(data, design_col, n), float) if design_col is not None
         else np.zeros(n))
    pieces, row_x, sizes = [], np.zeros(n, int), []
    for k in range(len(kinds)):
        sel = row_kind == k
        vals, inv = np.unique(x[sel], return_inverse=True)
        if vals.size == 0:
            vals = np.zeros(1)
        row_x[sel] = inv.reshape(-1) + sum(sizes)
        pieces.append(vals)
        sizes.append(vals.size)
    x_values = np.concatenate(pieces)
    participants = tuple(sorted({str(p) for p in part}))
    groups = _order(grp, reference_group, "group")
    conditions = _order(cond, reference_condition, "condition")
    pidx = {p: i for i, p in enumerate(participants)}
    gidx = {g: i for i, g in enumerate(groups)}
    cidx = {c: i for i, c in enumerate(conditions)}
    group_of = np.full(len(participants), -1)
    for p, g in zip(part, grp, strict=True):
        if group_of[pidx[p]] not in (-1, gidx[g]):
            raise ValueError(f"data: participant '{p}' is in groups "
                             f"'{groups[group_of[pidx[p]]]}' and '{g}'")
        group_of[pidx[p]] = gidx[g]
    cells = {}
    row_cell = np.empty(n, int)
    for r, (p, c) in enumerate(zip(part, cond, strict=True)):
        row_cell[r] = cells.setdefault((pidx[p], cidx[c]), len(cells))
    cell_pc = np.asarray(list(cells), int).reshape(-1, 2)
    units = {str(data[r].attrs.get("units", fmt.columns.get(r, ""))) for r in kinds}
    several = len(kinds) > 1
    return Coded(participants, groups, conditions, group_of, cell_pc[:, 0], cell_pc[:, 1],
                 row_cell, np.asarray(row_x, int), np.asarray(x_values, float), y, line,
                 "response" if several else fmt.response, design_col,
                 units.pop() if len(units) == 1 else "mixed", kinds,
                 np.asarray(row_kind, int), tuple(sizes))


def _format(paradigm: Paradigm):
    if paradigm.data is None:
        raise ValueError(f"paradigm: {paradigm.name} has no data format (Paradigm.data); it "
                         "cannot be fitted to data")
    return paradigm.data


# ----------------------------------------------------------------------------- prediction
def _invert(match: jax.Array, readout: jax.Array, x: jax.Array) -> jax.Array:
    """``readout`` where ``match`` (a curve over the design grid) equals ``x``.

    The curve is made non-decreasing (running maximum, plus a 1e-9 ramp so knots never tie)
    and inverted by linear interpolation; beyond its ends it is extended along its overall
    chord, its slope bounded to [1/2, 3] (finite, non-zero gradients for NUTS; the read-out
    and the matched read-out share their units, e.g. forces, so a chord outside these bounds
    means a curve too flat to invert, as when an agent cannot feel its own force).
    """
    m = jax.lax.cummax(match) + 1e-9 * jnp.arange(match.shape[0])
    y = jnp.interp(x, m, readout)
    slope = jnp.clip((readout[-1] - readout[0]) / jnp.maximum(m[-1] - m[0], 1e-9), 0.5, 3.0)
    y = jnp.where(x > m[-1], readout[-1] + slope * (x - m[-1]), y)
    return jnp.where(x < m[0], readout[0] + slope * (x - m[0]), y)


@dataclasses.dataclass(frozen=True, eq=False)
class Predictor:
    """``predict(values) -> (n_x,)``: the paradigm's prediction of the response at each design
    value ``x_values``, from the free parameters' ``values`` (a dict of scalars, traceable);
    the other parameters at ``preset``; in design condition ``condition`` when the data
    format maps the condition column to a design option (``None`` otherwise). ``condition``
    a tuple of design conditions: ``(len(condition), n_x)``, one simulation of them all."""

    paradigm: Paradigm
    free: tuple[str, ...]
    preset: str
    x_values: np.ndarray
    condition: str | tuple[str, ...] | None = None
    #: several kinds of response: their names (the data format's response first) and how
    #: many of ``x_values`` (concatenated) each has; empty: the response alone
    kinds: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()

    def __call__(self, values: Mapping[str, jax.Array]) -> jax.Array:
        fmt = _format(self.paradigm)
        params = {k: jnp.asarray(v, float) for k, v in self.paradigm.params(self.preset).items()}
        params.update({k: jnp.asarray(v, float) for k, v in values.items()})
        design = dict(self.paradigm.design)
        several = isinstance(self.condition, tuple)
        if fmt.condition_option is not None:
            design[fmt.condition_option] = self.condition if several else (self.condition,)
        kinds = self.kinds or (fmt.response,)
        sizes = self.sizes or (len(self.x_values),)
        xs = _by_kind(np.asarray(self.x_values, float), sizes)
        design_col = fmt.x_column
        # every kind's design values set, then one simulation serves them all
        if design_col is not None:
            design[fmt.design_options[design_col]] = (
                tuple(fmt.match_grid) if fmt.match else tuple(float(v) for v in xs[0]))
        for kind, x in zip(kinds[1:], xs[1:], strict=True):
            option = fmt.other_responses[kind][1]
            if option is not None:
                design[option] = tuple(float(v) for v in x)
        out = self.paradigm.simulate(params, design, None)

        def readout(name):  # drop the one-condition axis of a condition design
            v = jnp.asarray(out[name], float)
            return v.reshape(v.shape[1:]) if fmt.condition_option and not several else v

        def constant(v, n):  # a read-out without the design's dimension, at every value
            return jnp.broadcast_to(v[..., None], (*v.shape, n))

        if design_col is None:
            parts = [constant(readout(fmt.predicted_by), xs[0].size)]
        elif fmt.match:
            x = jnp.asarray(xs[0])
            inv = jax.vmap(_invert, in_axes=(0, 0, None)) if several else _invert
            parts = [inv(readout(fmt.match), readout(fmt.predicted_by), x)]
        else:
            parts = [readout(fmt.predicted_by)]
        for kind, x in zip(kinds[1:], xs[1:], strict=True):
            name, option = fmt.other_responses[kind]
            parts.append(readout(name) if option is not None else constant(readout(name),
                                                                             x.size))
        for kind, part, x in zip(kinds, parts, xs, strict=True):
            if part.shape[-1] != x.size:
                raise ValueError(f"paradigm: {self.paradigm.name}'s read-out for '{kind}' has "
                                 f"{part.shape[-1]} values for {x.size} design values")
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    def batch(self) -> Callable[[jax.Array], jax.Array]:
        """Compiled ``theta (B, K) -> (B, n_x)``."""
        return jax.jit(jax.vmap(lambda th: self(dict(zip(self.free, th, strict=True)))))


def make_predictor(paradigm: Paradigm, free: Sequence[str], preset: str,
                   x_values: Sequence[float] | Mapping[str, Sequence[float]],
                   condition: str | Sequence[str] | None = None) -> Predictor:
    """The :class:`Predictor` of ``paradigm`` (checks the free names and the data format);
    ``x_values``: the response's design values, or ``{kind: values}`` for several kinds of
    response (the data format's response first, then some of its ``other_responses``);
    ``condition``: one design condition, several (a tuple: one prediction per condition),
    or ``None`` where conditions are not designs."""
    fmt = _format(paradigm)
    for name in free:
        paradigm.parameter(name)
    paradigm.params(preset)
    kinds: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    if isinstance(x_values, Mapping):
        kinds = tuple(x_values)
        if not kinds or kinds[0] != fmt.response or any(
                k not in fmt.other_responses for k in kinds[1:]):
            raise ValueError(f"x_values: expected {{kind: values}} with '{fmt.response}' first "
                             f"and then some of {list(fmt.other_responses)}, got {list(kinds)}")
        primary = fmt.design_options.get(fmt.x_column) if fmt.x_column else None
        taken = {primary}
        for k in kinds[1:]:
            name, option = fmt.other_responses[k]
            paradigm.readout(name)
            if option is None:
                continue
            if primary is None:
                raise ValueError(f"paradigm: {paradigm.name}'s response '{k}' runs over design "
                                 f"option '{option}', but its data format has no design "
                                 "column to give it values")
            if option in taken or option not in paradigm.design:
                raise ValueError(f"paradigm: {paradigm.name}'s response '{k}' runs over design "
                                 f"option '{option}', which must be a design option of its "
                                 f"own (not one of {sorted(str(t) for t in taken)})")
            taken.add(option)
        sizes = tuple(len(np.atleast_1d(x_values[k])) for k in kinds)
        x_values = np.concatenate([np.atleast_1d(np.asarray(x_values[k], float))
                                   for k in kinds])
        if len(kinds) == 1:
            kinds, sizes = (), ()
    for name in (fmt.predicted_by, *((fmt.match,) if fmt.match else ())):
        paradigm.readout(name)
    if fmt.match and not fmt.match_grid:
        raise ValueError(f"paradigm: {paradigm.name}'s data format names match='{fmt.match}' "
                         "without a match_grid")
    if isinstance(condition, list | tuple):
        condition = tuple(str(c) for c in condition)
    if (fmt.condition_option is None) != (condition is None):
        raise ValueError(f"condition: {paradigm.name}'s conditions are "
                         f"{'' if fmt.condition_option else 'not '}designs: "
                         f"{'name one' if fmt.condition_option else 'pass None'}")
    return Predictor(paradigm, tuple(free), preset, np.asarray(x_values, float), condition,
                     kinds, sizes)


@dataclasses.dataclass(frozen=True, eq=False)
class Emulated:
    """An emulator of a :class:`Predictor` over the free parameters, with its measured error.

    ``error`` holds ``max_abs`` and ``rms`` (response units) of emulated minus simulated
    predictions at ``n_check`` random points inside the grid, and ``build_s`` the seconds the
    grid took.
    """

    emulator: GridEmulator
    predictor: Predictor
    error: dict[str, float]

    def __call__(self, theta: jax.Array) -> jax.Array:
        return self.emulator(theta)


def parameter_range(paradigm: Paradigm, name: str,
                    span: float | Mapping[str, tuple[float, float]] = 1.75,
                    free: Sequence[str] = ()) -> tuple[float, float]:
    """The emulator's range for parameter ``name`` when ``free`` are the free parameters.

    ``span`` a number: the prior mean +- ``span`` prior SDs, clipped to the parameter's
    bounds and to the data format's regular range for it with these free parameters
    (:meth:`cpsych.paradigm.DataFormat.regular_range`). ``span`` a mapping
    ``{name: (low, high)}``: that range for the parameters it names (inside the bounds),
    the default (``span = 1.75``) for the others.
    """
    p = paradigm.parameter(name)
    (m, s), (lo, hi) = p.prior, p.bounds
    if isinstance(span, Mapping):
        for key in span:
            paradigm.parameter(key)
        if name in span:
            try:
                a, b = (float(v) for v in span[name])
            except (TypeError, ValueError):
                raise ValueError(f"span: expected {name}=(low, high), got {span[name]!r}"
                                 ) from None
            if not (math.isfinite(a) and math.isfinite(b) and lo <= a < b <= hi):
                raise ValueError(f"span: {name} range ({a:g}, {b:g}) must be finite with "
                                 f"low < high inside the bounds ({lo:g}, {hi:g})")
            return a, b
        span = 1.75
    span = float(span)
    if not (math.isfinite(span) and span > 0):
        raise ValueError(f"span: expected a finite number of prior SDs > 0, got {span:g}")
    if paradigm.data is not None:
        r_lo, r_hi = paradigm.data.regular_range(name, tuple(free) or (name,))
        lo, hi = max(lo, r_lo), min(hi, r_hi)
    a, b = max(m - span * s, lo), min(m + span * s, hi)
    if not a < b:
        raise ValueError(f"span: {name}'s prior mean +- {span:g} prior SDs ({m - span * s:g}, "
                         f"{m + span * s:g}) misses its usable range ({lo:g}, {hi:g})")
    return a, b


def default_knots(n_free: int) -> int:
    """Knots per dimension of the default emulator grid: 25, 11, 7, then 5."""
    return {1: 25, 2: 11, 3: 7}.get(n_free, 5)


def build_emulator(predictor: Predictor, knots: int | Sequence[int] | None = None,
                   span: float | Mapping[str, tuple[float, float]] = 1.75,
                   n_check: int = 12, seed: int = 0, progress: bool = True) -> Emulated:
    """Simulate ``predictor`` on a grid over its free parameters (:func:`cpsych.sweep.sweep`)
    and interpolate it (:func:`~cpsych.fit.emulator.grid_emulator`); measure the error."""
    from ..sweep import make_grid, sweep

    free = predictor.free
    knots = default_knots(len(free)) if knots is None else knots
    knots = [int(knots)] * len(free) if np.ndim(knots) == 0 else [int(k) for k in knots]
    if len(knots) != len(free) or min(knots) < 3:
        raise ValueError(f"knots: expected one integer >= 3 per free parameter {free}, got "
                         f"{knots}")
    axes = {name: np.linspace(*parameter_range(predictor.paradigm, name, span, free), k)
            for name, k in zip(free, knots, strict=True)}
    t0 = time.perf_counter()

    def simulate(params, key):
        return {"prediction": predictor(params)}

    ds = sweep(simulate, make_grid(axes), {"prediction": {"dims": ("x",)}}, progress=progress,
               description=f"cpsych.fit emulator of {predictor.paradigm.name}",
               coords={"x": (predictor.x_values if not predictor.kinds
                             else np.arange(predictor.x_values.size))})
    table = ds["prediction"].transpose(*free, "x").values.copy()
    n_filled = _fill_non_finite(table, len(free))
    if n_filled == table[..., 0].size:
        raise ValueError(f"emulator: the simulation of {predictor.paradigm.name} is non-finite "
                         f"at every knot of {axes}")
    emu = grid_emulator([axes[n] for n in free], table, free)
    build = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    lo = np.array([axes[n][0] for n in free])
    hi = np.array([axes[n][-1] for n in free])
    pts = rng.uniform(lo, hi, (n_check, len(free)))
    direct = np.asarray(predictor.batch()(jnp.asarray(pts)))
    diff = np.asarray(emu(jnp.asarray(pts))) - direct
    ok = np.isfinite(diff)
    error = {"max_abs": float(np.max(np.abs(diff[ok]))) if ok.any() else math.nan,
             "rms": float(np.sqrt(np.mean(diff[ok] ** 2))) if ok.any() else math.nan,
             "n_check": int(n_check), "build_s": build, "knots": ",".join(map(str, knots)),
             "n_points": int(np.prod(knots)), "n_filled": int(n_filled)}
    if predictor.kinds:  # each kind in its own units
        for kind, d_k, ok_k in zip(predictor.kinds, _by_kind(diff, predictor.sizes),
                                   _by_kind(ok, predictor.sizes), strict=True):
            d = d_k[ok_k]
            error[f"max_abs_{kind}"] = float(np.max(np.abs(d))) if d.size else math.nan
            error[f"rms_{kind}"] = float(np.sqrt(np.mean(d ** 2))) if d.size else math.nan
    if n_filled:
        warnings.warn(f"emulator: {n_filled} of {int(np.prod(knots))} knots had a non-finite "
                      "simulation (diverged); they take the value of the nearest finite knot",
                      FitWarning, stacklevel=2)
    return Emulated(emu, predictor, error)


def _fill_non_finite(table: np.ndarray, ndim: int) -> int:
    """Replace knots with any non-finite value by the nearest (in index space) finite knot."""
    shape = table.shape[:ndim]
    flat = table.reshape(int(np.prod(shape)), -1)
    bad = ~np.all(np.isfinite(flat), axis=1)
    if not bad.any() or bad.all():
        return int(bad.sum())
    idx = np.stack(np.unravel_index(np.arange(flat.shape[0]), shape), -1)
    good = np.flatnonzero(~bad)
    for i in np.flatnonzero(bad):
        j = good[np.argmin(np.sum((idx[good] - idx[i]) ** 2, axis=1))]
        flat[i] = flat[j]
    table[...] = flat.reshape(table.shape)
    return int(bad.sum())


def _cell_predictions(coded: Coded, designs: tuple[str | None, ...],
                      predictors: Mapping[str | None, Predictor],
                      emulated: Mapping[str | None, Emulated] | None
                      ) -> Callable[[jax.Array], jax.Array]:
    """``theta (cells, K) -> (cells, n_x)`` through the emulators or the direct simulator;
    with design conditions, each cell through its own condition's."""
    def one(c):
        if emulated is not None:
            return emulated[c].emulator
        p = predictors[c]
        return jax.vmap(lambda th: p(dict(zip(p.free, th, strict=True))))

    if designs == (None,):
        return one(None)
    if emulated is None:  # one simulation of every design condition per cell, then pick
        p_all = dataclasses.replace(predictors[designs[0]], condition=tuple(designs))
        every = jax.vmap(lambda th: p_all(dict(zip(p_all.free, th, strict=True))))
        which = jnp.asarray(coded.cell_condition)

        def predict_all(theta: jax.Array) -> jax.Array:
            return every(theta)[jnp.arange(theta.shape[0]), which]

        return predict_all
    parts = [(np.flatnonzero(coded.cell_condition == i), one(c))
             for i, c in enumerate(designs)]

    def predict_cells(theta: jax.Array) -> jax.Array:
        out = jnp.zeros((theta.shape[0], coded.x_values.size), theta.dtype)
        for idx, f in parts:
            if idx.size:
                out = out.at[idx].set(f(theta[idx]))
        return out

    return predict_cells


def _combined_error(parts: Sequence[Emulated]) -> dict[str, Any]:
    """One emulator's error record, or several (one per design condition) pooled."""
    if len(parts) == 1:
        return dict(parts[0].error)
    errs = [e.error for e in parts]
    per_kind = {k: (max if k.startswith("max_abs") else
                    lambda v: float(np.sqrt(np.mean(np.square(v)))))([e[k] for e in errs])
                for k in errs[0] if k.startswith(("max_abs_", "rms_"))}
    return {**per_kind, "max_abs": max(e["max_abs"] for e in errs),
            "rms": float(np.sqrt(np.mean([e["rms"] ** 2 for e in errs]))),
            "n_check": sum(e["n_check"] for e in errs),
            "build_s": sum(e["build_s"] for e in errs), "knots": errs[0]["knots"],
            "n_points": sum(e["n_points"] for e in errs),
            "n_filled": sum(e["n_filled"] for e in errs)}


def _obs_scale(coded: Coded) -> float | np.ndarray:
    """Scale of the ``sigma_obs`` prior: the SD of the responses (per kind with several;
    their mean magnitude, or 1, where the SD is 0)."""
    def one(y):
        if y.size > 1 and np.std(y) > 0:
            return float(np.std(y))
        return float(np.mean(np.abs(y))) or 1.0
    if not coded.several:
        return float(np.std(coded.y)) if coded.n > 1 and np.std(coded.y) > 0 else 1.0
    return np.array([one(coded.y[coded.row_kind == k]) for k in range(len(coded.kinds))])


# ----------------------------------------------------------------------------- the model
def hierarchical_model(coded: Coded, predict_cells: Callable[[jax.Array], jax.Array],
                       prior_loc: np.ndarray, prior_scale: np.ndarray,
                       obs_scale: float | np.ndarray,
                       group_effect: bool = True, likelihood: str = "gaussian",
                       y: jax.Array | None = None,
                       condition_effect: tuple[int, ...] | None = None) -> None:
    """numpyro model of the module docstring; ``predict_cells(theta (cells, K)) ->
    (cells, n_x)``; ``y=None`` samples the responses; ``condition_effect``: indices of the
    parameters that conditions shift (``None``: all); ``obs_scale``: one per kind of
    response with several (``sigma_obs`` then has one entry per kind)."""
    import numpyro
    import numpyro.distributions as dist

    K = prior_loc.size
    P, G, C = len(coded.participants), len(coded.groups), len(coded.conditions)
    loc, scale = jnp.asarray(prior_loc), jnp.asarray(prior_scale)
    mu = numpyro.sample("mu", dist.Normal(loc, scale).to_event(1))
    if group_effect and G > 1:
        delta = numpyro.sample("delta", dist.Normal(0.0, scale).expand([G - 1, K]).to_event(2))
        offsets = jnp.concatenate([jnp.zeros((1, K)), delta])
    else:
        offsets = jnp.zeros((G, K))
    numpyro.deterministic("group_mean", mu + offsets)
    sigma = numpyro.sample("sigma", dist.HalfNormal(scale / 2).to_event(1))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([P, K]).to_event(2))
    theta = numpyro.deterministic("theta", mu + offsets[coded.group_of] + sigma * z)
    if C > 1 and condition_effect is None:
        beta = numpyro.sample("beta", dist.Normal(0.0, scale).expand([C - 1, K]).to_event(2))
        cond = jnp.concatenate([jnp.zeros((1, K)), beta])
    elif C > 1 and condition_effect:
        idx = np.asarray(condition_effect, int)
        part = numpyro.sample("beta_free", dist.Normal(0.0, scale[idx]).expand(
            [C - 1, idx.size]).to_event(2))
        beta = numpyro.deterministic("beta", jnp.zeros((C - 1, K)).at[:, idx].set(part))
        cond = jnp.concatenate([jnp.zeros((1, K)), beta])
    else:
        cond = jnp.zeros((1, K))
    cells = theta[coded.cell_participant] + cond[coded.cell_condition]
    mean = predict_cells(cells)[coded.row_cell, coded.row_x]
    if coded.several:  # one observation noise per kind of response
        noise = numpyro.sample("sigma_obs", dist.HalfNormal(jnp.asarray(obs_scale)).to_event(1))
        sigma_obs = noise[jnp.asarray(coded.row_kind)]
    else:
        sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(obs_scale))
    if likelihood == "student":
        nu = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
        d = dist.StudentT(nu, mean, sigma_obs)
    else:
        d = dist.Normal(mean, sigma_obs)
    with numpyro.plate("obs", coded.n):
        numpyro.sample(coded.response, d, obs=y)


def _dims(coded: Coded) -> dict[str, list[str]]:
    return {"mu": ["parameter"], "sigma": ["parameter"],
            "delta": ["group_contrast", "parameter"], "group_mean": ["group", "parameter"],
            "z": ["participant", "parameter"], "theta": ["participant", "parameter"],
            "beta": ["condition_contrast", "parameter"],
            "beta_free": ["condition_contrast", "condition_parameter"], coded.response: ["obs"],
            **({"sigma_obs": ["response_kind"]} if coded.several else {})}


def _coords(coded: Coded, free, shifted=None) -> dict[str, Any]:
    return {"parameter": list(free), "group": list(coded.groups),
            "condition_parameter": list(free if shifted is None else shifted),
            "group_contrast": coded.group_contrasts,
            "condition_contrast": coded.condition_contrasts,
            "participant": list(coded.participants), "obs": np.arange(coded.n),
            **({"response_kind": list(coded.kinds)} if coded.several else {})}


# ----------------------------------------------------------------------------- results
@dataclasses.dataclass
class FitResult:
    """A fit: ``idata`` (:class:`arviz.InferenceData`), the diagnostics and their warnings.

    ``idata.posterior`` has ``mu``, ``sigma`` (parameter), ``delta`` (group_contrast,
    parameter), ``group_mean`` (group, parameter), ``theta``, ``z`` (participant, parameter),
    ``beta`` (condition_contrast, parameter), ``sigma_obs`` (and ``nu``);
    ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` have the response
    over ``obs``; ``constant_data`` the participant, group, condition, design value and file
    line of every row. Attributes of ``idata.posterior`` record the paradigm, the free
    parameters, the preset, the model options and the emulator's error.
    """

    idata: Any
    coded: Coded | None = None
    emulated: Emulated | None = None
    diagnostics: dict[str, float] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: design condition (``None`` when conditions are not designs) -> its emulator
    emulators: dict[str | None, Emulated] = dataclasses.field(default_factory=dict)
    #: ``method="map"``: the MAP point, every sampled and deterministic site (``theta``,
    #: ``beta``, ...) by name; ``None`` for NUTS and for a fit read back from disk
    mode: dict[str, np.ndarray] | None = None

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.idata.posterior.attrs)

    @property
    def free(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.idata.posterior["parameter"].values)

    def summary(self, **kw) -> Any:
        """``az.summary`` of the group-level parameters and the participants' ``theta``."""
        import arviz as az

        names = [v for v in (*GROUP_VARS, "theta") if v in self.idata.posterior]
        return az.summary(self.idata, var_names=names, **kw)

    def save(self, out: str | Path, figures: bool = True) -> dict[str, Path]:
        """Write ``out/fit.nc`` (netCDF, ``arviz.from_netcdf``), ``out/summary.csv`` and the
        figures ``out/{traces,groups,predictive}.{pdf,png}`` (and ``predictive_KIND`` for
        each further kind of response)."""
        from ..results import atomic_path

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        with atomic_path(out / "fit.nc") as tmp:
            self.idata.to_netcdf(str(tmp), engine="netcdf4")
        paths["fit"] = out / "fit.nc"
        with atomic_path(out / "summary.csv") as tmp:
            self.summary().to_csv(tmp, index_label="variable")
        paths["summary"] = out / "summary.csv"
        if figures:
            from ..plotting import save_figure
            from . import figures as F

            for name, make in (("traces", F.plot_traces), ("groups", F.plot_groups),
                               ("predictive", F.plot_predictive)):
                paths[name] = save_figure(make(self.idata), out / name)[1]
            kinds = [k for k in str(self.attrs.get("responses", "")).split(",") if k]
            for kind in kinds[1:]:  # one predictive figure per further kind of response
                paths[f"predictive_{kind}"] = save_figure(
                    F.plot_predictive(self.idata, kind=kind), out / f"predictive_{kind}")[1]
        return paths


def load_result(path: str | Path) -> FitResult:
    """Read a fit written by :meth:`FitResult.save` (a directory or its ``fit.nc``)."""
    import arviz as az

    path = Path(path)
    if path.is_dir():
        path = path / "fit.nc"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such fit (expected a directory written by "
                                "cpsych fit, holding fit.nc)")
    idata = az.from_netcdf(str(path), engine="netcdf4")
    a = idata.posterior.attrs
    diag = {k: float(a[k]) for k in ("max_r_hat", "min_ess_bulk", "divergences",
                                     "max_pareto_k") if k in a}
    return FitResult(idata, diagnostics=diag,
                     warnings=[w for w in str(a.get("warnings", "")).split("\n") if w])


def diagnose(idata, emulator_error: float | Sequence[float | None] | None = None,
             noise: float | Sequence[float] | None = None,
             kinds: Sequence[str] = ()) -> tuple[dict[str, float], list[str]]:
    """R-hat, bulk ESS, divergences and Pareto k of a posterior, with the warnings (numbers
    included) for R-hat > 1.01, any divergence, bulk ESS < 400, Pareto k > 0.7 and an
    emulator error above half the observation noise (per kind of response, ``kinds``, when
    ``emulator_error`` and ``noise`` are sequences)."""
    import arviz as az

    post = idata.posterior
    names = [v for v in (*GROUP_VARS, "theta") if v in post]
    out: dict[str, float] = {}
    msgs = []
    if post.sizes["chain"] > 1:
        rhat = az.rhat(idata, var_names=names)
        ess = az.ess(idata, var_names=names, method="bulk")
        worst = max(names, key=lambda v: float(rhat[v].max()))
        out["max_r_hat"] = float(rhat[worst].max())
        low = min(names, key=lambda v: float(ess[v].min()))
        out["min_ess_bulk"] = float(ess[low].min())
        if out["max_r_hat"] > R_HAT_MAX:
            msgs.append(f"R-hat {out['max_r_hat']:.3f} > {R_HAT_MAX} (worst: {worst}); the "
                        "chains disagree: run longer or check the data")
        if out["min_ess_bulk"] < ESS_MIN:
            msgs.append(f"bulk ESS {out['min_ess_bulk']:.0f} < {ESS_MIN} (lowest: {low}); "
                        "draw more")
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        out["divergences"] = float(idata.sample_stats["diverging"].sum())
        if out["divergences"] > 0:
            msgs.append(f"{out['divergences']:.0f} divergent transitions; raise target_accept "
                        "or reparameterise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata, pointwise=True)
    k = np.asarray(loo.pareto_k)
    out["max_pareto_k"] = float(np.nanmax(k))
    out["elpd_loo"] = float(loo.elpd_loo)
    out["n_pareto_k_bad"] = float(np.sum(k > PARETO_K_MAX))
    if out["n_pareto_k_bad"]:
        msgs.append(f"Pareto k > {PARETO_K_MAX} for {out['n_pareto_k_bad']:.0f} of {k.size} "
                    f"observations (max {out['max_pareto_k']:.2f}): PSIS-LOO is unreliable "
                    "there")
    if emulator_error is None or noise is None:
        return out, msgs
    several = np.ndim(noise) > 0
    errs = list(emulator_error) if several else [emulator_error]
    noises = list(np.atleast_1d(noise))
    for i, (e, s) in enumerate(zip(errs, noises, strict=True)):
        if e is not None and e > 0.5 * s:
            what = f" of {kinds[i]}" if several and i < len(kinds) else ""
            msgs.append(f"emulator error{what} {e:.3g} exceeds half the observation noise "
                        f"{s:.3g}: use more knots or emulator=None")
    return out, msgs


def _nuts(model, kwargs, chains, warmup, draws, seed, target_accept, progress):
    from numpyro.infer import MCMC, NUTS, init_to_median

    kern = NUTS(model, target_accept_prob=target_accept, init_strategy=init_to_median())
    mcmc = MCMC(kern, num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="vectorized", progress_bar=progress)
    mcmc.run(jax.random.PRNGKey(seed), **kwargs, extra_fields=("diverging", "num_steps"))
    return mcmc


def _map_starts(model, kwargs, info, seed, starts, screen):
    """Unconstrained starting points: the prior median, then the ``starts - 1`` lowest-
    potential of ``screen * (starts - 1)`` draws from the prior (a dynamic model runs away
    for many prior draws, where L-BFGS makes no progress)."""
    from numpyro.infer import Predictive
    from numpyro.infer.util import unconstrain_fn

    z0 = info.param_info.z
    if starts == 1:
        return [z0]
    n = screen * (starts - 1)
    # compiled, not op by op: both run the whole model (its simulator included), which XLA
    # then prunes to the prior; evaluated eagerly under vmap the pursuit simulator dispatched
    # thousands of tiny programs and once stalled for good on a futex inside XLA
    prior = jax.jit(lambda key: Predictive(model, num_samples=n, return_sites=list(z0))(
        key, **{**kwargs, "y": None}))(jax.random.PRNGKey(seed + 1))
    zs = jax.jit(jax.vmap(lambda p: unconstrain_fn(model, (), kwargs, p)))(prior)
    values = np.asarray(jax.jit(jax.vmap(info.potential_fn))(zs))
    order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")
    return [z0] + [jax.tree.map(lambda a, i=i: a[i], zs) for i in order[:starts - 1]]


def _map_laplace(model, kwargs, draws, seed, starts, steps, screen=8, progress=False,
                 floor=1.0):
    """Best-of-``starts`` L-BFGS MAP in numpyro's unconstrained space (:func:`_map_starts`),
    then Laplace draws. The Hessian's eigenvalues are floored at ``floor`` (the smallest
    prior precision): a direction the data leave flat, or curved downwards at a saddle or a
    kink of a piecewise-smooth model, gets at most prior-sized spread."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer import init_to_median
    from numpyro.infer.util import initialize_model
    from tqdm.auto import tqdm

    from ..optimise import lbfgs

    info = initialize_model(jax.random.PRNGKey(seed), model, model_kwargs=kwargs,
                            init_strategy=init_to_median())
    pot = info.potential_fn
    best, losses = None, []
    bar = tqdm(_map_starts(model, kwargs, info, seed, starts, screen), desc="cpsych.fit MAP",
               unit="start", disable=not progress)
    for z in bar:
        try:
            res = lbfgs(pot, z, max_iter=steps, tol=1e-6, non_finite="stop")
        except FloatingPointError:
            losses.append(math.inf)
            continue
        value = float(pot(res.x))
        losses.append(value)
        bar.set_postfix_str(f"-log p {value:.4g}")
        if best is None or value < best[0]:
            best = (value, res)
    if best is None:
        raise FloatingPointError("map: every start diverged (non-finite objective)")
    value, res = best
    flat, unravel = ravel_pytree(res.x)
    hess = jax.jit(jax.hessian(lambda f: info.potential_fn(unravel(f))))(flat)
    hess = 0.5 * (hess + hess.T)
    w, V = np.linalg.eigh(np.asarray(hess))
    n_floored = int(np.sum(w < floor))
    w = np.maximum(w, floor)
    cov_sqrt = V / np.sqrt(w)
    eps = np.random.default_rng(seed).standard_normal((draws, flat.size))
    zs = np.asarray(flat)[None] + eps @ cov_sqrt.T
    constrain = jax.jit(jax.vmap(lambda f: info.postprocess_fn(unravel(f))))
    samples = constrain(jnp.asarray(np.vstack([flat[None], zs])))
    mode = {k: v[0] for k, v in samples.items()}
    samples = {k: v[1:] for k, v in samples.items()}
    return ({k: np.asarray(v) for k, v in samples.items()},
            {k: np.asarray(v) for k, v in mode.items()}, losses, bool(res.converged),
            n_floored)


def fit(paradigm: Paradigm | str, data: xr.Dataset, free: Sequence[str] = ("h",), *,
        preset: str = "control", group_effect: bool = True, likelihood: str = "gaussian",
        emulator: str | Emulated | None = "auto", knots: int | Sequence[int] | None = None,
        span: float | Mapping[str, tuple[float, float]] = 1.75, method: str = "nuts",
        chains: int = 4, warmup: int = 500,
        draws: int = 1000, seed: int = 0, starts: int = 4, steps: int = 500,
        target_accept: float = 0.9, reference_group: str | None = None,
        reference_condition: str | None = None, condition_effect: bool | Sequence[str] = True,
        progress: bool = True, verbose: bool = True) -> FitResult:
    """Fit the ``free`` parameters of ``paradigm`` to ``data`` (see the module docstring).

    Parameters
    ----------
    paradigm : a :class:`cpsych.Paradigm` or its registered name.
    data : one row per observation, in the paradigm's data format (e.g.
        ``cpsych.fit.data.read_data(path, paradigm)``).
    free : names of the fitted parameters; the others stay at ``preset``.
    group_effect : ``False``: one mean shared by every group (the comparison model).
    condition_effect : ``True`` (every free parameter shifts with the condition), ``False``
        (none: conditions share the parameters) or the names of the free parameters that
        shift (e.g. which one carries a stimulus effect).
    likelihood : ``"gaussian"`` or ``"student"`` (Student-t: robust to outliers).
    emulator : ``"auto"`` (build one with :func:`build_emulator`), an :class:`Emulated`
        built before (same paradigm, free parameters, preset and design values), or
        ``None`` (simulate inside the likelihood).
    knots, span : emulator grid: knots per free parameter (default :func:`default_knots`),
        prior SDs either side of the prior mean (clipped to the bounds), or explicit ranges
        ``{name: (low, high)}`` (:func:`parameter_range`).
    method : ``"nuts"`` (posterior) or ``"map"`` (optax L-BFGS MAP of ``steps`` iterations
        from ``starts`` points: the prior median, then the best of 8x prior draws; the best
        kept, and ``draws`` Laplace draws as one chain, the Hessian's eigenvalues floored at
        the smallest prior precision; the MAP point is ``FitResult.mode``).
    progress : tqdm bars (emulator grid, NUTS, MAP starts). ``verbose`` prints the
        diagnostics.

    Returns
    -------
    FitResult. Diagnostics out of range also raise a :class:`FitWarning` (with numbers).
    """
    import arviz as az
    from numpyro.infer import Predictive
    from numpyro.infer import log_likelihood as numpyro_loglik

    from .. import validation as val

    paradigm = get_paradigm(paradigm) if isinstance(paradigm, str) else paradigm
    val.check_type(paradigm, "paradigm", Paradigm, "a cpsych.Paradigm or a registered name")
    free = tuple(free.split(",")) if isinstance(free, str) else tuple(free)
    if not free or len(set(free)) != len(free):
        raise ValueError(f"free: expected distinct parameter names, got {free}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    val.check_int(seed, "seed", minimum=0)
    for name, v, lo in (("chains", chains, 1), ("warmup", warmup, 1), ("draws", draws, 4),
                        ("starts", starts, 1), ("steps", steps, 1)):
        val.check_int(v, name, minimum=lo)
    val.check_bool(group_effect, "group_effect")
    if isinstance(condition_effect, bool):
        shifted = free if condition_effect else ()
    else:
        shifted = ((condition_effect,) if isinstance(condition_effect, str)
                   else tuple(condition_effect))
        unknown = [n for n in shifted if n not in free]
        if unknown or len(set(shifted)) != len(shifted):
            raise ValueError(f"condition_effect: expected True, False or distinct names among "
                             f"the free parameters {free}, got {condition_effect!r}")
    effect_idx = None if shifted == free else tuple(free.index(n) for n in shifted)
    coded = code_data(paradigm, data, reference_group, reference_condition)
    t0 = time.perf_counter()
    # one predictor (and emulator) per design condition when conditions are designs
    designs = coded.conditions if _format(paradigm).condition_option else (None,)
    predictors = {c: make_predictor(paradigm, free, preset, coded.design_values(), c)
                  for c in designs}
    emulated: dict[str | None, Emulated] | None = None
    if isinstance(emulator, Emulated):
        e = emulator.predictor
        if (e.paradigm is not paradigm or e.free != free or e.preset != preset
                or not np.array_equal(e.x_values, coded.x_values)
                or e.kinds != (coded.kinds if coded.several else ()) or designs != (None,)):
            raise ValueError("emulator: built for another paradigm, free parameters, preset or "
                             "set of design values (or the conditions are designs, one "
                             "emulator each); pass emulator='auto' to build one")
        emulated = {None: emulator}
    elif emulator == "auto":
        emulated = {c: build_emulator(predictors[c], knots, span, seed=seed, progress=progress)
                    for c in designs}
    elif emulator is not None:
        raise ValueError(f"emulator: expected 'auto', None or an Emulated, got {emulator!r}")
    predict_cells = _cell_predictions(coded, designs, predictors, emulated)
    params = [paradigm.parameter(n) for n in free]
    obs_scale = _obs_scale(coded)
    kwargs = dict(coded=coded, predict_cells=predict_cells,
                  prior_loc=np.array([p.prior[0] for p in params]),
                  prior_scale=np.array([p.prior[1] for p in params]), obs_scale=obs_scale,
                  group_effect=group_effect, likelihood=likelihood,
                  condition_effect=effect_idx)
    y = jnp.asarray(coded.y)
    dims, coords = _dims(coded), _coords(coded, free, shifted)
    t1 = time.perf_counter()
    extra: dict[str, Any] = {}
    mode = None
    if method == "nuts":
        mcmc = _nuts(hierarchical_model, {**kwargs, "y": y}, chains, warmup, draws, seed,
                     target_accept, progress)
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=False).items()}
        n_chain = chains
    else:
        floor = min(1.0, float(np.min(1.0 / kwargs["prior_scale"] ** 2)))
        samples, mode, losses, converged, n_floored = _map_laplace(
            hierarchical_model, {**kwargs, "y": y}, draws, seed, starts, steps,
            progress=progress, floor=floor)
        n_chain = 1
        extra = {"map_losses": ",".join(f"{v:.6g}" for v in losses),
                 "map_converged": int(converged), "laplace_floored": n_floored}
    seconds = time.perf_counter() - t1
    n_draw = next(iter(samples.values())).shape[0] // n_chain
    # compiled: op-by-op evaluation of a simulator over the draws is slow
    pp = jax.jit(lambda smp, key: Predictive(
        hierarchical_model, posterior_samples=smp, return_sites=[coded.response])(
        key, **kwargs))(samples, jax.random.PRNGKey(seed + 1))
    ll = jax.jit(lambda smp: numpyro_loglik(hierarchical_model, smp, **kwargs, y=y))(samples)

    def chained(d):
        return {k: np.asarray(v).reshape(n_chain, n_draw, *np.shape(v)[1:])
                for k, v in d.items()}

    keep_dims = {k: v for k, v in dims.items() if k in samples or k == coded.response}
    groups = dict(posterior=chained(samples), posterior_predictive=chained(pp),
                  log_likelihood=chained(ll), observed_data={coded.response: coded.y},
                  constant_data={"participant_of_obs": coded.rows("participant"),
                                 "group_of_obs": coded.rows("group"),
                                 "condition_of_obs": coded.rows("condition"),
                                 "x_of_obs": coded.x_values[coded.row_x],
                                 "line_of_obs": coded.line,
                                 **({"kind_of_obs": coded.kind_rows()} if coded.several
                                    else {}),
                                 "group_of_participant":
                                     np.asarray(coded.groups)[coded.group_of]})
    if method == "nuts":
        ex = mcmc.get_extra_fields(group_by_chain=True)
        groups["sample_stats"] = {"diverging": np.asarray(ex["diverging"], bool),
                                  "n_steps": np.asarray(ex["num_steps"], int)}
    cdims = {k: ["obs"] for k in groups["constant_data"]}
    cdims["group_of_participant"] = ["participant"]
    idata = az.from_dict(**groups, coords=coords, dims={**keep_dims, **cdims})
    err = _combined_error(list(emulated.values())) if emulated is not None else {}
    if coded.several:  # the emulator's error against each kind's own noise
        noise = np.median(samples["sigma_obs"], axis=0)
        diag, msgs = diagnose(idata, [err.get(f"max_abs_{k}") for k in coded.kinds] if err
                              else None, noise, coded.kinds)
    else:
        diag, msgs = diagnose(idata, err.get("max_abs"),
                              float(np.median(samples["sigma_obs"])))
    if extra.get("laplace_floored"):
        msgs.append(f"Laplace: {extra['laplace_floored']} Hessian eigenvalues at the MAP were "
                    f"below the smallest prior precision {floor:.3g} (a saddle, a kink or no "
                    "convergence) and were floored: the draws are prior-sized there")
    attrs = {"paradigm": paradigm.name, "free": ",".join(free), "preset": preset,
             "group_effect": int(group_effect), "likelihood": likelihood, "method": method,
             "condition_effect": ",".join(shifted),
             "response": coded.response, "response_units": coded.units,
             **({"responses": ",".join(coded.kinds),
                 "responses_units": ",".join(paradigm.data.columns.get(k, "")
                                             for k in coded.kinds)} if coded.several else {}),
             "design_column": str(coded.design_column or ""),
             "reference_group": str(coded.groups[0]),
             "reference_condition": str(coded.conditions[0]), "sampling_s": seconds,
             "emulator": "grid" if emulated is not None else "direct simulator",
             "setup_s": t1 - t0, **{f"emulator_{k}": v for k, v in err.items()},
             **diag, **extra, "warnings": "\n".join(msgs)}
    if emulated is not None:
        knots = next(iter(emulated.values())).emulator.knots
        attrs["emulator_" + "lows"] = ",".join(f"{k[0]:g}" for k in knots)
        attrs["emulator_" + "highs"] = ",".join(f"{k[-1]:g}" for k in knots)
    idata.posterior.attrs.update(attrs)
    result = FitResult(idata, coded, None if emulated is None else emulated.get(None), diag,
                       msgs, emulators=emulated or {}, mode=mode)
    if verbose:
        print(describe(result))
    for m in msgs:
        warnings.warn(f"fit: {m}", FitWarning, stacklevel=2)
    return result


def describe(result: FitResult) -> str:
    """A few lines: the model, the emulator's error, timings and diagnostics."""
    a = result.attrs
    lines = [f"fit {a['paradigm']}: free {a['free']} ({a['method']}, {a['likelihood']}, "
             f"group effect {'on' if a['group_effect'] else 'off'})"]
    if a.get("emulator") == "grid":
        lines.append(f"  emulator: {a['emulator_n_points']} simulations "
                     f"(knots {a['emulator_knots']}) in {a['emulator_build_s']:.1f} s; error vs "
                     f"simulator at {a['emulator_n_check']} random points: max "
                     f"{a['emulator_max_abs']:.3g}, RMS {a['emulator_rms']:.3g} "
                     f"{a['response_units']}")
        if a.get("responses"):
            units = str(a.get("responses_units", "")).split(",")
            lines.append("  by response: " + "; ".join(
                f"{k} max {a[f'emulator_max_abs_{k}']:.3g}, RMS {a[f'emulator_rms_{k}']:.3g} "
                f"{u}" for k, u in zip(str(a["responses"]).split(","), units, strict=False)
                if f"emulator_max_abs_{k}" in a))
    else:
        lines.append("  predictions: direct simulation (no emulator)")
    d = result.diagnostics
    parts = [f"{a['sampling_s']:.1f} s"]
    if "max_r_hat" in d:
        parts.append(f"max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}")
    if "divergences" in d:
        parts.append(f"{d['divergences']:.0f} divergences")
    parts.append(f"elpd_loo {d['elpd_loo']:.1f}, max Pareto k {d['max_pareto_k']:.2f}")
    lines.append("  " + "; ".join(parts))
    lines += [f"  WARNING: {m}" for m in result.warnings]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- comparison
def compare(fits: Mapping[str, Any]) -> Any:
    """PSIS-LOO comparison (``az.compare``) of fits to the same data, best first.

    ``fits`` maps names to :class:`FitResult`, ``InferenceData`` or fit directories. Returns
    a ``pandas.DataFrame`` whose first column ``model`` is the name, then ``elpd_loo``,
    ``se``, ``elpd_diff``, ``dse``, ``weight``, ``p_loo``, ``rank``, ``warning`` and
    ``scale``.
    """
    import arviz as az

    if len(fits) < 2:
        raise ValueError(f"fits: compare needs at least two fits, got {len(fits)}")
    loaded = {}
    n_obs = {}
    for name, f in fits.items():
        if isinstance(f, str | Path):
            f = load_result(f)
        idata = f.idata if isinstance(f, FitResult) else f
        loaded[str(name)] = idata
        n_obs[str(name)] = int(idata.observed_data.sizes["obs"])
    if len(set(n_obs.values())) != 1:
        raise ValueError(f"fits: they were fitted to different data (observations: {n_obs}); "
                         "LOO compares fits of the same data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(loaded, ic="loo")
    table = table.reset_index(names="model")
    cols = ["model", "elpd_loo", "se", "elpd_diff", "dse", "weight", "p_loo", "rank",
            "warning"]
    return table[[c for c in cols if c in table.columns]
                 + [c for c in table.columns if c not in cols]]


# ----------------------------------------------------------------------------- synthetic
def synthetic_data(paradigm: Paradigm | str, free: Sequence[str], theta: np.ndarray,
                   groups: Sequence[str] | None = None, x_values: Sequence[float] | None = None,
                   noise_sd: float | Mapping[str, float] = 0.1, repeats: int = 1,
                   preset: str = "control", seed: int = 0,
                   clip: tuple[float, float] | None = None,
                   responses: Mapping[str, Sequence[float]] | None = None) -> xr.Dataset:
    """Synthetic participants from the *direct* simulator (not an emulator).

    ``theta`` is ``(P, K)``: participant ``i``'s values of the ``free`` parameters. Each
    participant responds ``repeats`` times at every design value ``x_values`` (default: the
    paradigm's default design), with Gaussian noise of SD ``noise_sd`` (response units),
    clipped to ``clip`` (default: the response's plausible range). ``responses``: further
    kinds of response of the data format (``other_responses``) and their design values
    (e.g. ``{"uncertainty": (1.0,)}``), each also ``repeats`` times, in rows of their own;
    ``noise_sd`` is then ``{kind: SD}`` for every kind, the format's response included
    (clipped to each kind's plausible range). Returns the layout of :func:`code_data`
    (dimension ``obs``) with ``theta_true`` (participant, parameter).
    """
    paradigm = get_paradigm(paradigm) if isinstance(paradigm, str) else paradigm
    fmt = _format(paradigm)
    theta = np.atleast_2d(np.asarray(theta, float))
    P = theta.shape[0]
    groups = list(groups) if groups is not None else ["all"] * P
    if len(groups) != P:
        raise ValueError(f"groups: expected {P} labels (one per participant), got {len(groups)}")
    design_col = fmt.x_column
    if x_values is None:
        x_values = (np.asarray(paradigm.design[fmt.design_options[design_col]], float)
                    if design_col else np.zeros(1))
    x_values = np.asarray(x_values, float)
    kinds = (fmt.response, *(responses or {}))
    unknown = [k for k in kinds[1:] if k not in fmt.other_responses]
    if unknown:
        raise ValueError(f"responses: '{unknown[0]}' is not a further kind of response of "
                         f"{paradigm.name}; choose from {list(fmt.other_responses)}")
    if isinstance(noise_sd, Mapping) and not responses:
        raise ValueError(f"noise_sd: a mapping needs responses=; give one number for "
                         f"'{fmt.response}' alone")
    spec: Any = x_values
    if responses:
        spec = {fmt.response: x_values, **{k: np.atleast_1d(np.asarray(v, float))
                                            for k, v in responses.items()}}
        if not isinstance(noise_sd, Mapping) or set(noise_sd) != set(kinds):
            raise ValueError(f"noise_sd: with several kinds of response give one SD each, "
                             f"{{{', '.join(repr(k) for k in kinds)}}}, got {noise_sd!r}")
    noise = ({k: float(noise_sd[k]) for k in kinds} if isinstance(noise_sd, Mapping)
             else {fmt.response: float(noise_sd)})
    designs = (tuple(paradigm.design[fmt.condition_option]) if fmt.condition_option
               else (None,))
    pred = {c: np.asarray(make_predictor(paradigm, free, preset, spec, c).batch()(
        jnp.asarray(theta))) for c in designs}
    xs = spec if isinstance(spec, dict) else {fmt.response: x_values}
    by_kind = {c: dict(zip(kinds, _by_kind(p, [xs[k].size for k in kinds]), strict=True))
               for c, p in pred.items()}
    rng = np.random.default_rng(seed)
    clips = {k: (clip if clip and k == fmt.response
                 else fmt.plausible.get(k, (-np.inf, np.inf))) for k in kinds}
    rows: dict[str, list] = {"participant": [], "group": [], **{k: [] for k in kinds}}
    if design_col:
        rows[design_col] = []
    if fmt.condition_option:
        rows["condition"] = []
    width = len(str(P))
    for i in range(P):
        for c in designs:
            for kind in kinds:
                for _ in range(repeats):
                    for j, x in enumerate(xs[kind]):
                        rows["participant"].append(f"p{i + 1:0{width}d}")
                        rows["group"].append(groups[i])
                        if design_col:
                            rows[design_col].append(x)
                        if c is not None:
                            rows["condition"].append(c)
                        for k in kinds:
                            rows[k].append(float(np.clip(
                                by_kind[c][kind][i, j] + noise[kind] * rng.normal(),
                                *clips[kind])) if k == kind else math.nan)
    ds = xr.Dataset({k: ("obs", np.asarray(v)) for k, v in rows.items()},
                    attrs={"source": "synthetic (direct simulator)",
                           "noise_sd": (noise[fmt.response] if len(kinds) == 1
                                        else ",".join(f"{k}={noise[k]:g}" for k in kinds)),
                           "seed": seed, "paradigm": paradigm.name})
    for k in kinds:
        ds[k].attrs["units"] = fmt.columns.get(k, "")
    ds["theta_true"] = (("participant_true", "parameter"), theta)
    ds = ds.assign_coords(parameter=list(free))
    return ds


def recovery(paradigm: Paradigm | str, free: Sequence[str], n_participants: int = 20, *,
             spread: float = 1.0, noise_sd: float | Mapping[str, float] = 0.1,
             repeats: int = 2, seed: int = 0, preset: str = "control",
             responses: Mapping[str, Sequence[float]] | None = None,
             **fit_kw: Any) -> tuple[xr.Dataset, FitResult]:
    """Parameter recovery: participants drawn from the direct simulator, fitted back.

    True values: uniform on the prior mean +- ``spread`` prior SDs (clipped to the bounds),
    independently per parameter. Returns a dataset with, per participant and parameter, the
    truth, the posterior mean and 90 % interval; per parameter ``r`` (true vs posterior mean),
    ``bias``, ``coverage90``; ``estimate_corr`` (parameter x parameter2: correlation of the
    posterior means across participants) and ``posterior_corr`` (the mean over participants
    of the posterior correlation between parameters: near +-1 means not separately
    identifiable); and the fit. The synthetic participants have no condition effects, so the
    fit has none either (the generating model) unless ``condition_effect`` is given.
    """
    paradigm = get_paradigm(paradigm) if isinstance(paradigm, str) else paradigm
    free = tuple(free)
    fit_kw.setdefault("condition_effect", False)
    rng = np.random.default_rng(seed)
    lo_hi = np.array([parameter_range(paradigm, n, spread, free) for n in free])
    truth = rng.uniform(lo_hi[:, 0], lo_hi[:, 1], (n_participants, len(free)))
    t0 = time.perf_counter()
    data = synthetic_data(paradigm, free, truth, noise_sd=noise_sd, repeats=repeats,
                          preset=preset, seed=seed + 1, responses=responses)
    t_sim = time.perf_counter() - t0
    res = fit(paradigm, data.drop_vars(["theta_true", "parameter"]), free, preset=preset,
              seed=seed, **fit_kw)
    th = res.idata.posterior["theta"]  # chain, draw, participant, parameter
    flat = th.stack(sample=("chain", "draw")).transpose("sample", "participant", "parameter")
    x = flat.values
    est = x.mean(0)
    q05, q95 = np.quantile(x, [0.05, 0.95], axis=0)
    K = len(free)
    r = [float(np.corrcoef(truth[:, k], est[:, k])[0, 1]) for k in range(K)]
    bias = (est - truth).mean(0)
    cover = ((truth >= q05) & (truth <= q95)).mean(0)
    est_corr = np.corrcoef(est.T).reshape(K, K) if K > 1 else np.ones((1, 1))
    post_corr = np.ones((K, K))
    if K > 1:
        post_corr = np.mean([np.corrcoef(x[:, i, :].T) for i in range(x.shape[1])], axis=0)
    participants = [str(p) for p in th["participant"].values]
    out = xr.Dataset(
        {"true": (("participant", "parameter"), truth),
         "mean": (("participant", "parameter"), est),
         "q05": (("participant", "parameter"), q05), "q95": (("participant", "parameter"), q95),
         "r": ("parameter", np.asarray(r)), "bias": ("parameter", bias),
         "coverage90": ("parameter", cover),
         "estimate_corr": (("parameter", "parameter2"), est_corr),
         "posterior_corr": (("parameter", "parameter2"), post_corr)},
        coords={"participant": participants, "parameter": list(free),
                "parameter2": list(free)},
        attrs={"paradigm": paradigm.name, "noise_sd": data.attrs["noise_sd"],
               "responses": ",".join(k for k in (_format(paradigm).response, *(responses or {}))),
               "repeats": repeats,
               "spread_prior_sd": spread, "seed": seed, "simulate_s": t_sim,
               **{k: v for k, v in res.attrs.items() if k.startswith("emulator_")
                  or k in ("sampling_s", "method")}, **res.diagnostics})
    return out, res
