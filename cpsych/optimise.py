"""Quasi-Newton minimisation with ``optax.lbfgs``: the one loop used for learning and fitting."""

from __future__ import annotations

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


def lbfgs(fun: Callable[[Any], jax.Array], x0: Any, *, max_iter: int = 100, tol: float = 1e-6,
          callback: Callable[[int, float, float], None] | None = None) -> Minimum:
    """Minimise a differentiable scalar function of a pytree with L-BFGS (zoom line search).

    Parameters
    ----------
    fun : pure JAX function of the parameters.
    x0 : starting parameters.
    max_iter : largest number of iterations.
    tol : stop when the gradient norm falls below ``tol``.
    callback : called as ``callback(iteration, value, grad_norm)`` after each iteration.

    Raises
    ------
    FloatingPointError
        When the objective becomes non-finite.
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(x, updates), state, value, optax.tree_utils.tree_norm(grad)

    x = jax.tree.map(lambda a: jnp.asarray(a, dtype=float), x0)
    state = opt.init(x)
    history: list[float] = []
    gnorm = np.inf
    for it in range(max_iter):
        x_new, state, value, g = step(x, state)
        value, gnorm = float(value), float(g)
        history.append(value)
        if not np.isfinite(value):
            raise FloatingPointError(f"lbfgs: the objective became non-finite at iteration {it}; "
                                     "start closer to plausible values or tighten the priors")
        if callback is not None:
            callback(it, value, gnorm)
        if gnorm < tol:
            break
        x = x_new
    return Minimum(x, np.asarray(history), gnorm, bool(gnorm < tol))
