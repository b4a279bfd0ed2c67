"""Integration by local linearisation (Ozaki), with exogenous inputs folded in exactly.

Over a step ``dt`` the flow ``u' = q(u)`` with Jacobian ``A`` moves ``u`` by
``du = phi_1(A dt) q dt``. When the flow also depends on inputs ``w`` whose own flow is a known
nilpotent shift (``w' = D w``: generalised data and priors), the joint step of ``(u, w)`` can be
taken without exponentiating the input block (SPEC section 8)::

    du = sum_{j=1..p} phi_j(A dt) b_j dt**j,
    b_1 = q(u),  b_{k+1} = B D**k w   (k = 1..p-1),

with ``B = dq/dw`` and ``phi_j(Z) = int_0^1 exp(Z (1 - s)) s**(j-1) / (j-1)! ds``. All the
``phi_j`` products come from one exponential of the ``(m + p)``-square matrix
``[[A dt, W], [0, S_p]]`` (``W = [b_p dt**p, ..., b_1 dt]``, ``S_p`` the upper shift): they are
the first ``m`` entries of its last column.

The matrix exponential
----------------------
Scaling and squaring with a Taylor polynomial, written for what a step needs and for ``vmap``:

* **Approximant.** The degree-16 Taylor polynomial, evaluated with 6 matrix products
  (Paterson-Stockmeyer with ``X, X^2, X^3, X^4``). ``M`` is scaled by ``2**-s`` with
  ``s = ceil(log2(||M||_1 / THETA_16))``, the smallest ``s`` for which the truncation's relative
  backward error is below the unit roundoff (``THETA_16``: the largest ``t`` with
  ``sum_{k>16} |c_k| t**(k-1) <= 2**-53``, ``c_k`` the series of ``log(exp(-x) T_16(x))``).
  Unlike a Pade approximant there is no linear solve: on CPU a batched LAPACK solve of a
  24 x 24 matrix costs about as much as 15 matrix products, which pays for the ~2.8 extra
  squarings the smaller ``THETA`` needs several times over.
* **Only the column.** The last ``J = 3`` squarings are replaced by ``2**J`` matrix-vector
  products: ``exp(M) e = X^(2^s) e = X_(s-J) (... (X_(s-J) e))``. A matrix that needs fewer
  than ``J`` squarings is scaled as if it needed ``J`` (no measurable loss of accuracy; the
  tail then has no conditional, which matters under ``grad``).
* **Balanced input block.** ``W`` is scaled by a power of two so that its norm does not exceed
  that of ``A dt`` (an exact diagonal similarity, undone on the result): large flows ``q`` do not
  force extra squarings.
* **Batches.** Each matrix uses its own ``s`` (so a result never depends on the other members of
  a batch: scaling a small matrix as much as the largest would cost it accuracy, ~``2**s u``).
  The squarings run in a ``fori_loop`` of ``MAX_SQUARINGS`` conditional steps whose predicate
  is the *largest* ``s`` of the batch, made batch-invariant by a ``custom_vmap`` rule: under
  ``vmap`` the loop stops after ``max(s)`` squarings instead of evaluating every allowed one,
  and matrices that need fewer keep theirs with a select. The static trip count keeps the loop
  reverse-differentiable (``lax.scan`` under ``grad``); forward mode and higher derivatives
  go through it too. The norm and ``s`` carry no derivative (``s`` is piecewise constant).
* **Stiffness.** A matrix that would need more than ``MAX_SQUARINGS`` squarings gives NaN
  (reported as a divergence by the callers).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["phi_step", "local_linear_step", "expm", "expm_multiply", "MAX_SQUARINGS",
           "THETA_16"]

#: Squarings allowed in the matrix exponential: enough for 1-norms up to ~6.9e12
#: (``THETA_16 * 2**43``; precisions near exp(16) make the flow stiff). A step that needs more
#: returns NaN, which is reported as a divergence.
MAX_SQUARINGS = 43

#: Largest 1-norm for which the degree-16 Taylor polynomial has a relative backward error below
#: ``2**-53`` (recomputed from the definition in ``tests/test_expm.py``).
THETA_16 = 0.7802874256626574

_DEGREE = 16
_COEFFS = tuple(1.0 / math.factorial(k) for k in range(_DEGREE + 1))
#: Squarings replaced by matrix-vector products in :func:`expm_multiply` (``2**_J`` of them).
_J = 3
#: The input block ``W`` is never scaled below ``2**-_MAX_BALANCE`` (keeps the scale normal).
_MAX_BALANCE = 600


@jax.custom_batching.custom_vmap
def _batch_max(k: jax.Array) -> jax.Array:
    """``k`` itself; under ``vmap`` the maximum over the batch, unbatched (a loop bound that
    every member of the batch can share)."""
    return k


@_batch_max.def_vmap
def _batch_max_rule(axis_size, in_batched, k):
    del axis_size
    return (jnp.max(k) if in_batched[0] else k), False


def _pow2(k: jax.Array, dtype) -> jax.Array:
    """Exactly ``2.0**k`` for integer ``k`` in the normal range (``jnp.exp2`` is not exact)."""
    return jnp.ldexp(jnp.ones((), dtype), k)


def _norm1(M: jax.Array) -> jax.Array:
    return jnp.max(jnp.sum(jnp.abs(M), axis=-2), axis=-1)


def _squarings(M: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Squarings ``s`` for ``M`` (int32 in ``[0, MAX_SQUARINGS]``) and whether more were needed.
    A non-finite norm gives ``s = 0`` (the non-finite entries propagate to the result)."""
    norm = lax.stop_gradient(_norm1(M))
    s = jnp.ceil(jnp.log2(norm / THETA_16))
    s = jnp.where(jnp.isfinite(s), jnp.maximum(s, 0.0), 0.0)
    too_many = s > MAX_SQUARINGS
    return jnp.minimum(s, MAX_SQUARINGS).astype(jnp.int32), too_many


