"""Differentiable read-outs of the paradigms and a fast emulator for fitting.

Gradients through the simulators
--------------------------------
Both paradigm simulators (``models.force_matching``, ``models.pursuit``) are pure JAX: the
precisions are arguments, and the whole time integration (a ``lax.scan`` over bins, each step
a matrix exponential of the joint Jacobian) can be differentiated with ``jax.jacfwd`` (forward
mode is cheapest for the few precision parameters fitted; ``jax.grad`` works too).

Two read-outs are not differentiable as specified and have smooth surrogates here:

* **force matching**: the percept is read at the time of the true peak force,
  ``t* = argmax_t x(t)``; the index is piecewise constant in the parameters, so the read-out
  jumps when the peak moves from one bin to the next. The surrogate weighs every bin by a
  soft-argmax, ``w_t = softmax(x(t) / tau)`` with ``tau = 0.01`` N (the peak bin dominates: bins
  0.05 N below it weigh ``exp(-5)`` as much): true peak ``sum_t w_t x(t)``, percept
  ``sum_t w_t (E[x_self](t) - 1.694 SD[x_self](t))``. As ``tau -> 0`` it is the
  specification's read-out.
* **pursuit**: the occluder is a hard step in the agent's predictions; ``gate_slope`` (a
  logistic of slope 8 per model unit, i.e. from 12 % to 88 % visible over 0.5 units) makes
  the agent's model smooth. The process gate stays hard: the target's trajectory does not
  depend on any fitted parameter. The lag read-out (an ``argmin`` over shifts) is not used
  in fitting; gains are least-squares slopes (smooth).

Emulator (for NUTS)
-------------------
Hamiltonian Monte Carlo evaluates the likelihood and its gradient ~10^5 times. A force trial
costs ~20 ms batched on two CPU cores (32 bins, each a 40 x 40 matrix exponential) and the
matching prediction needs the whole force curve of a participant (a root of
``percept(level) = target``), so running the simulator inside NUTS would take hours. Instead the
simulator is run once on a grid of attenuation ``h`` x intended force level, the curve is
inverted at each grid ``h`` (:func:`matched_table`), and the likelihood interpolates the table:
cubic Hermite (Catmull-Rom) in ``h`` (C1, so NUTS sees continuous gradients), linear in the
target force, linear extrapolation outside the grid (finite gradients at the edges of the
prior). :func:`Emulator.error` measures the interpolation error against direct simulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

__all__ = [
    "TAU_PEAK",
    "force_readouts",
    "force_trial",
    "force_grid",
    "matched_table",
    "Emulator",
    "build_emulator",
    "pursuit_readouts",
    "hermite_1d",
]

#: Temperature (N) of the soft-argmax that locates the peak force.
TAU_PEAK: float = 0.01


def force_readouts(out, tau: float = TAU_PEAK) -> tuple[jax.Array, jax.Array]:
    """Smooth read-outs of a force trial: (true peak force, perceived force), N.

    Parameters
    ----------
    out : ``ActiveOutput`` of ``models.force_matching.trial_output``.
    tau : soft-argmax temperature (N); see the module docstring.
    """
    from cpsych.models.force_matching import Z_PERCEPT

    x = out.x_process[:, 0]
    w = jax.nn.softmax(x / tau)
    perc = out.x[:, 0] - Z_PERCEPT * jnp.sqrt(jnp.maximum(out.x_var[:, 0], 1e-30))
    return jnp.sum(w * x), jnp.sum(w * perc)


def force_trial(h: jax.Array, level: jax.Array, base=None,
                tau: float = TAU_PEAK) -> jax.Array:
    """``[true peak, perceived]`` (N) of a self-generated trial at attenuation ``h``.

    ``level`` is the intended peak force (the prior bump's height); the other precisions are
    those of ``base`` (default: the control preset). Pure JAX: jit/vmap/grad-able in ``h``,
    ``level`` and every field of ``base``.
    """
    from cpsych.models import force_matching as fm

    base = fm.Params() if base is None else base
    out = fm.trial_output(base._replace(h=h), level)
    return jnp.stack(force_readouts(out, tau))


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


def hermite_1d(u: jax.Array, values: jax.Array, slopes: jax.Array) -> jax.Array:
    """Cubic Hermite interpolation on the unit-spaced knots ``0..n-1`` (rows of ``values``).

    ``u`` is a scalar position in knot units; outside ``[0, n-1]`` the end tangent extrapolates
    linearly. Returns the interpolated row.
    """
    n = values.shape[0]
    k = jnp.clip(jnp.floor(u), 0, n - 2).astype(int)
    t = jnp.clip(u - k, 0.0, 1.0)
    t2, t3 = t * t, t * t * t
    inside = ((2 * t3 - 3 * t2 + 1) * values[k] + (t3 - 2 * t2 + t) * slopes[k]
              + (-2 * t3 + 3 * t2) * values[k + 1] + (t3 - t2) * slopes[k + 1])
    below = values[0] + slopes[0] * jnp.minimum(u, 0.0)
    above = values[n - 1] + slopes[n - 1] * jnp.maximum(u - (n - 1), 0.0)
    return jnp.where(u < 0, below, jnp.where(u > n - 1, above, inside))


class Emulator(NamedTuple):
    """Matched force as a smooth function of attenuation ``h`` and the target force.

    Attributes
    ----------
    h0, dh : first knot and spacing of the uniform ``h`` grid.
    t0, dt : first knot and spacing of the uniform target grid (N).
    values : ``(n_h, n_t)`` matched forces (N) at the knots.
    slopes : ``(n_h, n_t)`` Catmull-Rom tangents in ``h`` (per knot spacing).
    """

    h0: float
    dh: float
    t0: float
    dt: float
    values: jax.Array
    slopes: jax.Array

    def __call__(self, h: jax.Array, target: jax.Array) -> jax.Array:
        """Predicted matched force (N); broadcasts ``h`` against ``target``."""
        h, target = jnp.broadcast_arrays(jnp.asarray(h, float), jnp.asarray(target, float))
        return jax.vmap(self._one)(h.ravel(), target.ravel()).reshape(h.shape)

    def _one(self, h, target):
        row = hermite_1d((h - self.h0) / self.dh, self.values, self.slopes)
        n_t = row.shape[0]
        s = (target - self.t0) / self.dt
        j = jnp.clip(jnp.floor(s), 0, n_t - 2).astype(int)
        return row[j] + (s - j) * (row[j + 1] - row[j])

    @property
    def h_range(self) -> tuple[float, float]:
        return self.h0, self.h0 + self.dh * (self.values.shape[0] - 1)

    def error(self, h: Sequence[float], targets: Sequence[float],
              levels: Sequence[float]) -> float:
        """Largest |emulated - simulated| matched force (N) at off-grid ``h`` values."""
        g = force_grid(h, levels)
        direct = matched_table(g, targets)
        emu = np.asarray(self(np.asarray(h)[:, None], np.asarray(targets)[None, :]))
        return float(np.max(np.abs(emu - direct)))


def build_emulator(h_grid: Sequence[float] = tuple(np.arange(-2.0, 12.01, 0.5)),
                   levels: Sequence[float] = tuple(np.arange(0.0, 4.01, 0.125)),
                   targets: Sequence[float] = tuple(np.arange(0.0, 3.01, 0.05)),
                   grid: xr.Dataset | None = None) -> tuple[Emulator, xr.Dataset]:
    """Simulate the grid (unless given) and build the :class:`Emulator`.

    ``h_grid`` and ``targets`` must be uniformly spaced. Returns ``(emulator, grid)``.
    """
    h_grid = np.asarray(h_grid, float)
    targets = np.asarray(targets, float)
    for name, g in (("h_grid", h_grid), ("targets", targets)):
        if g.ndim != 1 or g.size < 3 or not np.allclose(np.diff(g), g[1] - g[0]):
            raise ValueError(f"{name}: expected >= 3 uniformly spaced values")
    if grid is None:
        grid = force_grid(h_grid, levels)
    elif not np.allclose(grid["h"].values, h_grid):
        raise ValueError("grid: its 'h' coordinate differs from h_grid")
    table = matched_table(grid, targets)
    slopes = np.gradient(table, axis=0)  # central differences inside, one-sided at the ends
    emu = Emulator(float(h_grid[0]), float(h_grid[1] - h_grid[0]), float(targets[0]),
                   float(targets[1] - targets[0]), jnp.asarray(table), jnp.asarray(slopes))
    grid = grid.assign(matched=(("h", "target"), table, {
        "units": "N", "long_name": "force produced to match an external target"}))
    grid = grid.assign_coords(target=("target", targets, {"units": "N"}))
    return emu, grid


def pursuit_readouts(log_pi: jax.Array, templates, cause: jax.Array, occluder: float = 1.0,
                     prior_mean: float | None = None) -> jax.Array:
    """``[visible gain, occluded gain, RMS error (deg)]`` of a pursuit trial (differentiable).

    ``templates`` from ``models.pursuit.prepare(T, gate_slope=...)``; pass a ``gate_slope``
    there for a smooth occluder in the agent's model.
    """
    from cpsych.models import pursuit as P

    pm = 8 * P.W if prior_mean is None else prior_mean
    tr = P.simulate_traces(log_pi, cause, occluder, pm, templates)
    r = P.readouts(tr)
    return jnp.stack([r["gain_visible"], r["gain_occluded"], r["rms_error_deg"]])

