"""A smooth emulator of an expensive function of two scalars, tabulated on a uniform grid.

Hamiltonian Monte Carlo evaluates a likelihood and its gradient ~10^5 times; when each
evaluation needs a simulation, the simulator is run once on a grid instead and the likelihood
interpolates the table. :class:`Emulator` interpolates a table ``values[i, j] = f(x_i, y_j)``
on uniform knots: cubic Hermite along ``x`` with Catmull-Rom (central-difference) tangents, so
the interpolant is C1 and NUTS sees continuous gradients; linear along ``y``; linear
extrapolation off the grid in both (finite gradients at the edges of a prior). It is a pytree
(a ``NamedTuple``) of pure JAX: jit/vmap/grad-able in both arguments.

:class:`GridEmulator` is the N-dimensional version used by the generic fits
(:mod:`cpsych.fit.hierarchical`): a table ``values[i_1, ..., i_D, ...] = f(x_1, ..., x_D)``
(trailing axes: a vector-valued ``f``) on a uniform grid in each of ``D`` dimensions,
interpolated by tensor-product cubic Hermite splines with Catmull-Rom tangents in *every*
dimension (C1 everywhere, so NUTS sees continuous gradients). Along each dimension the
interpolant is linear in the knot values, ``f(u) = sum_j w_j(u) v_j``, with the weights of
the Hermite basis applied to the knot values and to their tangents (central differences
inside, second-order one-sided differences at the ends, so each 1-D interpolant reproduces
quadratics exactly, and the tensor product reproduces products of quadratics); the table is
contracted with one weight vector per dimension. Off the grid it extrapolates linearly along
the end tangent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Emulator", "GridEmulator", "hermite_1d", "hermite_weights", "grid_emulator",
           "table_emulator", "uniform_grid"]


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
    """``f(x, y)`` interpolated from a table on a uniform grid (see the module docstring).

    Attributes
    ----------
    x0, dx : first knot and spacing of the uniform ``x`` grid (cubic Hermite).
    y0, dy : first knot and spacing of the uniform ``y`` grid (linear).
    values : ``(n_x, n_y)`` table of ``f`` at the knots.
    slopes : ``(n_x, n_y)`` Catmull-Rom tangents along ``x`` (per knot spacing).
    """

    x0: float
    dx: float
    y0: float
    dy: float
    values: jax.Array
    slopes: jax.Array

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Interpolated ``f(x, y)``; broadcasts ``x`` against ``y``."""
        x, y = jnp.broadcast_arrays(jnp.asarray(x, float), jnp.asarray(y, float))
        return jax.vmap(self._one)(x.ravel(), y.ravel()).reshape(x.shape)

    def _one(self, x, y):
        row = hermite_1d((x - self.x0) / self.dx, self.values, self.slopes)
        n_y = row.shape[0]
        s = (y - self.y0) / self.dy
        j = jnp.clip(jnp.floor(s), 0, n_y - 2).astype(int)
        return row[j] + (s - j) * (row[j + 1] - row[j])

    @property
    def x_range(self) -> tuple[float, float]:
        """First and last ``x`` knots."""
        return self.x0, self.x0 + self.dx * (self.values.shape[0] - 1)


def uniform_grid(values: Sequence[float], name: str) -> np.ndarray:
    """``values`` as a float array; ``ValueError`` naming ``name`` unless they are at least 3
    increasing, uniformly spaced knots."""
    g = np.asarray(values, float)
    if g.ndim != 1 or g.size < 3 or not g[1] > g[0] or not np.allclose(np.diff(g), g[1] - g[0]):
        raise ValueError(f"{name}: expected >= 3 increasing, uniformly spaced values, got "
                         f"{np.array2string(g, threshold=8)}")
    return g


def table_emulator(x_grid: Sequence[float], y_grid: Sequence[float],
                   table: np.ndarray) -> Emulator:
    """The :class:`Emulator` of ``table[i, j] = f(x_grid[i], y_grid[j])``.

    Both grids must be uniformly spaced with at least 3 knots; the table must be finite.
    Tangents along ``x`` are central differences inside and one-sided at the ends.
    """
    x_grid = uniform_grid(x_grid, "x_grid")
    y_grid = uniform_grid(y_grid, "y_grid")
    table = np.asarray(table, float)
    if table.shape != (x_grid.size, y_grid.size):
        raise ValueError(f"table: expected shape {(x_grid.size, y_grid.size)} "
                         f"(len(x_grid), len(y_grid)), got {table.shape}")
    if not np.all(np.isfinite(table)):
        raise ValueError("table: non-finite entries (every knot needs a finite value)")
    slopes = np.gradient(table, axis=0)
    return Emulator(float(x_grid[0]), float(x_grid[1] - x_grid[0]), float(y_grid[0]),
                    float(y_grid[1] - y_grid[0]), jnp.asarray(table), jnp.asarray(slopes))


