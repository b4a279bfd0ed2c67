"""The one time loop: local linearisation with exogenous inputs folded in exactly.

Every dynamic computation in cpsych (generating data, generalised filtering, active inference,
and learning, which differentiates through filtering) integrates some state ``z`` under a flow
that also depends on exogenous inputs ``w`` known in generalised coordinates (data, priors,
causes and noise of a process)::

    dz/dt = q(z, w),        dw/dt = D w      (w~ = [w, w', w'', ...]: the shift D is nilpotent)

Each of them supplies a *flow*: a function of ``(z, w~)`` returning the flow ``q``, its
Jacobian ``A = dq/dz`` and its coupling ``B = dq/dw~`` (on the flat generalised inputs of the
bin), and whatever it reports at that bin. This module owns the rest: over one bin ``dt`` the
joint linear system of ``(z, w~)`` is solved exactly (Ozaki's local linearisation, SPEC 8)::

    dz = sum_{j=1..p} phi_j(A dt) b_j dt**j,   b_1 = q,   b_{k+1} = B D**k w~   (k = 1..p-1)

(:func:`cpsych.linearisation.phi_step`), ``p`` the largest embedding order of the inputs.
:func:`init`/:func:`step` are the pair; :func:`integrate` runs them over ``lax.scan``.

A flow may also keep a *memory*: values it reads at each bin but that are not integrated (the
recent history of action, whose Taylor embedding gives action's generalised motion, as
spm_ALAP does). Given ``memory``, the loop calls ``flow(z, w~, memory)``, which returns the
memory of the next bin as a third value; the loop carries it beside ``z``.

Inputs are a pytree of generalised arrays, each of shape ``(orders, ...)``, order-major, so
that ``D**k`` is a shift of the leading axis by ``k`` (:func:`shift_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .linearisation import phi_step

__all__ = ["Flow", "IntegratorState", "init", "step", "integrate", "shift_inputs",
           "flatten_inputs", "input_motion"]


class Flow(NamedTuple):
    """A flow at one bin: ``q`` (m,), ``A = dq/dz`` (m, m), ``B = dq/dw~`` (m, len(w~)).

    ``start`` (optional, (m,)): the point from which the bin's step is taken, when the flow
    re-reads part of ``z`` at each bin (spm_ALAP re-evaluates the world's generalised
    sensations and states from its state at order 0, and integrates them from there); the
    default is the carried ``z``.
    """

    q: jax.Array
    A: jax.Array
    B: jax.Array
    start: jax.Array | None = None


class IntegratorState(NamedTuple):
    """What the loop carries: the integrated state ``z`` (any flat vector) and the flow's
    memory (a pytree, ``None`` for a flow without one)."""

    z: jax.Array
    memory: Any = None


FlowFn = Callable[[jax.Array, Any], tuple[Flow, Any]]


def shift_inputs(w: Any, k: int) -> Any:
    """``D**k w~``: every generalised leaf shifted up ``k`` orders, the vacated orders zero."""
    def one(a):
        k_ = min(k, a.shape[0])
        return jnp.concatenate([a[k_:], jnp.zeros((k_,) + a.shape[1:], a.dtype)], axis=0)
    return jax.tree_util.tree_map(one, w)


def flatten_inputs(w: Any) -> jax.Array:
    """The flat vector of a bin's generalised inputs (leaves in pytree order, each raveled)."""
    leaves = jax.tree_util.tree_leaves(w)
    return jnp.concatenate([jnp.ravel(a) for a in leaves]) if leaves else jnp.zeros(0)


def _orders(w: Any) -> int:
    return max((a.shape[0] for a in jax.tree_util.tree_leaves(w)), default=1)


def input_motion(B: jax.Array, w: Any) -> jax.Array:
    """``[B D**k w~ for k = 1..p-1]`` as a ``(p - 1, m)`` array."""
    p = _orders(w)
    if p < 2:
        return jnp.zeros((0, B.shape[0]), B.dtype)
    W = jnp.stack([flatten_inputs(shift_inputs(w, k)) for k in range(1, p)])
    return W @ B.T


def init(z0: jax.Array, memory: Any = None) -> IntegratorState:
    """The loop's state at the first bin (``memory``: the flow's, if it keeps one)."""
    return IntegratorState(jnp.asarray(z0), memory)


def step(flow: FlowFn, state: IntegratorState, w: Any, dt: float
         ) -> tuple[IntegratorState, Any]:
    """One bin: report what the flow reports at the held ``z``, then move ``z`` exactly under
    the local linearisation of the joint (state, input) system (and pass the flow's memory
    on)."""
    memory = state.memory
    if memory is None:
        terms, out = flow(state.z, w)
    else:
        terms, out, memory = flow(state.z, w, memory)
    if state.z.shape[0] == 0:
        return IntegratorState(state.z, memory), out
    bs = jnp.concatenate([terms.q[None, :], input_motion(terms.B, w)], axis=0)
    z = state.z if terms.start is None else terms.start
    return IntegratorState(z + phi_step(terms.A, bs, dt), memory), out


def integrate(flow: FlowFn, z0: jax.Array, inputs: Any, dt: float, memory: Any = None) -> Any:
    """Run :func:`step` over the leading (time) axis of ``inputs``; outputs stacked over time.

    Parameters
    ----------
    flow : callable ``(z, w~) -> (Flow, out)``, or ``(z, w~, memory) -> (Flow, out, memory)``
        The flow at one bin and what to report there (and the memory for the next bin).
    z0 : (m,) initial state.
    inputs : pytree of arrays ``(T, orders, ...)``: the generalised inputs of every bin.
    dt : bin duration.
    memory : pytree, optional
        The flow's memory at the first bin; ``None`` for a flow without one.
    """
    def body(state, w):
        return step(flow, state, w, dt)

    _, out = jax.lax.scan(body, init(z0, memory), inputs)
    return out
