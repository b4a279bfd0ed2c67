"""Integration by local linearisation (Ozaki), with exogenous inputs folded in exactly.

Over a step ``dt`` the flow ``u' = q(u)`` with Jacobian ``A`` moves ``u`` by
``du = phi_1(A dt) q dt``. When the flow also depends on inputs ``w`` whose own flow is a known
nilpotent shift (``w' = D w``: generalised data and priors), the joint step of ``(u, w)`` can be
taken without exponentiating the input block (SPEC section 8)::

    du = sum_{j=1..p} phi_j(A dt) b_j dt**j,
    b_1 = q(u),  b_{k+1} = B D**k w   (k = 1..p-1),

with ``B = dq/dw`` and ``phi_j(Z) = int_0^1 exp(Z (1 - s)) s**(j-1) / (j-1)! ds``. All the
``phi_j`` products come from one exponential of the ``(m + p)``-square matrix
``[[A dt, W], [0, S_p]]`` (``W = [b_p dt**p, ..., b_1 dt]``, ``S_p`` the upper shift).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

__all__ = ["phi_step", "local_linear_step", "MAX_SQUARINGS"]

#: Squarings allowed in the matrix exponential: enough for norms up to ~5e12 (precisions near
#: exp(16) make the flow stiff). Under ``vmap`` every allowed squaring is computed, so this is
#: also a cost; a step that needs more returns NaN, which is reported as a divergence.
MAX_SQUARINGS = 40


def phi_step(A: jax.Array, bs: jax.Array, dt: float) -> jax.Array:
    """``sum_j phi_j(A dt) bs[j-1] dt**j`` for ``bs`` of shape ``(p, m)``."""
    p, m = bs.shape
    scale = dt ** jnp.arange(1, p + 1, dtype=A.dtype)
    W = (bs * scale[:, None])[::-1].T  # columns b_p .. b_1
    top = jnp.concatenate([A * dt, W], axis=1)
    bottom = jnp.concatenate([jnp.zeros((p, m), A.dtype), jnp.eye(p, k=1, dtype=A.dtype)], axis=1)
    M = jnp.concatenate([top, bottom], axis=0)
    return jsl.expm(M, max_squarings=MAX_SQUARINGS)[:m, -1]


def local_linear_step(q: jax.Array, A: jax.Array, dt: float) -> jax.Array:
    """Plain local-linearisation update ``(expm(A dt) - I) inv(A) q``, stably via ``expm``."""
    return phi_step(A, q[None, :], dt)
