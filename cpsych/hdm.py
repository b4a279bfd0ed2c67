"""Hierarchical dynamic models (HDMs): specification and validation.

An HDM has levels ``i = 1..m`` (SPEC section 2)::

    v^(i-1)  = g^(i)(x^(i), v^(i), theta^(i)) + z^(i)      (v^(0) = y, the data)
    dx^(i)/dt = f^(i)(x^(i), v^(i), theta^(i)) + w^(i)
    v^(m)    = eta + z^(m+1)

with smooth fluctuations ``z, w`` of log-precisions ``log_pi_z`` and ``log_pi_w`` and
temporal smoothness ``s``. Structure (functions, sizes, orders, names) is static: it decides
what JAX compiles. Numbers (precisions, parameters, initial states, priors, smoothness) are
pytree leaves, so changing them never recompiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import validation

__all__ = ["Level", "HDM", "check_finite", "PRECISION_CURVATURES"]

#: Choices of :attr:`HDM.precision_curvature`.
PRECISION_CURVATURES = ("spm", "gauss-newton")

Fn = Callable[[jax.Array, jax.Array, Any], jax.Array]


def _field_static(**kw):
    return dataclasses.field(metadata={"static": True}, **kw)


def _as_vector(value, size: int, where: str, field: str) -> np.ndarray | jax.Array:
    """Broadcast a scalar or vector to ``(size,)``, raising a clear error otherwise."""
    if isinstance(value, jax.core.Tracer):
        return jnp.broadcast_to(value, (size,))
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: field '{field}' must be a number or an array of numbers, "
                        f"got {validation.fmt(value)}") from None
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    if arr.shape != (size,):
        raise ValueError(
            f"{where}: field '{field}' must be a scalar or have shape ({size},), "
            f"got shape {arr.shape}"
        )
    return arr


def check_finite(value, where: str, field: str, positive: bool = False) -> None:
    """Raise ``ValueError`` naming ``where``/``field`` if ``value`` is not finite (or > 0)."""
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: field '{field}' has non-finite values: {arr}")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{where}: field '{field}' must be positive, got {arr}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Level:
    """One level of a hierarchical dynamic model.

    Parameters
    ----------
    g : callable ``g(x, v, theta) -> array``
        Prediction of the causes of the level below (of the data ``y`` at level 1).
    n_x, n_v : int
        Number of hidden states ``x`` and causes ``v`` at this level.
    f : callable ``f(x, v, theta) -> array`` or None
        Equations of motion of the hidden states (``None`` when ``n_x == 0``).
    theta : pytree
        Parameters passed to ``f``, ``g`` and ``log_pi_z_fn``.
    log_pi_z : float or array
        Log-precision of the fluctuations ``z`` on ``g`` (one per output of ``g``).
    log_pi_w : float or array
        Log-precision of the state fluctuations ``w`` (one per hidden state).
    pi_z, pi_w : float or array, optional
        Precisions (not log) of ``z`` and ``w``; when given they must be positive and replace
        ``log_pi_z`` / ``log_pi_w``.
    log_pi_z_fn : callable ``(x, v, theta) -> array`` or None
        State-dependent log-precision of ``z``; replaces ``log_pi_z`` when given
        (attention, sensory attenuation: SPEC section 3).
    x0, v0 : array
        Initial (prior) expectations of states and causes.
    log_pi_x, log_pi_v : float or array, optional
        Log-precisions of fixed Gaussian priors, about zero, on this level's generalised
        states and causes (SPM's ``M(i).xP`` and ``M(i+1).vP``, as ``log(diag(.))``). They act
        with the temporal precision ``R(n, 2)`` (``R(d, 2)`` for causes) of smoothness 2
        bins, as spm_LAP applies them: the prior ``Pu = kron(R(n, 2), diag(exp(log_pi_x)))``
        adds ``Pu u~`` to the gradient and ``Pu`` to the curvature. ``None`` (default): no
        prior.
    x_names, v_names, out_names : sequence of str
        Names of the states, the causes and the outputs of ``g``; they become coordinates of
        the results.
    """

    g: Fn = _field_static()
    n_x: int = _field_static(default=0)
    n_v: int = _field_static(default=0)
    f: Fn | None = _field_static(default=None)
    theta: Any = None
    log_pi_z: Any = 8.0
    log_pi_w: Any = 8.0
    log_pi_z_fn: Fn | None = _field_static(default=None)
    x0: Any = None
    v0: Any = None
    x_names: tuple[str, ...] | None = _field_static(default=None)
    v_names: tuple[str, ...] | None = _field_static(default=None)
    out_names: tuple[str, ...] | None = _field_static(default=None)
    pi_z: Any = None
    pi_w: Any = None
    log_pi_x: Any = None
    log_pi_v: Any = None

    def __post_init__(self) -> None:
        validation.check_fields(self, "Level", sizes={"n_x": 0, "n_v": 0}, functions={
            "g": ("g(x, v, theta) -> array", False), "f": ("f(x, v, theta) -> array", True),
            "log_pi_z_fn": ("log_pi_z_fn(x, v, theta) -> array", True)},
            names=("x_names", "v_names", "out_names"))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HDM:
    """A hierarchical dynamic model: levels, top-level prior and embedding settings.

    Parameters
    ----------
    levels : sequence of :class:`Level`
        Level 1 predicts the data; level ``m`` holds the top causes.
    eta : float, array ``(n_v_top,)`` or ``(n_v_top, T)``
        Prior expectation of the top causes (constant or a time series).
    log_pi_eta : float or array
        Log-precision of the top causes about ``eta``.
    n : int
        Generalised coordinates of states and errors (SPM's ``E.n + 1``).
    d : int
        Generalised coordinates of causes (SPM's ``E.d + 1``), ``1 <= d <= n``.
    s : float
        Smoothness of the fluctuations in time bins.
    dt : float
        Time bin (integration step and sampling interval).
    kappa : float
        Rate of generalised descent (SPM's ``E.K``, default 1): the recognition flow is
        ``D mu~ - kappa dL/dmu~``. It scales the gradient, the curvature and the coupling to
        the data and prior, never the shift operator ``D``; it does not change the
        conditional covariance ``inv(H)``. ``kappa -> 0`` freezes the expectations in their
        moving frame; large ``kappa`` makes the flow stiffer.
    precision_curvature : {"spm", "gauss-newton"}
        The curvature used with state-dependent precision (``Level.log_pi_z_fn``); the
        gradient is exact either way. ``"spm"`` (default, spm_LAP): the flow's Jacobian, its
        coupling to the data and the conditional precision are ``J' Pi J`` (plus the state
        priors), without terms from the precision's dependence on the states.
        ``"gauss-newton"``: adds the positive semi-definite Gauss-Newton part of those terms,
        ``sum_c 1/2 exp(p_c) (e_c' R e_c) dp_c/du dp_c/du'``, to the Jacobian, the exact
        coupling, and the expected (Fisher) curvature ``n/2 Lam' Lam`` of the log-precisions
        to the conditional precision; it stays stable where spm_LAP's form diverges (strong
        sensory attenuation, :mod:`cpsych.models.force_matching`). Without state-dependent
        precision the two are the same.
    """

    levels: tuple[Level, ...]
    eta: Any = 0.0
    log_pi_eta: Any = 0.0
    n: int = _field_static(default=4)
    d: int = _field_static(default=2)
    s: Any = 0.5
    dt: float = _field_static(default=1.0)
    kappa: Any = 1.0
    precision_curvature: str = _field_static(default="spm")

    # ------------------------------------------------------------------ sizes
    @property
    def n_x(self) -> int:
        """Total number of hidden states over levels."""
        return sum(lv.n_x for lv in self.levels)

    @property
    def n_v(self) -> int:
        """Total number of causes over levels."""
        return sum(lv.n_v for lv in self.levels)

    @property
    def n_top(self) -> int:
        """Number of top-level causes (those with the prior ``eta``)."""
        return self.levels[-1].n_v

    def n_out(self, i: int) -> int:
        """Number of outputs of ``g`` at level ``i`` (0-based)."""
        return self.n_y if i == 0 else self.levels[i - 1].n_v

    @property
    def n_y(self) -> int:
        """Number of data channels."""
        lv = self.levels[0]
        return int(_eval_shape(lv.g, lv).shape[0])

    # ---------------------------------------------------------------- names
    @property
    def x_names(self) -> list[str]:
        out = []
        for i, lv in enumerate(self.levels):
            out += list(lv.x_names or [f"x{i + 1}_{k + 1}" for k in range(lv.n_x)])
        return out

    @property
    def v_names(self) -> list[str]:
        out = []
        for i, lv in enumerate(self.levels):
            out += list(lv.v_names or [f"v{i + 1}_{k + 1}" for k in range(lv.n_v)])
        return out

    @property
    def y_names(self) -> list[str]:
        lv = self.levels[0]
        return list(lv.out_names or [f"y{k + 1}" for k in range(self.n_y)])

    def x_level(self) -> list[int]:
        return [i + 1 for i, lv in enumerate(self.levels) for _ in range(lv.n_x)]

    def v_level(self) -> list[int]:
        return [i + 1 for i, lv in enumerate(self.levels) for _ in range(lv.n_v)]

    def settings(self) -> dict[str, Any]:
        """Static settings as plain values (for result ``attrs``)."""
        return {"n": self.n, "d": self.d, "s": float(np.asarray(self.s)), "dt": self.dt,
                "levels": len(self.levels)}

    # ----------------------------------------------------------- validation
    def validate(self) -> HDM:
        """Check sizes and precisions, returning a model with every field as a float array.

        Raises
        ------
        ValueError
            Naming the level and field, for sizes that do not match what ``f``/``g``
            return, non-finite precisions, ``n < 1``, ``d`` outside ``1..n`` or ``s < 0``.
        """
        if not isinstance(self.levels, tuple | list) or not all(
                isinstance(lv, Level) for lv in self.levels):
            raise TypeError("HDM: field 'levels' must be a tuple of Level, got "
                            f"{validation.fmt(self.levels)}")
        if not self.levels:
            raise ValueError("HDM: field 'levels' must hold at least one Level")
        for field in ("n", "d"):
            validation.check_int(getattr(self, field), f"HDM: field '{field}'")
        validation.check_scalar(self.dt, "HDM: field 'dt'", minimum=0.0, strict_min=True)
        if not isinstance(self.n, int | np.integer) or self.n < 1:
            raise ValueError(
                f"HDM: field 'n' (embedding order) must be an integer >= 1, got {self.n}")
        if not isinstance(self.d, int | np.integer) or not 1 <= self.d <= self.n:
            raise ValueError(
                f"HDM: field 'd' must be an integer with 1 <= d <= n = {self.n}, got {self.d}")
        if not validation.is_traced(self.s):
            validation.check_array(self.s, "HDM: field 's'", ndim=0, finite=False)
        check_finite(self.s, "HDM", "s")
        if not isinstance(self.s, jax.core.Tracer) and np.any(np.asarray(self.s) < 0):
            raise ValueError(f"HDM: field 's' (smoothness) must be >= 0, got {self.s}")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"HDM: field 'dt' must be a positive number, got {self.dt}")
        check_finite(self.kappa, "HDM", "kappa", positive=True)
        if not isinstance(self.kappa, jax.core.Tracer) and np.ndim(self.kappa) != 0:
            raise ValueError(
                f"HDM: field 'kappa' (rate of generalised descent) must be a scalar, "
                f"got shape {np.shape(self.kappa)}")
        validation.check_choice(self.precision_curvature, "HDM: field 'precision_curvature'",
                                PRECISION_CURVATURES)
        levels = []
        for i, lv in enumerate(self.levels):
            where = f"level {i + 1}"
            if lv.n_x < 0 or lv.n_v < 0:
                raise ValueError(f"{where}: fields 'n_x' and 'n_v' must be >= 0")
            if lv.n_x > 0 and lv.f is None:
                raise ValueError(f"{where}: field 'f' is required when n_x = {lv.n_x} > 0")
            x0 = _as_vector(0.0 if lv.x0 is None else lv.x0, lv.n_x, where, "x0")
            v0 = _as_vector(0.0 if lv.v0 is None else lv.v0, lv.n_v, where, "v0")
            check_finite(x0, where, "x0")
            check_finite(v0, where, "v0")
            lv = dataclasses.replace(lv, x0=x0, v0=v0)
            try:
                out = _eval_shape(lv.g, lv)
            except Exception as err:  # noqa: BLE001 - re-raised with context
                raise ValueError(
                    f"{where}: field 'g' failed on x of shape ({lv.n_x},) and v of shape "
                    f"({lv.n_v},): {err}"
                ) from err
            n_out = out.shape[0] if out.ndim == 1 else -1
            expected = None if i == 0 else self.levels[i - 1].n_v
            if out.ndim != 1 or (expected is not None and n_out != expected):
                raise ValueError(
                    f"{where}: field 'g' returns shape {out.shape}, but it must return a vector "
                    f"of length {expected if expected is not None else 'n_y'}"
                    + ("" if i == 0 else f" (n_v of level {i})")
                )
            if lv.f is not None:
                try:
                    fo = _eval_shape(lv.f, lv)
                except Exception as err:  # noqa: BLE001
                    raise ValueError(f"{where}: field 'f' failed: {err}") from err
                if fo.shape != (lv.n_x,):
                    raise ValueError(
                        f"{where}: field 'f' returns shape {fo.shape}, expected ({lv.n_x},) = n_x"
                    )
            for field in ("g", "f", "log_pi_z_fn"):
                validation.check_indexing(getattr(lv, field), where, field,
                                          {"x": lv.n_x, "v": lv.n_v}, lv.theta)
            for field in ("pi_z", "pi_w"):
                value = getattr(lv, field)
                if value is not None:
                    check_finite(value, where, field, positive=True)
                    log_value = np.log(np.asarray(value, float))
                    lv = dataclasses.replace(lv, **{"log_" + field: log_value, field: None})
            log_pi_z = _as_vector(lv.log_pi_z, n_out, where, "log_pi_z")
            log_pi_w = _as_vector(lv.log_pi_w, lv.n_x, where, "log_pi_w")
            check_finite(log_pi_z, where, "log_pi_z")
            check_finite(log_pi_w, where, "log_pi_w")
            priors = {}
            for field, size in (("log_pi_x", lv.n_x), ("log_pi_v", lv.n_v)):
                value = getattr(lv, field)
                if value is not None:
                    value = _as_vector(value, size, where, field)
                    check_finite(value, where, field)
                    priors[field] = value
            lv = dataclasses.replace(lv, **priors)
            if lv.log_pi_z_fn is not None:
                po = _eval_shape(lv.log_pi_z_fn, lv)
                if po.shape != (n_out,):
                    raise ValueError(
                        f"{where}: field 'log_pi_z_fn' returns shape {po.shape}, "
                        f"expected ({n_out},)"
                    )
            for name, names, size in (("x_names", lv.x_names, lv.n_x),
                                      ("v_names", lv.v_names, lv.n_v),
                                      ("out_names", lv.out_names, n_out)):
                if names is not None and len(names) != size:
                    raise ValueError(
                        f"{where}: field '{name}' has {len(names)} names for {size} values")
            levels.append(dataclasses.replace(lv, log_pi_z=log_pi_z, log_pi_w=log_pi_w))
        top = levels[-1].n_v
        log_pi_eta = _as_vector(self.log_pi_eta, top, "prior", "log_pi_eta")
        check_finite(log_pi_eta, "prior", "log_pi_eta")
        check_finite(self.eta, "prior", "eta")
        traced = isinstance(self.eta, jax.core.Tracer)
        eta = self.eta if traced else np.asarray(self.eta, dtype=float)
        if eta.ndim == 0:
            eta = np.full(top, float(eta))
        if eta.ndim not in (1, 2) or eta.shape[0] != top:
            raise ValueError(
                f"prior: field 'eta' must be a scalar, ({top},) or ({top}, T), "
                f"got shape {eta.shape}"
            )
        return dataclasses.replace(self, levels=tuple(levels), eta=eta, log_pi_eta=log_pi_eta,
                                   s=_as_float(self.s), kappa=_as_float(self.kappa))


def _as_float(value):
    """A float array (a traced value stays traced)."""
    if isinstance(value, jax.core.Tracer):
        return jnp.asarray(value, dtype=float)
    return np.asarray(value, dtype=float)


def _eval_shape(fn: Fn, lv: Level):
    x = jax.ShapeDtypeStruct((lv.n_x,), jnp.float64)
    v = jax.ShapeDtypeStruct((lv.n_v,), jnp.float64)
    return jax.eval_shape(lambda a, b: jnp.asarray(fn(a, b, lv.theta)), x, v)


def stack_levels(levels: Sequence[Level]):
    """Helpers mapping the flat state/cause vectors to levels (static index slices)."""
    xs, vs = [], []
    ix = iv = 0
    for lv in levels:
        xs.append(slice(ix, ix + lv.n_x))
        vs.append(slice(iv, iv + lv.n_v))
        ix += lv.n_x
        iv += lv.n_v
    return xs, vs
