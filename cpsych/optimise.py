"""Quasi-Newton minimisation with ``optax.lbfgs``: the one loop used for learning and fitting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["Minimum", "lbfgs"]


class Minimum(NamedTuple):
    """Outcome of :func:`lbfgs`.

    Attributes
    ----------
    x : the minimiser (same pytree as the start).
    history : objective before each iteration's update.
    grad_norm : gradient norm at the last iteration.
    converged : whether ``grad_norm`` fell below the tolerance.
    """

    x: Any
    history: np.ndarray
    grad_norm: float
    converged: bool


@functools.lru_cache(maxsize=8)
def _lbfgs_step(fun: Callable[[Any], jax.Array]):
    """optax's L-BFGS and one compiled iteration for ``fun``, kept for the next call with the
    same function (multi-start fits compile once)."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(x, updates), state, value, optax.tree_utils.tree_norm(grad)

    return opt, step


def lbfgs(fun: Callable[[Any], jax.Array], x0: Any, *, max_iter: int = 100, tol: float = 1e-6,
          callback: Callable[[int, float, float], None] | None = None,
          non_finite: str = "raise") -> Minimum:
    """Minimise a differentiable scalar function of a pytree with L-BFGS (zoom line search).

    Parameters
    ----------
    fun : pure JAX function of the parameters.
    x0 : starting parameters.
    max_iter : largest number of iterations.
    tol : stop when the gradient norm falls below ``tol``.
    callback : called as ``callback(iteration, value, grad_norm)`` after each iteration.
    non_finite : ``"raise"`` (a :class:`FloatingPointError`) or ``"stop"`` (return the last
        point with a finite objective, not converged) when the objective or its gradient
        becomes non-finite: a dynamic model can run away in parts of its parameter space.

    Raises
    ------
    FloatingPointError
        When the objective or its gradient becomes non-finite (``non_finite="raise"``, or a
        non-finite objective at ``x0``).
    """
    if non_finite not in ("raise", "stop"):
        raise ValueError(f"non_finite: expected 'raise' or 'stop', got {non_finite!r}")
    opt, step = _lbfgs_step(fun)
    x = jax.tree.map(lambda a: jnp.asarray(a, dtype=float), x0)
    state = opt.init(x)
    history: list[float] = []
    gnorm = gnorm_prev = np.inf
    x_prev = x
    for it in range(max_iter):
        x_new, state, value, g = step(x, state)
        value, gnorm = float(value), float(g)
        if not (np.isfinite(value) and np.isfinite(gnorm)):
            if non_finite == "stop" and np.isfinite(value):  # x is fine, its gradient not
                history.append(value)
                return Minimum(x, np.asarray(history), gnorm, False)
            if non_finite == "stop" and it > 0:
                return Minimum(x_prev, np.asarray(history), gnorm_prev, False)
            raise FloatingPointError(f"lbfgs: the objective or its gradient became non-finite "
                                     f"at iteration {it}; start closer to plausible values or "
                                     "tighten the priors")
        history.append(value)
        if callback is not None:
            callback(it, value, gnorm)
        if gnorm < tol:
            break
        x_prev, gnorm_prev = x, gnorm
        x = x_new
    return Minimum(x, np.asarray(history), gnorm, bool(gnorm < tol))