def _tangent_matrix(n: int) -> np.ndarray:
    """``(n, n)`` matrix ``G`` with ``G @ v`` = the tangents (per knot spacing) of knot values
    ``v``: central differences inside, second-order one-sided differences at the ends."""
    return np.gradient(np.eye(n), axis=0, edge_order=2 if n >= 3 else 1)


def hermite_weights(u: jax.Array, tangents: jax.Array) -> jax.Array:
    """Weights ``w`` (length ``n``) with ``f(u) = w @ v`` for the cubic Hermite interpolant of
    knot values ``v`` at position ``u`` (in knot units, knots ``0..n-1``), tangents
    ``tangents @ v``; linear extrapolation along the end tangent outside ``[0, n-1]``."""
    n = tangents.shape[0]
    eye = jnp.eye(n)
    k = jnp.clip(jnp.floor(u), 0, n - 2).astype(int)
    t = jnp.clip(u - k, 0.0, 1.0)
    t2, t3 = t * t, t * t * t
    inside = ((2 * t3 - 3 * t2 + 1) * eye[k] + (t3 - 2 * t2 + t) * tangents[k]
              + (-2 * t3 + 3 * t2) * eye[k + 1] + (t3 - t2) * tangents[k + 1])
    below = eye[0] + tangents[0] * jnp.minimum(u, 0.0)
    above = eye[n - 1] + tangents[n - 1] * jnp.maximum(u - (n - 1), 0.0)
    return jnp.where(u < 0, below, jnp.where(u > n - 1, above, inside))


class GridEmulator(NamedTuple):
    """``f(x)`` (``x`` a ``D``-vector, ``f`` array-valued) interpolated from a table on a
    uniform grid: tensor-product cubic Hermite (Catmull-Rom) in every dimension.

    Attributes
    ----------
    lows, steps : ``(D,)`` first knot and spacing of each dimension.
    values : ``(n_1, ..., n_D, *out)`` table of ``f`` at the knots.
    tangents : per dimension, the ``(n_d, n_d)`` matrix mapping knot values to tangents.
    names : the dimensions' names (e.g. the free parameters).
    """

    lows: jax.Array
    steps: jax.Array
    values: jax.Array
    tangents: tuple[jax.Array, ...]
    names: tuple[str, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.tangents)

    @property
    def knots(self) -> tuple[np.ndarray, ...]:
        """The grid's knots in each dimension."""
        return tuple(np.asarray(self.lows[d]) + np.asarray(self.steps[d])
                     * np.arange(self.tangents[d].shape[0]) for d in range(self.ndim))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Interpolated ``f`` at ``x`` of shape ``(..., D)``; returns ``(..., *out)``."""
        x = jnp.asarray(x, float)
        if x.shape[-1] != self.ndim:
            raise ValueError(f"x: expected a last axis of length {self.ndim} (one value per "
                             f"dimension {self.names or ''}), got shape {x.shape}")
        lead = x.shape[:-1]
        flat = jax.vmap(self._one)(x.reshape(-1, self.ndim))
        return flat.reshape(*lead, *self.values.shape[self.ndim:])

    def _one(self, x):
        out = self.values
        for d in range(self.ndim):
            w = hermite_weights((x[d] - self.lows[d]) / self.steps[d], self.tangents[d])
            out = jnp.tensordot(w, out, axes=(0, 0))
        return out


def grid_emulator(knots: Sequence[Sequence[float]], table: np.ndarray,
                  names: Sequence[str] = ()) -> GridEmulator:
    """The :class:`GridEmulator` of ``table[i_1, ..., i_D, ...] = f(knots[0][i_1], ...)``.

    Each dimension needs >= 3 increasing, uniformly spaced knots; the table must be finite.
    """
    grids = [uniform_grid(k, f"knots[{d}]" + (f" ({names[d]})" if names else ""))
             for d, k in enumerate(knots)]
    table = np.asarray(table, float)
    shape = tuple(g.size for g in grids)
    if table.shape[:len(grids)] != shape:
        raise ValueError(f"table: expected leading shape {shape} (one axis per dimension), "
                         f"got {table.shape}")
    if not np.all(np.isfinite(table)):
        bad = np.argwhere(~np.isfinite(table.reshape(*shape, -1)).all(-1))
        raise ValueError(f"table: {len(bad)} knots have non-finite values (first at "
                         f"{[float(grids[d][i]) for d, i in enumerate(bad[0])]}); narrow "
                         "the grid to where the simulation is finite")
    return GridEmulator(jnp.asarray([g[0] for g in grids]),
                        jnp.asarray([g[1] - g[0] for g in grids]), jnp.asarray(table),
                        tuple(jnp.asarray(_tangent_matrix(g.size)) for g in grids),
                        tuple(names))