def _taylor16(X: jax.Array) -> jax.Array:
    """``sum_{k<=16} X^k / k!`` by Paterson-Stockmeyer: 6 matrix products."""
    c = _COEFFS
    eye = jnp.eye(X.shape[-1], dtype=X.dtype)
    X2 = X @ X
    X3 = X2 @ X
    X4 = X2 @ X2

    def block(i):
        return c[4 * i] * eye + c[4 * i + 1] * X + c[4 * i + 2] * X2 + c[4 * i + 3] * X3

    T = block(3) + c[16] * X4
    T = block(2) + X4 @ T
    T = block(1) + X4 @ T
    return block(0) + X4 @ T


def _square(X: jax.Array, n: jax.Array, n_max: jax.Array, steps: int) -> jax.Array:
    """``X`` squared ``n`` times (``n <= n_max <= steps``; ``n_max`` shared by a batch)."""
    def body(k, X):
        return lax.cond(k < n_max, lambda X: jnp.where(k < n, X @ X, X), lambda X: X, X)

    return lax.fori_loop(0, steps, body, X) if steps else X


def _check_square(M: jax.Array, name: str) -> None:
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {M.shape}; pass one matrix "
                         "(use jax.vmap for a batch)")


def expm(M: jax.Array) -> jax.Array:
    """Matrix exponential of a square ``M`` (Taylor-16, scaling and squaring; see the module
    notes). NaN where ``M`` needs more than ``MAX_SQUARINGS`` squarings."""
    M = jnp.asarray(M)
    _check_square(M, "M")
    s, too_many = _squarings(M)
    X = _taylor16(M * _pow2(-s, M.dtype))
    X = _square(X, s, _batch_max(s), MAX_SQUARINGS)
    return jnp.where(too_many, jnp.nan, X)


def expm_multiply(M: jax.Array, v: jax.Array) -> jax.Array:
    """``expm(M) @ v`` for a vector ``v``: as :func:`expm`, with the last 3 squarings replaced
    by 8 matrix-vector products."""
    M, v = jnp.asarray(M), jnp.asarray(v)
    _check_square(M, "M")
    if v.shape != M.shape[:1]:
        raise ValueError(f"v must be a vector of length {M.shape[0]}, got shape {v.shape}")
    s, too_many = _squarings(M)
    # at least _J squarings, so that the tail is always 2**_J products with v (a conditional
    # per product costs more under grad than the at most _J extra squarings of a small M)
    s = jnp.maximum(s, _J)
    s_max = _batch_max(s)
    X = _taylor16(M * _pow2(-s, M.dtype))
    X = _square(X, s - _J, s_max - _J, MAX_SQUARINGS - _J)
    w = X @ v
    for _ in range(2**_J - 1):
        w = X @ w
    return jnp.where(too_many, jnp.nan, w)


def phi_step(A: jax.Array, bs: jax.Array, dt: float) -> jax.Array:
    """``sum_j phi_j(A dt) bs[j-1] dt**j`` for ``bs`` of shape ``(p, m)``."""
    p, m = bs.shape
    dtype = A.dtype
    scale = dt ** jnp.arange(1, p + 1, dtype=dtype)
    W = (bs * scale[:, None])[::-1].T  # columns b_p .. b_1
    Adt = A * dt
    # balance: ||c W||_1 <= max(||A dt||_1, 1) with c a power of two (exact; undone below)
    ratio = lax.stop_gradient(_norm1(W) / jnp.maximum(_norm1(Adt), 1.0))
    k = jnp.ceil(jnp.log2(ratio))
    k = jnp.where(jnp.isfinite(k), jnp.clip(k, 0.0, _MAX_BALANCE), 0.0).astype(jnp.int32)
    top = jnp.concatenate([Adt, W * _pow2(-k, dtype)], axis=1)
    bottom = jnp.concatenate([jnp.zeros((p, m), dtype), jnp.eye(p, k=1, dtype=dtype)], axis=1)
    M = jnp.concatenate([top, bottom], axis=0)
    e_last = jnp.zeros(m + p, dtype).at[-1].set(1.0)
    return expm_multiply(M, e_last)[:m] * _pow2(k, dtype)


def local_linear_step(q: jax.Array, A: jax.Array, dt: float) -> jax.Array:
    """Plain local-linearisation update ``(expm(A dt) - I) inv(A) q``, stably via ``expm``."""
    return phi_step(A, q[None, :], dt)
