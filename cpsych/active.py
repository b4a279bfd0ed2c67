"""Active inference: an agent (an HDM) acting on a separate generative process (SPEC 4).

The world::

    y = g_G(x, v, a) + z,      dx/dt = f_G(x, v, a) + w

is never seen by the agent except through ``y``. Its recognition dynamics are generalised
filtering (:mod:`cpsych.filtering`) and its action descends free energy through the sensory
prediction errors it can change::

    da/dt = -kappa_a [ (dy~/da)' Pi_a eps_y~ + exp(log_pi_a) a ]

with ``Pi_a = kron(R, diag(action_mask))``: a fixed action precision per sensory channel
(SPM's ``G(1).U``; zero closes a channel), so that attenuating the agent's sensory precision
changes what it believes, not how strongly its reflexes respond, and a weak prior pulling
action to zero.
``dy~/da`` is the reflex arc: the direct effect ``g_a`` on the zeroth order plus the effect on
every higher order through the process states, ``g_x f_x^(i-1) f_a``.

Action's own generalised motion (``action_motion="history"``, the default, as spm_ALAP and
spm_ADEM do): the world sees ``a~ = [a, a', a'', ...]``, the Taylor embedding of the recent
history of action (the values held at the last ``n // 2`` bins and now, future samples
clamped to now, SPM's ``spm_DEM_embed(A, n, t)`` of the action series so far); its higher
orders enter the world's generalised states and sensations, ``x^(k+1) = f_x x^(k) + f_v v^(k)
+ f_a a^(k) + w^(k)``, ``y^(k) = g_x x^(k) + g_v v^(k) + g_a a^(k) + z^(k)``, as inputs held
within the bin (the reflex arc is the same). ``action_motion="zero"`` takes them as zero.

Process states, the agent's expectations and action are integrated jointly, one
local-linearisation step per time bin, with the exogenous inputs (the process's causes and
noise, the agent's priors) folded in exactly through their generalised motion
(:func:`~cpsych.linearisation.phi_step`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import validation
from .filtering import FilterOutput, filter_output, recognition_flow, shift_operator
from .filtering import init as filter_init
from .gencoords import embed_series, embedding_operator, smooth_noise, temporal_precision
from .hdm import HDM, _as_vector, check_finite
from .integrator import Flow, integrate
from .inversion import filter_dataset
from .results import check_finite_result

__all__ = ["Process", "ActiveOutput", "active_flow", "simulate", "simulate_core", "run",
           "draw_noise", "check_inputs", "ACTION_MOTIONS", "action_history_operator",
           "action_memory", "WORLDS", "world_size", "initial_state"]

#: Choices of ``action_motion``: action's generalised motion from its recent history (SPM) or
#: zero within a bin.
ACTION_MOTIONS = ("history", "zero")
#: Choices of ``world``: the world's generalised outputs and states integrated with the rest
#: (SPM) or its sensations an instantaneous function of its state (see :func:`active_flow`).
WORLDS = ("generalised", "instant")

ProcessFn = Callable[[jax.Array, jax.Array, jax.Array, Any], jax.Array]


def _static(**kw):
    return dataclasses.field(metadata={"static": True}, **kw)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Process:
    """The generative process (the world) on which an agent acts.

    Parameters
    ----------
    f : callable ``f(x, v, a, theta) -> (n_x,)``
        Equations of motion of the world's states.
    g : callable ``g(x, v, a, theta) -> (n_y,)``
        Sensory samples.
    n_x, n_v, n_a : int
        Numbers of states, exogenous causes and action variables.
    theta : pytree
        Parameters of ``f`` and ``g``.
    log_pi_z, log_pi_w : float or array
        Log-precisions of the sensory and state noise (typically 16: nearly deterministic).
    x0 : array
        Initial states.
    x_names, v_names, a_names, y_names : names for the results.
    """

    f: ProcessFn = _static()
    g: ProcessFn = _static()
    n_x: int = _static(default=1)
    n_v: int = _static(default=0)
    n_a: int = _static(default=1)
    theta: Any = None
    log_pi_z: Any = 16.0
    log_pi_w: Any = 16.0
    x0: Any = None
    x_names: tuple[str, ...] | None = _static(default=None)
    v_names: tuple[str, ...] | None = _static(default=None)
    a_names: tuple[str, ...] | None = _static(default=None)
    y_names: tuple[str, ...] | None = _static(default=None)

    def __post_init__(self) -> None:
        validation.check_fields(self, "Process", sizes={"n_x": 1, "n_v": 0, "n_a": 1},
                                functions={"f": ("f(x, v, a, theta) -> array", False),
                                           "g": ("g(x, v, a, theta) -> array", False)},
                                names=("x_names", "v_names", "a_names", "y_names"))

    @property
    def n_y(self) -> int:
        """Number of sensory channels."""
        return int(self._shape(self.g).shape[0])

    def _shape(self, fn):
        sd = [jax.ShapeDtypeStruct((k,), jnp.float64) for k in (self.n_x, self.n_v, self.n_a)]
        return jax.eval_shape(lambda x, v, a: jnp.asarray(fn(x, v, a, self.theta)), *sd)

    def validate(self) -> Process:
        """Check sizes and precisions; raise ``ValueError`` naming the field."""
        where = "process"
        if self.n_x < 1 or self.n_a < 1 or self.n_v < 0:
            raise ValueError(f"{where}: fields 'n_x' and 'n_a' must be >= 1 and 'n_v' >= 0")
        for name, fn in (("f", self.f), ("g", self.g)):
            try:
                out = self._shape(fn)
            except Exception as err:  # noqa: BLE001
                raise ValueError(f"{where}: field '{name}' failed on x ({self.n_x},), "
                                 f"v ({self.n_v},), a ({self.n_a},): {err}") from err
            if out.ndim != 1 or (name == "f" and out.shape != (self.n_x,)):
                raise ValueError(f"{where}: field '{name}' returns shape {out.shape}, expected "
                                 + ("(n_x,)" if name == "f" else "a vector"))
        for name in ("f", "g"):
            validation.check_indexing(getattr(self, name), where, name,
                                      {"x": self.n_x, "v": self.n_v, "a": self.n_a}, self.theta)
        n_y = self.n_y
        x0 = _as_vector(0.0 if self.x0 is None else self.x0, self.n_x, where, "x0")
        lz = _as_vector(self.log_pi_z, n_y, where, "log_pi_z")
        lw = _as_vector(self.log_pi_w, self.n_x, where, "log_pi_w")
        for name, val in (("x0", x0), ("log_pi_z", lz), ("log_pi_w", lw)):
            check_finite(val, where, name)
        return dataclasses.replace(self, x0=x0, log_pi_z=lz, log_pi_w=lw)

    def names(self) -> tuple[list[str], list[str], list[str], list[str]]:
        return (list(self.x_names or [f"x{k + 1}" for k in range(self.n_x)]),
                list(self.v_names or [f"v{k + 1}" for k in range(self.n_v)]),
                list(self.a_names or [f"a{k + 1}" for k in range(self.n_a)]),
                list(self.y_names or [f"y{k + 1}" for k in range(self.n_y)]))


def _diagonal(cov):
    """Variances from (batched) covariances; NumPy in, NumPy out (no compilation)."""
    xp = np if isinstance(cov, np.ndarray) else jnp
    return xp.diagonal(cov, axis1=-2, axis2=-1)


class ActiveOutput(NamedTuple):
    """Per-bin outputs of an active-inference simulation (stacked over time).

    The agent's side is the same :class:`~cpsych.filtering.FilterOutput` as inversion's; its
    fields are also reachable directly (``out.x``, ``out.x_var``, ``out.F``, ...).
    """

    x_process: jax.Array  # (n_xG,) true states
    v_process: jax.Array  # (n_vG,) true causes
    y: jax.Array  # (n_y,) sensory samples
    a: jax.Array  # (n_a,) action
    belief: FilterOutput  # the agent's expectations, errors, precisions and free energy

    x = property(lambda self: self.belief.x)
    v = property(lambda self: self.belief.v)
    x_var = property(lambda self: _diagonal(self.belief.x_cov))
    v_var = property(lambda self: _diagonal(self.belief.v_cov))
    pred = property(lambda self: self.belief.pred)
    ev = property(lambda self: self.belief.ev)
    ex = property(lambda self: self.belief.ex)
    log_pi_v = property(lambda self: self.belief.log_pi_v)
    F = property(lambda self: self.belief.F)


def action_history_operator(n: int, dt: float = 1.0) -> np.ndarray:
    """Weights giving generalised action from its recent history, bin by bin.

    Returns ``W`` of shape ``(n + 1, n, n // 2 + 1)``: at 0-based bin ``t`` (``W[min(t, n)]``)
    ``a~ = W[t] @ [a_(t - K), ..., a_(t - 1), a_t]`` (``K = n // 2``) is
    ``embed(A, n, t, dt)`` of the action series ``A = [a_0, ..., a_t]`` so far: the Taylor
    embedding of :func:`cpsych.gencoords.embed`, the samples after ``t`` clamped to ``a_t``
    and those before 0 to ``a_0`` (spm_ALAP's ``spm_DEM_embed`` of its action history). Row 0
    of every ``W[t]`` picks ``a_t``.
    """
    K = n // 2
    out = np.zeros((n + 1, n, K + 1))
    for t in range(n + 1):
        idx, E = embedding_operator(n, float(t), dt)
        slots = np.clip(idx, 0, t) - (t - K)  # position in [a_(t-K), ..., a_t]
        for i, slot in enumerate(slots):
            out[t, :, slot] += E[:, i]
    return out


def action_memory(process: Process, model: HDM, action_motion: str = "history"):
    """The integrator memory of :func:`active_flow` at the first bin: ``(bin, history)``
    with the last ``n // 2`` actions (all the initial action, 0); ``None`` for
    ``action_motion="zero"``."""
    if action_motion == "zero":
        return None
    return (jnp.zeros((), jnp.int32), jnp.zeros((model.n // 2, process.n_a)))


def _sensations(process: Process, n: int, xg: jax.Array, a: jax.Array, e: jax.Array,
                a_hi: jax.Array | None = None, at: tuple | None = None,
                v_y: jax.Array | None = None, states: bool = False):
    """Generalised sensations ``y~ (n, n_y)`` and the process flow at order 0.

    ``e`` is the generalised exogenous input ``(n, n_vG + n_y + n_xG)``: causes, sensory noise,
    state noise; ``a_hi`` ``(n - 1, n_a)`` the higher orders of action (``None``: zero).
    Higher orders of the states follow the chain rule under local linearity,
    ``x^(k+1) = f_x x^(k) + f_v v^(k) + f_a a^(k) + w^(k)``, and the sensations are
    ``y^(k) = g_x x^(k) + g_v v^(k) + g_a a^(k) + z^(k)`` about the zeroth order.
    ``at = (x, v, a)`` holds the point at which ``f`` and ``g`` are linearised for the higher
    orders (default: the zeroth order itself); holding it fixed makes the higher orders
    affine in ``(x, v, a)``, so that their Jacobians are the first-order ones of local
    linearity (spm_ADEM/spm_ALAP's ``dE/da = dE/dy (g_a + g_x f_x^(k-1) f_a)``), without
    second derivatives of ``f`` and ``g``.
    ``v_y`` ``(n, n_vG)``: the causes' higher orders to use in the sensations (spm_ALAP's
    world reads them from its own integrated generalised causes; default ``v``).
    ``states=True`` also returns the generalised states ``x~ (n, n_xG)``.
    """
    nv, ny = process.n_v, process.n_y
    v, z, w = e[:, :nv], e[:, nv:nv + ny], e[:, nv + ny:]
    th = process.theta
    da = jnp.zeros((n, a.shape[0]), xg.dtype)
    if a_hi is not None:
        da = da.at[1:].set(a_hi)
    def f(x_, v_, a_):
        return jnp.asarray(process.f(x_, v_, a_, th), xg.dtype)

    def g(x_, v_, a_):
        return jnp.asarray(process.g(x_, v_, a_, th), xg.dtype)

    x0, v0, a0 = (xg, v[0], a) if at is None else at
    f0 = f(xg, v[0], a)
    f_lin = jax.linearize(f, x0, v0, a0)[1]
    xs = [xg, f0 + w[0]]
    for k in range(1, n - 1):
        xs.append(f_lin(xs[k], v[k], da[k]) + w[k])
    X = jnp.stack(xs[:n])
    g0 = g(xg, v[0], a)
    g_lin = jax.linearize(g, x0, v0, a0)[1]
    vy = v if v_y is None else v_y
    Y = jax.vmap(g_lin)(X.at[0].set(0.0), vy.at[0].set(0.0), da).at[0].add(g0) + z
    return (Y, f0 + w[0], X) if states else (Y, f0 + w[0])


def active_flow(process: Process, model: HDM, action_mask: jax.Array,
                kappa_a: float | jax.Array, log_pi_a: float | jax.Array,
                action_motion: str = "history", world: str = "instant"):
    """The joint flow of the world, the agent's expectations and action.

    Returns a flow for :func:`cpsych.integrator.integrate` with inputs ``(e~, eta~)``: the
    world's exogenous inputs ``(n, n_vG + n_y + n_xG)`` and the agent's prior ``(d, n_top)``.
    The agent's part is the recognition flow of :func:`cpsych.filtering.recognition_flow` on
    the world's generalised sensations. With ``action_motion="history"`` the flow keeps a
    memory (:func:`action_memory`): it is called as ``flow(z, w~, memory)`` and returns the
    next memory third.

    ``world`` (see :func:`world_size`) chooses what of the world is integrated with the rest:
    ``"generalised"`` (spm_ALAP, spm_ADEM): ``z = [o~, x~_G, u, a]``, the world's generalised
    outputs ``o~ = [y~, v~_G]`` and states, re-read at each bin from ``x_G`` at order 0 (and
    the causes' integrated higher orders in ``y~``) and moving within the bin with their own
    motion, ``o^(k)`` with ``g_x x^(k+1) + g_v v^(k+1) + z^(k+1)`` and ``x^(k)`` with
    ``f_x x^(k) + f_v v^(k) + w^(k)`` (plus ``f_a a`` at order 0); the agent reads the
    sensations ``y~`` as data. ``"instant"`` (default): ``z = [x_G, u, a]``, the sensations an
    instantaneous function of the world's state, action and inputs: the loop from action
    through the world back to action is then exact at order 0, which keeps stiff action
    stable (a reaching agent with action precision ``exp(4)`` settles at its set point; under
    ``"generalised"`` it oscillates and diverges).
    """
    validation.check_choice(world, "world", WORLDS)
    n = model.n
    n_y, nxg, na, nvg = process.n_y, process.n_x, process.n_a, process.n_v
    R = temporal_precision(n, model.s)
    nu = shift_operator(model).shape[0]
    prior_a = jnp.exp(log_pi_a)
    history = jnp.asarray(action_history_operator(n, model.dt))
    nvy = n_y + model.n_v
    rows = (jnp.arange(n)[:, None] * nvy + jnp.arange(n_y)[None, :]).ravel()
    no = n_y + nvg  # the world's outputs per order
    n_o, n_xt = n * no, n * nxg
    S = jnp.eye(n, k=1)

    def common(xg, u, a, e, eta, memory, v_y=None):
        a_hi = None
        if memory is not None:
            t, past = memory
            a_hi = (history[jnp.minimum(t, n)] @ jnp.concatenate([past, a[None]]))[1:]
            memory = (t + 1, jnp.concatenate([past, a[None]])[1:])
        Y, qx, X = _sensations(process, n, xg, a, e, a_hi, v_y=v_y, states=True)
        rec, c = recognition_flow(model, u, (Y, eta))

        def sens(xg_, a_, e_):
            # first-order Jacobians (local linearity, as spm_ADEM/spm_ALAP): f and g stay
            # linearised at the bin's own point
            return _sensations(process, n, xg_, a_, e_, a_hi, at=(xg, e[0, :nvg], a),
                               v_y=v_y)

        jac = jax.jacfwd(sens, argnums=(0, 1, 2))(xg, a, e)
        # action: da/dt = -kappa_a [(dY/da)' Pi_a eps_y + exp(log_pi_a) a],
        # Pi_a = kron(R, diag(action_mask)) applied to the rows of dY/da
        dY_da = jac[0][1].reshape(n * n_y, na)
        PaY = (jnp.einsum("ij,jck->ick", R, dY_da.reshape(n, n_y, na))
               * action_mask[None, :, None]).reshape(n * n_y, na)
        eps_y = c.errors.ev[:, :n_y]
        qa = -kappa_a * (PaY.T @ eps_y.ravel() + prior_a * a)
        Jy = c.J[rows]  # d eps_y / du
        out = ActiveOutput(x_process=xg, v_process=e[0, :nvg], y=Y[0], a=a,
                           belief=filter_output(model, u, c))
        return Y, qx, X, rec, c, jac, dY_da, PaY, qa, Jy, out, memory

    def flow_instant(zz, w, memory=None):
        e, eta = w
        xg, u, a = zz[:nxg], zz[nxg:nxg + nu], zz[nxg + nu:]
        ne = e.shape[1]
        (Y, qx, X, rec, c, jac, dY_da, PaY, qa, Jy, out, memory) = common(
            xg, u, a, e, eta, memory)
        (dY_dx, _, dY_de), (fx, fa, fe) = jac
        dY_dx = dY_dx.reshape(n * n_y, nxg)
        dY_de, fe = dY_de.reshape(n * n_y, n * ne), fe.reshape(nxg, n * ne)
        # the agent's coupling to its data, through which the world moves its beliefs
        Ky, B_eta = rec.B[:, : n * n_y], rec.B[:, n * n_y:]  # -K split: data, prior
        d_top = eta.size
        A = jnp.block([
            [fx, jnp.zeros((nxg, nu)), fa],
            [Ky @ dY_dx, rec.A, Ky @ dY_da],
            [-kappa_a * PaY.T @ dY_dx, -kappa_a * PaY.T @ Jy,
             -kappa_a * (PaY.T @ dY_da + prior_a * jnp.eye(na))],
        ])
        B = jnp.block([
            [fe, jnp.zeros((nxg, d_top))],
            [Ky @ dY_de, B_eta],
            [-kappa_a * PaY.T @ dY_de, jnp.zeros((na, d_top))],
        ])
        terms = Flow(jnp.concatenate([qx, rec.q, qa]), A, B)
        return (terms, out) if memory is None else (terms, out, memory)

    def flow_generalised(zz, w, memory=None):
        e, eta = w
        ne = e.shape[1]
        o_old = zz[:n_o].reshape(n, no)
        Xg = zz[n_o:n_o + n_xt].reshape(n, nxg)
        u, a = zz[n_o + n_xt:n_o + n_xt + nu], zz[n_o + n_xt + nu:]
        xg, v = Xg[0], e[:, :nvg]
        # the causes' higher orders in the sensations: the world's own, integrated last bin
        v_y = v.at[1:].set(o_old[1:, n_y:])
        (Y, _, X, rec, c, jac, dY_da, PaY, qa, Jy, out, memory) = common(
            xg, u, a, e, eta, memory, v_y)
        o = jnp.concatenate([Y, v], axis=1)  # the world's generalised outputs, re-read

        def jac0(fn):
            return jax.jacfwd(lambda x_, v_, a_: jnp.asarray(fn(x_, v_, a_, process.theta)),
                              argnums=(0, 1, 2))(xg, v[0], a)

        gx, gv, _ = jac0(process.g)
        fx, fv, fa = jac0(process.f)
        # outputs o = [y, v]: y^(k) moves with g_x x^(k+1) + g_v v^(k+1) + z^(k+1),
        # v^(k) with the cause's own v^(k+1)
        O_o = jnp.zeros((no, no)).at[:n_y, n_y:].set(gv)
        O_x = jnp.zeros((no, nxg)).at[:n_y].set(gx)
        O_e = jnp.zeros((no, ne)).at[:n_y, nvg:nvg + n_y].set(jnp.eye(n_y))
        O_e = O_e.at[n_y:, :nvg].set(jnp.eye(nvg))
        X_o = jnp.zeros((nxg, no)).at[:, n_y:].set(fv)
        X_e = jnp.zeros((nxg, ne)).at[:, nvg + n_y:].set(jnp.eye(nxg))
        X_a = jnp.zeros((n, 1)).at[0, 0].set(1.0)
        sel_y = jnp.kron(jnp.eye(n), jnp.eye(no)[:n_y])  # o~ -> y~
        Ky, B_eta = rec.B[:, : n * n_y], rec.B[:, n * n_y:]
        I_n = jnp.eye(n)
        d_top = eta.size
        A = jnp.block([
            [jnp.kron(S, O_o), jnp.kron(S, O_x), jnp.zeros((n_o, nu + na))],
            [jnp.kron(I_n, X_o), jnp.kron(I_n, fx), jnp.zeros((n_xt, nu)), jnp.kron(X_a, fa)],
            [Ky @ sel_y, jnp.zeros((nu, n_xt)), rec.A, Ky @ dY_da],
            [-kappa_a * PaY.T @ sel_y, jnp.zeros((na, n_xt)), -kappa_a * PaY.T @ Jy,
             -kappa_a * (PaY.T @ dY_da + prior_a * jnp.eye(na))],
        ])
        B = jnp.block([
            [jnp.kron(S, O_e), jnp.zeros((n_o, d_top))],
            [jnp.kron(I_n, X_e), jnp.zeros((n_xt, d_top))],
            [jnp.zeros((nu, n * ne)), B_eta],
            [jnp.zeros((na, n * ne + d_top))],
        ])
        q = jnp.concatenate([(S @ o).ravel(), (S @ X).ravel(), rec.q, qa])
        start = jnp.concatenate([o.ravel(), X.ravel(), u, a])
        terms = Flow(q, A, B, start)
        return (terms, out) if memory is None else (terms, out, memory)

    flow = flow_generalised if world == "generalised" else flow_instant
    if action_motion == "zero":
        return lambda zz, w: flow(zz, w)
    return flow


def world_size(process: Process, model: HDM, world: str = "instant") -> int:
    """Length of the world's part of the integrated state: ``n (n_y + n_vG + n_xG)`` for
    ``world="generalised"`` (its generalised outputs and states), ``n_xG`` for
    ``"instant"``."""
    if world == "generalised":
        return model.n * (process.n_y + process.n_v + process.n_x)
    return process.n_x


def initial_state(process: Process, model: HDM, world: str = "instant") -> jax.Array:
    """``z`` at the first bin: the world at rest in its initial state ``x0``, the agent's
    expectations at :func:`cpsych.filtering.init`, action 0."""
    x0 = jnp.asarray(process.x0, float)
    if world == "generalised":
        no = process.n_y + process.n_v
        zw = jnp.concatenate([jnp.zeros(model.n * no), x0,
                              jnp.zeros((model.n - 1) * process.n_x)])
    else:
        zw = x0
    return jnp.concatenate([zw, filter_init(model), jnp.zeros(process.n_a)])


def simulate_core(process: Process, model: HDM, e_gen: jax.Array, eta_gen: jax.Array,
                  action_mask: jax.Array, kappa_a: float | jax.Array,
                  log_pi_a: float | jax.Array, action_motion: str = "history",
                  world: str = "instant") -> ActiveOutput:
    """Jointly integrate world, recognition and action from embedded inputs (pure JAX).

    Parameters
    ----------
    e_gen : (T, n, n_vG + n_y + n_xG) generalised exogenous inputs of the process.
    eta_gen : (T, d, n_top) generalised prior expectations of the agent's top causes.
    action_mask : (n_y,) non-negative action precisions of the sensory channels.
    action_motion : ``"history"`` or ``"zero"`` (static; see the module docstring).
    world : ``"generalised"`` or ``"instant"`` (static; see :func:`active_flow`).
    """
    validation.check_choice(action_motion, "action_motion", ACTION_MOTIONS)
    validation.check_choice(world, "world", WORLDS)
    flow = active_flow(process, model, jnp.asarray(action_mask, float), kappa_a, log_pi_a,
                       action_motion, world)
    z0 = initial_state(process, model, world)
    return integrate(flow, z0, (e_gen, eta_gen), model.dt,
                     action_memory(process, model, action_motion))


def run(process: Process, model: HDM, causes: jax.Array | None, priors: jax.Array, *,
        z: jax.Array | None = None, w: jax.Array | None = None,
        action_mask: jax.Array | None = None, kappa_a: float | jax.Array = 1.0,
        log_pi_a: float | jax.Array = -2.0, action_motion: str = "history",
        world: str = "instant") -> ActiveOutput:
    """Active inference on plain arrays: the traceable entry point (jit, vmap and grad work).

    Embeds the inputs itself and runs :func:`simulate_core`; no validation and no labels
    (:func:`simulate` adds both). ``process`` and ``model`` are pytrees, so their parameters
    and precisions may be traced.

    Parameters
    ----------
    process, model : the world and the agent (validated, e.g. by :func:`check_inputs`).
    causes : ``(n_vG, T)`` the world's exogenous causes, or ``None`` for none.
    priors : ``(n_top, T)`` the agent's prior expectations of its top causes.
    z, w : ``(n_y, T)`` sensory and ``(n_xG, T)`` state fluctuations of the world (default
        zero: a deterministic world); :func:`draw_noise` draws them.
    action_mask : ``(n_y,)`` action precision of each sensory channel (default ones).
    kappa_a, log_pi_a : rate of action and log-precision of its prior.
    action_motion : ``"history"`` (default; SPM: action's generalised motion from its recent
        history) or ``"zero"`` (action's motion within a bin taken as zero). Static.
    world : ``"instant"`` (default: the sensations an instantaneous function of the world's
        state) or ``"generalised"`` (spm_ALAP/spm_ADEM: the world's generalised sensations
        and states integrated with the rest within each bin). Static; see
        :func:`active_flow`.

    Returns
    -------
    ActiveOutput stacked over the ``T`` bins.
    """
    priors = jnp.asarray(priors, float)
    T = priors.shape[-1]
    causes = jnp.zeros((process.n_v, T)) if causes is None else jnp.asarray(causes, float)
    z = jnp.zeros((process.n_y, T)) if z is None else jnp.asarray(z, float)
    w = jnp.zeros((process.n_x, T)) if w is None else jnp.asarray(w, float)
    e_gen = embed_series(jnp.concatenate([causes, z, w], axis=0), model.n, model.dt)
    # spm_ADEM/spm_ALAP embed the prior to the n orders of the data and keep the first d
    eta_gen = embed_series(priors, model.n, model.dt)[:, :model.d]
    mask = jnp.ones(process.n_y) if action_mask is None else action_mask
    return simulate_core(process, model, e_gen, eta_gen, mask, kappa_a, log_pi_a, action_motion,
                         world)


def draw_noise(process: Process, key: jax.Array, T: int, s: float
               ) -> tuple[jax.Array, jax.Array]:
    """Smooth fluctuations of the world at its precisions: ``z (n_y, T)``, ``w (n_xG, T)``.

    ``s`` (smoothness in bins) must be a concrete number; ``key`` may be an integer seed.
    """
    kz, kw = jax.random.split(validation.as_key(key, default=None))
    return (smooth_noise(kz, (process.n_y, T), s, process.log_pi_z),
            smooth_noise(kw, (process.n_x, T), s, process.log_pi_w))


def check_inputs(process: Process, model: HDM, causes: Any, priors: Any,
                 action_mask: Any) -> tuple[Process, HDM, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a process/model pair and their inputs before tracing."""
    validation.check_type(process, "process", Process, "a cpsych.Process")
    validation.check_type(model, "model", HDM, "a cpsych.HDM")
    process = process.validate()
    model = model.validate()
    if process.n_y != model.n_y:
        raise ValueError(
            f"process and model disagree on the sensory channels: the process's 'g' returns "
            f"{process.n_y} channels but the model's level-1 'g' predicts {model.n_y}"
        )
    priors = validation.check_array(priors, "priors", finite=False)
    if priors.ndim == 1 and model.n_top == 1:
        priors = priors[None, :]
    if priors.ndim != 2 or priors.shape[0] != model.n_top:
        raise ValueError(f"priors: expected shape (n_top, T) = ({model.n_top}, T) for the "
                         f"model's top causes, got {priors.shape}")
    T = priors.shape[1]
    causes = np.zeros((process.n_v, T)) if causes is None \
        else validation.check_array(causes, "causes", finite=False)
    if causes.ndim == 1 and process.n_v == 1:
        causes = causes[None, :]
    if causes.shape != (process.n_v, T):
        raise ValueError(f"causes: expected shape (n_v, T) = ({process.n_v}, {T}) for the "
                         f"process's causes, got {causes.shape}")
    for name, arr in (("causes", causes), ("priors", priors)):
        check_finite(arr, "simulate", name)
    mask = np.ones(process.n_y) if action_mask is None \
        else validation.check_array(action_mask, "action_mask", nonnegative=True)
    if mask.shape != (process.n_y,):
        raise ValueError(f"action_mask: expected shape ({process.n_y},), one gate per sensory "
                         f"channel, got {mask.shape}")
    if not np.all(np.isfinite(mask)) or np.any(mask < 0):
        raise ValueError("action_mask: values must be finite and non-negative")
    return process, model, causes, priors, mask


def simulate(process: Process, model: HDM, causes: Any, priors: Any, *,
             key: jax.Array | None = None, action_mask: Any = None, kappa_a: float = 1.0,
             log_pi_a: float = -2.0, noise: bool = True, time: Any = None,
             time_units: str = "bin", on_divergence: str = "raise",
             action_motion: str = "history", world: str = "instant") -> xr.Dataset:
    """Simulate an agent acting on a process (active inference, SPEC 4).

    Parameters
    ----------
    process : Process
        The world.
    model : HDM
        The agent's generative model; its level-1 ``g`` predicts the process's sensations.
    causes : array ``(n_vG, T)`` or None
        The process's exogenous causes (e.g. an external force).
    priors : array ``(n_top, T)``
        The agent's prior expectations of its top causes over time (e.g. a set-point).
    key : jax.Array or int, optional
        PRNG key for the process noise, or an integer seed (``key=3`` is
        ``jax.random.key(3)``).
    action_mask : array ``(n_y,)``, optional
        Action precision of each sensory channel: how strongly its prediction errors drive
        action, independent of the agent's (possibly attenuated) sensory precision. ``0``
        closes a channel; default all ones (SPM's ``G(1).U``).
    kappa_a : float
        Rate of action.
    log_pi_a : float
        Log-precision of the prior pulling action to zero (SPEC: ``-2``).
    noise : bool
        Draw the process noise (at its precisions); ``False`` for a deterministic world.
    on_divergence : {"raise", "flag"}
        Non-finite values raise ``FloatingPointError`` (naming variable and time) or set
        ``attrs["diverged"] = 1``.
    action_motion : {"history", "zero"}
        Action's generalised motion: the Taylor embedding of its recent history, as spm_ALAP
        (default), or zero within a bin.
    world : {"instant", "generalised"}
        The world's sensations an instantaneous function of its state (default), or its
        generalised sensations and states integrated with the agent within a bin, as
        spm_ALAP/spm_ADEM (:func:`active_flow`; less stable under stiff action: a reaching
        agent with action precision ``exp(4)`` oscillates and diverges).

    Returns
    -------
    xarray.Dataset
        True states ``x_process`` and causes ``v_process``, sensations ``y``, action ``a``,
        the agent's expectations ``x``, ``v`` with variances, predictions ``y_pred``, errors
        ``eps_y``, ``eps_v``, ``eps_x``, sensory log-precisions in force ``log_pi_y`` and the
        free energy ``F``.
    """
    kappa_a = validation.check_scalar(kappa_a, "kappa_a", minimum=0.0,
                                      fix="the rate of action, e.g. kappa_a=1.0")
    log_pi_a = validation.check_scalar(
        log_pi_a, "log_pi_a", fix="a finite log-precision of the prior on action, e.g. -2")
    validation.check_bool(noise, "noise")
    validation.check_choice(on_divergence, "on_divergence", ("raise", "flag"))
    validation.check_choice(action_motion, "action_motion", ACTION_MOTIONS)
    validation.check_choice(world, "world", WORLDS)
    key = validation.as_key(key)
    process, model, causes, priors, mask = check_inputs(process, model, causes, priors,
                                                        action_mask)
    validation.check_time(time, priors.shape[1])
    T = priors.shape[1]
    z, w = draw_noise(process, key, T, float(np.asarray(model.s))) if noise else (None, None)
    out = run_jit(process, model, causes, priors, z=z, w=w, action_mask=jnp.asarray(mask),
                  kappa_a=kappa_a, log_pi_a=log_pi_a, action_motion=action_motion,
                  world=world)
    return active_dataset(process, model, out, time, time_units, on_divergence)


run_jit = jax.jit(run, static_argnames=("action_motion", "world"))


def active_dataset(process: Process, model: HDM, out: ActiveOutput, time=None,
                   time_units: str = "bin", on_divergence: str = "raise") -> xr.Dataset:
    """Wrap an :class:`ActiveOutput` as a labelled dataset: the agent's side as in
    :func:`cpsych.invert` (with ``y`` the sensory samples), plus the world and action."""
    pxn, pvn, pan, pyn = process.names()
    y = np.asarray(out.y).T
    ds = filter_dataset(model, out.belief, y, time, time_units,
                        {"scheme": "active inference"})
    ds = ds.assign_coords(channel=pyn, process_state=pxn, process_cause=pvn, action=pan)
    ds["y"].attrs["long_name"] = "sensory samples"
    ds["x_process"] = (("time", "process_state"), np.asarray(out.x_process),
                       {"long_name": "true states of the process"})
    ds["v_process"] = (("time", "process_cause"), np.asarray(out.v_process),
                       {"long_name": "true causes of the process"})
    ds["a"] = (("time", "action"), np.asarray(out.a), {"long_name": "action"})
    return check_finite_result(ds, "active inference", on_divergence)
