"""``generate``: forward simulation of an HDM with smooth random fluctuations."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import integrator
from . import validation as val
from .gencoords import embed_series, smooth_noise
from .hdm import HDM, stack_levels
from .results import check_finite_result, clean_attrs, time_coord
from .version import __version__

__all__ = ["generate", "simulate_hdm", "draw_noise"]


class Trajectory(NamedTuple):
    x: jax.Array  # (T, n_x) true hidden states (held before the update at t)
    v: jax.Array  # (T, n_v) true causes
    y: jax.Array  # (T, n_y) data


def simulate_hdm(model: HDM, causes: jax.Array, z: jax.Array, w: jax.Array) -> Trajectory:
    """Integrate an HDM forward in generalised coordinates, with given fluctuations.

    Parameters
    ----------
    causes : (n_top, T) expected top causes (``eta``); the realised top cause is
        ``causes + z[n_y + n_v - n_top:]``.
    z : (n_y + n_v, T) fluctuations on every level's output then on the top causes.
    w : (n_x, T) state fluctuations.

    The exogenous series ``e = [causes, z, w]`` are embedded in ``n`` generalised coordinates
    and the states move under the one integrator (:mod:`cpsych.integrator`) with the flow
    ``F(x, e)`` of every level's states, causes passed down the hierarchy: ``A = dF/dx`` and
    ``B = dF/de~`` (only the zeroth order of ``e~`` enters ``F``). The value at bin ``t`` is the
    one held before that bin's update.
    """
    sx, sv = stack_levels(model.levels)
    n_y = z.shape[0] - model.n_v
    n_top = causes.shape[0]
    x0 = jnp.concatenate([jnp.asarray(lv.x0, float) for lv in model.levels])
    m = len(model.levels)
    e_gen = embed_series(jnp.concatenate([causes, z, w], axis=0), model.n, model.dt)

    def hierarchy(x, e):
        c_t = e[:n_top]
        z_t = e[n_top:n_top + n_y + model.n_v]
        w_t = e[n_top + n_y + model.n_v:]
        v = jnp.zeros(model.n_v, x.dtype)
        v = v.at[sv[-1]].set(c_t + z_t[n_y + sv[-1].start: n_y + sv[-1].stop])
        fs = []
        y_t = None
        for i in reversed(range(m)):
            lv = model.levels[i]
            x_i, v_i = x[sx[i]], v[sv[i]]
            out = jnp.asarray(lv.g(x_i, v_i, lv.theta), x.dtype)
            if i == 0:
                y_t = out + z_t[:n_y]
            else:
                v = v.at[sv[i - 1]].set(out + z_t[n_y + sv[i - 1].start: n_y + sv[i - 1].stop])
            if lv.n_x:
                fs.insert(0, jnp.asarray(lv.f(x_i, v_i, lv.theta), x.dtype) + w_t[sx[i]])
        f_all = jnp.concatenate(fs) if fs else jnp.zeros(0, x.dtype)
        return f_all, (y_t, v)

    def flow(x, e):
        q, (y_t, v) = hierarchy(x, e[0])
        A, Be = jax.jacfwd(lambda a, b: hierarchy(a, b)[0], argnums=(0, 1))(x, e[0])
        B = jnp.zeros((x.shape[0],) + e.shape, x.dtype).at[:, 0].set(Be)
        return integrator.Flow(q, A, B.reshape(x.shape[0], -1)), Trajectory(x=x, v=v, y=y_t)

    return integrator.integrate(flow, x0, e_gen, model.dt)


def draw_noise(model: HDM, key: jax.Array, T: int, n_y: int) -> tuple[jax.Array, jax.Array]:
    """Smooth fluctuations ``z`` (outputs then top causes) and ``w`` at the model's precisions."""
    kz, kw = jax.random.split(key)
    log_pz = jnp.concatenate([jnp.asarray(lv.log_pi_z, float) for lv in model.levels]
                             + [jnp.asarray(model.log_pi_eta, float)])
    s = float(np.asarray(model.s))
    z = smooth_noise(kz, (n_y + model.n_v, T), s, log_pz)
    if model.n_x:
        log_pw = jnp.concatenate([jnp.asarray(lv.log_pi_w, float) for lv in model.levels])
        w = smooth_noise(kw, (model.n_x, T), s, log_pw)
    else:
        w = jnp.zeros((0, T))
    return z, w


_simulate_jit = jax.jit(simulate_hdm)


def generate(model: HDM, causes: Any, key: jax.Array | None = None, *, z: Any = None,
             w: Any = None, time: Any = None, time_units: str = "bin",
             on_divergence: str = "raise") -> xr.Dataset:
    """Simulate data from an HDM driven by top-level causes, with smooth noise.

    Parameters
    ----------
    model : HDM
        The model whose levels generate the data. Its precisions set the noise amplitudes
        (state-dependent precisions are not used for generation).
    causes : array, shape (n_top, T)
        Expected top-level causes over time.
    key : jax.Array or int, optional
        PRNG key for the fluctuations, or an integer seed (``key=3`` is
        ``jax.random.key(3)``; default ``jax.random.key(0)``).
    z, w : arrays, optional
        Fluctuations to inject instead of drawing them: ``z`` of shape ``(n_y + n_v, T)``
        (every level's output, then the top causes) and ``w`` of shape ``(n_x, T)``.

    Returns
    -------
    xarray.Dataset
        ``y`` (data), ``x`` (true states), ``v`` (true causes), ``z`` and ``w``.
    """
    val.check_type(model, "model", HDM, "a cpsych.HDM")
    val.check_choice(on_divergence, "on_divergence", ("raise", "flag"))
    model = model.validate()
    causes = val.check_array(causes, "causes", ndim=(1, 2))
    if causes.ndim == 1 and model.n_top == 1:
        causes = causes[None, :]
    val.check_array(causes, "causes", shape=(model.n_top, None),
                    fix=f"one row per top-level cause ({model.n_top}), one column per bin")
    T = causes.shape[1]
    if T < 1:
        raise ValueError("causes: has no time bins; pass at least one column")
    val.check_time(time, T)
    n_y = model.n_y
    key = val.as_key(key)
    if z is not None:
        z = val.check_array(z, "z", shape=(n_y + model.n_v, T))
    if w is not None:
        w = val.check_array(w, "w", shape=(model.n_x, T))
    z_d, w_d = draw_noise(model, key, T, n_y)
    z = z_d if z is None else z
    w = w_d if w is None else w
    traj = _simulate_jit(model, jnp.asarray(causes), jnp.asarray(z), jnp.asarray(w))
    xs, vs, ys = model.x_names, model.v_names, model.y_names
    zn = ys + vs
    ds = xr.Dataset(
        {
            "y": (("time", "channel"), np.asarray(traj.y), {"long_name": "generated data"}),
            "x": (("time", "state"), np.asarray(traj.x), {"long_name": "true hidden states"}),
            "v": (("time", "cause"), np.asarray(traj.v), {"long_name": "true causes"}),
            "z": (("time", "z_channel"), np.asarray(z).T, {"long_name": "output fluctuations"}),
            "w": (("time", "state"), np.asarray(w).T, {"long_name": "state fluctuations"}),
        },
        coords={"time": time_coord(T, model.dt, time, time_units), "state": xs, "cause": vs,
                "channel": ys, "z_channel": zn},
        attrs=clean_attrs({"cpsych_version": __version__,
                           **{f"model_{k}": v for k, v in model.settings().items()}}),
    )
    return check_finite_result(ds, "generation", on_divergence)
