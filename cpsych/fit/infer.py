"""Inference: optax point estimates, NUTS posteriors, diagnostics and xarray results.

* :func:`map_estimate` — maximum a posteriori with ``optax.lbfgs`` on numpyro's potential
  energy (the negative log joint in the unconstrained space: positive parameters are
  optimised on the log scale, whose Jacobian keeps hierarchical scales away from zero).
  Used for quick point estimates and to initialise NUTS.
* :func:`sample_nuts` — ``numpyro`` NUTS, chains vectorised in one process (SPEC 8: splitting
  across forced CPU devices hung), returning a :class:`Fit`.
* :class:`Fit` — the posterior as ``xarray`` in ArviZ's layout: groups ``posterior``
  (``chain``, ``draw``, then the variable's own dimensions, e.g. ``participant``),
  ``sample_stats`` (``diverging``), ``posterior_predictive``, ``observed_data``, plus
  ``summary`` (mean, SD, 5 % and 95 % quantiles, split R-hat and effective sample size from
  ``numpyro.diagnostics``, per variable). :meth:`Fit.save` writes one netCDF file with one
  group each (``arviz.from_netcdf`` reads it); :func:`load_fit` reads it back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS, Predictive, init_to_value
from numpyro.infer.util import initialize_model

from ..optimise import lbfgs
from ..results import atomic_path

__all__ = ["MapResult", "Fit", "map_estimate", "sample_nuts", "summarise", "load_fit",
           "GROUPS"]

GROUPS = ("posterior", "sample_stats", "posterior_predictive", "observed_data", "summary")


@dataclass
class MapResult:
    """A point estimate: constrained values (with deterministic sites), its loss history."""

    values: dict[str, np.ndarray]
    unconstrained: dict[str, jax.Array]
    losses: np.ndarray  # negative log joint per iteration
    seconds: float
    converged: bool


def map_estimate(model: Callable, *args: Any, steps: int = 300, seed: int = 0,
                 tol: float = 1e-6, init: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> MapResult:
    """MAP estimate of a numpyro model with ``optax.lbfgs`` (zoom line search).

    Parameters
    ----------
    model, args, kwargs : the numpyro model and its arguments (observations included).
    steps : largest number of L-BFGS iterations.
    tol : stop when the gradient norm falls below ``tol``.
    init : optional constrained starting values (default: numpyro's ``init_to_uniform`` draw
        around the prior median, seeded).
    """
    from numpyro.infer import init_to_median

    t0 = time.perf_counter()
    strategy = init_to_value(values=dict(init)) if init else init_to_median()
    info = initialize_model(jax.random.PRNGKey(seed), model, model_args=args,
                            model_kwargs=kwargs, init_strategy=strategy)
    z0 = info.param_info.z
    potential = info.potential_fn
    res = lbfgs(potential, z0, max_iter=steps, tol=tol)
    z, hist, gnorm = res.x, res.history, res.grad_norm
    values = info.postprocess_fn(z)
    values = {k: np.asarray(v) for k, v in values.items()}
    return MapResult(values, z, hist, time.perf_counter() - t0,
                     bool(np.isfinite(gnorm) and gnorm <= max(tol, 1e-3)))


def summarise(posterior: xr.Dataset) -> xr.Dataset:
    """Mean, SD, 5 %/95 % quantiles, split R-hat and ESS of every posterior variable."""
    out = {}
    stats = ["mean", "sd", "q05", "q95", "r_hat", "ess"]
    for name, da in posterior.data_vars.items():
        x = np.asarray(da.values, float)  # (chain, draw, ...)
        flat = x.reshape(-1, *x.shape[2:])
        rows = [flat.mean(0), flat.std(0), np.quantile(flat, 0.05, axis=0),
                np.quantile(flat, 0.95, axis=0)]
        if x.shape[0] > 1 and x.shape[1] > 3:
            rows += [np.asarray(split_gelman_rubin(x)), np.asarray(effective_sample_size(x))]
        else:
            rows += [np.full(x.shape[2:], np.nan), np.full(x.shape[2:], np.nan)]
        out[name] = (("stat", *da.dims[2:]), np.stack(rows), dict(da.attrs))
    return xr.Dataset(out, coords={"stat": stats, **{k: v for k, v in posterior.coords.items()
                                                     if k not in ("chain", "draw")}})


@dataclass
class Fit:
    """Results of :func:`sample_nuts` (xarray datasets in ArviZ's layout)."""

    posterior: xr.Dataset
    sample_stats: xr.Dataset
    posterior_predictive: xr.Dataset
    observed_data: xr.Dataset
    summary: xr.Dataset

    @property
    def max_r_hat(self) -> float:
        vals = [np.nanmax(self.summary[v].sel(stat="r_hat").values) for v in self.summary]
        return float(np.nanmax(vals))

    @property
    def min_ess(self) -> float:
        vals = [np.nanmin(self.summary[v].sel(stat="ess").values) for v in self.summary]
        return float(np.nanmin(vals))

    @property
    def divergences(self) -> int:
        return int(self.sample_stats["diverging"].sum())

    def save(self, path: str | os.PathLike) -> Path:
        """One netCDF file, one group per dataset (atomic: temporary file, then rename)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            for i, g in enumerate(GROUPS):
                _clean(getattr(self, g)).to_netcdf(tmp, mode="w" if i == 0 else "a", group=g,
                                                   engine="netcdf4")
        return path


def _clean(ds: xr.Dataset) -> xr.Dataset:
    """netCDF-safe attributes (lists of strings and booleans to strings/ints)."""
    ds = ds.copy()

    def fix(attrs):
        out = {}
        for k, v in attrs.items():
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
                v = ", ".join(v)
            elif isinstance(v, dict):
                v = repr(v)
            out[k] = v
        return out

    ds.attrs = fix(ds.attrs)
    for v in ds.variables.values():
        v.attrs = fix(v.attrs)
    return ds


def load_fit(path: str | os.PathLike) -> Fit:
    """Read a :class:`Fit` written by :meth:`Fit.save`."""
    groups = {}
    for g in GROUPS:
        with xr.open_dataset(path, group=g, engine="netcdf4") as ds:
            groups[g] = ds.load()
    return Fit(**groups)


def _to_dataset(samples: Mapping[str, np.ndarray], dims: Mapping[str, tuple[str, ...]],
                coords: Mapping[str, Any], attrs: Mapping[str, Mapping[str, Any]],
                lead: tuple[str, ...] = ("chain", "draw")) -> xr.Dataset:
    data = {}
    for name, x in samples.items():
        x = np.asarray(x)
        own = tuple(dims.get(name, ()))
        extra = x.ndim - len(lead) - len(own)
        own = own + tuple(f"{name}_dim_{i}" for i in range(extra))
        data[name] = (lead + own, x, dict(attrs.get(name, {})))
    ds = xr.Dataset(data)
    used = {d for v in ds.data_vars.values() for d in v.dims}
    ds = ds.assign_coords({k: (k, np.asarray(v)) for k, v in coords.items() if k in used})
    return ds.assign_coords({d: np.arange(ds.sizes[d]) for d in lead})


def sample_nuts(model: Callable, *args: Any, observed: Mapping[str, np.ndarray],
                dims: Mapping[str, tuple[str, ...]], coords: Mapping[str, Any],
                attrs: Mapping[str, Mapping[str, Any]] | None = None,
                chains: int = 4, warmup: int = 500, draws: int = 1000, seed: int = 0,
                init: Mapping[str, Any] | None = None, target_accept: float = 0.9,
                predictive: bool = True, progress: bool = False, **kwargs: Any) -> Fit:
    """Sample the posterior of ``model(*args, **observed, **kwargs)`` with NUTS.

    Parameters
    ----------
    observed : observed sites by keyword (passed to the model; ``None`` for the predictive).
    dims, coords : dimension names of each site after ``(chain, draw)`` and their labels.
    attrs : per-variable attributes (units, long names).
    init : constrained starting values (e.g. :func:`map_estimate` values), shared by chains
        (NUTS's warm-up then disperses them).
    predictive : also draw the posterior predictive of the observed sites.
    """
    attrs = attrs or {}
    strategy = init_to_value(values=dict(init)) if init else None
    kern = NUTS(model, target_accept_prob=target_accept,
                **({"init_strategy": strategy} if strategy else {}))
    mcmc = MCMC(kern, num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="vectorized", progress_bar=progress)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), *args, **observed, **kwargs,
             extra_fields=("diverging", "num_steps"))
    seconds = time.perf_counter() - t0
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    post = _to_dataset(samples, dims, coords, attrs)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.asarray(extra["diverging"], bool)),
         "n_steps": (("chain", "draw"), np.asarray(extra["num_steps"], int))},
        coords={"chain": np.arange(chains), "draw": np.arange(draws)},
        attrs={"sampling_time_s": seconds, "warmup": warmup, "target_accept": target_accept,
               "sampler": "numpyro NUTS (vectorised chains)"})
    obs = {k: v for k, v in observed.items() if v is not None}
    pp = xr.Dataset()
    if predictive and obs:
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in samples.items()}
        pred = Predictive(model, posterior_samples=flat, return_sites=list(obs))
        none_obs = {k: None for k in obs}
        out = pred(jax.random.PRNGKey(seed + 1), *args, **none_obs, **kwargs)
        pp = _to_dataset({k: np.asarray(v).reshape(chains, draws, *np.shape(v)[1:])
                          for k, v in out.items()}, dims, coords, attrs)
    observed_ds = _to_dataset({k: np.asarray(v) for k, v in obs.items()}, dims, coords,
                              attrs, lead=())
    summary = summarise(post)
    fit = Fit(post, stats, pp, observed_ds, summary)
    post.attrs.update({"sampling_time_s": seconds, "chains": chains, "draws": draws,
                       "max_r_hat": fit.max_r_hat, "min_ess": fit.min_ess,
                       "divergences": fit.divergences})
    return fit
