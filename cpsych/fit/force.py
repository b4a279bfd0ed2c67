"""Fitting force-matching data end to end: emulator, MAP, NUTS, synthetic participants.

>>> ds = load_force_matching("experiments/data/force_matching_example.csv")   # doctest: +SKIP
>>> fit = fit_force_matching(ds)                                              # doctest: +SKIP
>>> fit.posterior["delta_h"].mean(("chain", "draw"))                          # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import xarray as xr

from .infer import Fit, MapResult, map_estimate, sample_nuts
from .models import ForceData, ForcePriors, force_data, force_matching_model
from .simulators import Emulator, build_emulator

__all__ = ["default_emulator", "fit_force_matching", "map_force_matching", "synthetic_force_data",
           "force_dims", "force_coords", "FORCE_ATTRS"]

FORCE_ATTRS = {
    "mu_h": {"units": "log-precision", "long_name": "reference-group mean attenuation"},
    "delta_h": {"units": "log-precision", "long_name": "group difference in mean attenuation"},
    "group_mean_h": {"units": "log-precision", "long_name": "group mean attenuation"},
    "sigma_h": {"units": "log-precision", "long_name": "between-participant SD of attenuation"},
    "z_h": {"units": "1", "long_name": "standardised participant deviation (non-centred)"},
    "h": {"units": "log-precision", "long_name": "attenuation (reference condition)"},
    "beta_h": {"units": "log-precision", "long_name": "condition effect on attenuation"},
    "sigma_obs": {"units": "N", "long_name": "SD of matched force about the model"},
    "matched": {"units": "N", "long_name": "matched (produced) force"},
}


@functools.lru_cache(maxsize=4)
def default_emulator(h_lo: float = -2.0, h_hi: float = 12.0, dh: float = 0.5,
                     level_hi: float = 4.0, dlevel: float = 0.125,
                     target_hi: float = 3.0) -> tuple[Emulator, xr.Dataset]:
    """The force-matching emulator on a standard grid (cached per process).

    Default: ``h`` from -2 to 12 in steps of 0.5 (the prior ``N(6, 2)`` +- 4 SD), intended
    levels 0..4 N in steps of 0.125 N, targets 0..3 N in steps of 0.05 N:
    29 x 33 = 957 simulated trials.
    """
    n_h = int(round((h_hi - h_lo) / dh)) + 1
    n_l = int(round(level_hi / dlevel)) + 1
    return build_emulator(np.linspace(h_lo, h_hi, n_h), np.linspace(0.0, level_hi, n_l),
                          np.linspace(0.0, target_hi, int(round(target_hi / 0.05)) + 1))


def force_dims(data: ForceData) -> dict[str, tuple[str, ...]]:
    return {"delta_h": ("group_contrast",), "group_mean_h": ("group",),
            "z_h": ("participant",), "h": ("participant",), "beta_h": ("condition_contrast",),
            "matched": ("trial",)}


def force_coords(data: ForceData) -> dict[str, np.ndarray]:
    return {"participant": np.asarray(data.participants), "group": np.asarray(data.groups),
            "group_contrast": np.asarray(data.group_contrasts),
            "condition_contrast": np.asarray(data.condition_contrasts),
            "trial": np.arange(data.target.size)}


def map_force_matching(ds: xr.Dataset | ForceData, emulator: Emulator | None = None,
                       steps: int = 500, seed: int = 0, **kw) -> MapResult:
    """Quick MAP point estimate (optax L-BFGS) of the force-matching model."""
    data = ds if isinstance(ds, ForceData) else force_data(ds, **kw)
    emulator = emulator or default_emulator()[0]
    return map_estimate(force_matching_model, data, emulator,
                        matched=jnp.asarray(data.matched), steps=steps, seed=seed)


def fit_force_matching(ds: xr.Dataset | ForceData, emulator: Emulator | None = None,
                       chains: int = 4, warmup: int = 500, draws: int = 1000, seed: int = 0,
                       reference_group: str | None = None,
                       reference_condition: str | None = None,
                       priors: ForcePriors | None = None, init_map: bool = True,
                       progress: bool = False) -> Fit:
    """Hierarchical NUTS fit of force-matching data (MAP-initialised).

    Returns a :class:`~cpsych.fit.infer.Fit`; the posterior has ``h`` (participant),
    ``group_mean_h`` (group), ``delta_h`` (group contrast), ``beta_h`` (condition contrast),
    ``mu_h``, ``sigma_h``, ``sigma_obs``; the posterior predictive has ``matched`` (trial).
    """
    data = ds if isinstance(ds, ForceData) else force_data(
        ds, reference_group, reference_condition, priors)
    emulator = emulator or default_emulator()[0]
    init = None
    if init_map:
        m = map_force_matching(data, emulator, seed=seed)
        if np.all([np.all(np.isfinite(v)) for v in m.values.values()]):
            init = {k: m.values[k] for k in m.values
                    if k in ("mu_h", "delta_h", "sigma_h", "z_h", "beta_h", "sigma_obs")}
    fit = sample_nuts(force_matching_model, data, emulator,
                      observed={"matched": jnp.asarray(data.matched)},
                      dims=force_dims(data), coords=force_coords(data), attrs=FORCE_ATTRS,
                      chains=chains, warmup=warmup, draws=draws, seed=seed, init=init,
                      progress=progress)
    obs = fit.observed_data
    obs = obs.assign_coords(
        participant_of_trial=("trial", np.asarray(data.participants)[data.participant]),
        group_of_trial=("trial", np.asarray(data.groups)[data.group_of[data.participant]]),
        condition_of_trial=("trial", np.asarray(data.conditions)[data.condition]),
        target=("trial", data.target, {"units": "N"}))
    fit.observed_data = obs
    fit.posterior = fit.posterior.assign_coords(
        group_of_participant=("participant", np.asarray(data.groups)[data.group_of]))
    fit.posterior.attrs.update({"reference_group": data.groups[0],
                                "reference_condition": data.conditions[0],
                                "model": "cpsych.fit.models.force_matching_model"})
    return fit


def synthetic_force_data(h: Sequence[float], groups: Sequence[str],
                         targets: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
                         conditions: Sequence[str] = ("finger",),
                         condition_effects: Sequence[float] = (0.0,),
                         repeats: int = 1, noise_sd: float = 0.1,
                         emulator: Emulator | None = None, seed: int = 0) -> xr.Dataset:
    """Synthetic participants: matched forces from known attenuations plus Gaussian noise.

    Participant ``i`` in condition ``c`` has attenuation ``h[i] + condition_effects[c]``; its
    noiseless matched force is the emulator's (default) or, for ``emulator=False``, the
    direct simulator's (a grid of intended levels simulated per participant and inverted:
    slower, and free of the emulator's interpolation error). Negative draws are clipped at
    0 N (forces are non-negative). Returns the layout of ``load_force_matching``.
    """
    h = np.asarray(h, float)
    if len(groups) != h.size:
        raise ValueError(f"groups: expected {h.size} labels (one per participant), "
                         f"got {len(groups)}")
    if len(condition_effects) != len(conditions):
        raise ValueError("condition_effects: expected one per condition")
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, float)
    hc = h[:, None] + np.asarray(condition_effects, float)[None, :]  # (participant, cond)
    if emulator is False:
        from .simulators import force_grid, matched_table

        levels = np.linspace(0.0, 4.0, 33)
        g = force_grid(hc.ravel(), levels)
        mean = matched_table(g, targets).reshape(*hc.shape, targets.size)
    else:
        emu = emulator or default_emulator()[0]
        mean = np.asarray(emu(hc[..., None], targets[None, None, :]))
    rows = {"participant": [], "group": [], "condition": [], "target": [], "matched": []}
    width = len(str(h.size))
    for i in range(h.size):
        for c, cname in enumerate(conditions):
            for _ in range(repeats):
                for j, t in enumerate(targets):
                    rows["participant"].append(f"p{i + 1:0{width}d}")
                    rows["group"].append(groups[i])
                    rows["condition"].append(cname)
                    rows["target"].append(t)
                    rows["matched"].append(max(mean[i, c, j] + noise_sd * rng.normal(), 0.0))
    ds = xr.Dataset(
        {"target": ("trial", np.asarray(rows["target"]), {"units": "N"}),
         "matched": ("trial", np.asarray(rows["matched"]), {"units": "N"})},
        coords={k: ("trial", np.asarray(rows[k])) for k in ("participant", "group",
                                                             "condition")},
        attrs={"source": "synthetic", "noise_sd": noise_sd, "seed": seed})
    ds["h_true"] = ("participant_true", h)
    return ds

