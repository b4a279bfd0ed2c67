"""A smooth emulator of an expensive function of two scalars, tabulated on a uniform grid.

Hamiltonian Monte Carlo evaluates a likelihood and its gradient ~10^5 times; when each
evaluation needs a simulation, the simulator is run once on a grid instead and the likelihood
interpolates the table. :class:`Emulator` interpolates a table ``values[i, j] = f(x_i, y_j)``
on uniform knots: cubic Hermite along ``x`` with Catmull-Rom (central-difference) tangents, so
the interpolant is C1 and NUTS sees continuous gradients; linear along ``y``; linear
extrapolation off the grid in both (finite gradients at the edges of a prior). It is a pytree
(a ``NamedTuple``) of pure JAX: jit/vmap/grad-able in both arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Emulator", "hermite_1d", "table_emulator", "uniform_grid"]


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
