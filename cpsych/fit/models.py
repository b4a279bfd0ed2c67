"""Hierarchical Bayesian models of behaviour (numpyro).

Force matching
--------------
Each participant ``i`` (group ``g(i)``) has an attenuation ``h_i`` (SPEC 5.4: the fall of
sensory log-precision while the agent believes it is pushing; 6 in health, ``6 - D`` in
schizophrenia). Group means and participants are non-centred::

    mu_h            ~ Normal(6, 2)              reference-group mean attenuation
    delta_h[k]      ~ Normal(0, 2)              group k minus the reference group, k = 1..G-1
    sigma_h         ~ HalfNormal(1)             between-participant SD (log-precision units)
    z_i             ~ Normal(0, 1)
    h_i             = mu_h + delta_h[g(i)] + sigma_h z_i      (delta_h[reference] = 0)
    beta_h[c]       ~ Normal(0, 2)              condition c minus the reference condition
    sigma_obs       ~ HalfNormal(0.5)           N

Observation model: on a trial with external target force ``T`` in condition ``c`` the
participant produces (the matched force)::

    matched ~ Normal(m(h_i + beta_h[c], T), sigma_obs)

where ``m(h, T)`` is the force an agent with attenuation ``h`` produces when its percept of its
own force equals ``T`` (:func:`cpsych.fit.simulators.matched_table`, through the
:class:`~cpsych.fit.simulators.Emulator`). The other precisions of the agent stay at the
control preset (sensory 8, state 4, prior on ``v_self`` 6): with one behavioural read-out per
target level, attenuation is what the data identify; the schizophrenia preset's co-varying
prior precisions are absorbed into ``h``. Group and condition effects are additive in
log-precision units (``delta_h = -2`` is the ``D = 2`` schizophrenia preset's change of ``h``).
The reference group and condition are the first in the data's sorted labels unless given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import xarray as xr

from .simulators import Emulator

__all__ = ["ForceData", "ForcePriors", "force_data", "force_matching_model"]


@dataclass(frozen=True)
class ForcePriors:
    """Priors of :func:`force_matching_model` (log-precision units; N for ``sigma_obs``)."""

    mu_h_loc: float = 6.0
    mu_h_scale: float = 2.0
    delta_h_scale: float = 2.0
    sigma_h_scale: float = 1.0
    beta_h_scale: float = 2.0
    sigma_obs_scale: float = 0.5

    def __post_init__(self):
        for name, v in self.__dict__.items():
            if not np.isfinite(v) or (name != "mu_h_loc" and v <= 0):
                raise ValueError(f"ForcePriors: field '{name}' must be finite"
                                 f"{' and > 0' if name != 'mu_h_loc' else ''}, got {v}")


@dataclass(frozen=True)
class ForceData:
    """Integer-coded force-matching data for the numpyro model."""

    participant: np.ndarray  # (n_trials,) participant index
    condition: np.ndarray  # (n_trials,) condition index
    target: np.ndarray  # (n_trials,) N
    matched: np.ndarray  # (n_trials,) N
    group_of: np.ndarray  # (n_participants,) group index
    participants: tuple[str, ...]
    groups: tuple[str, ...]  # reference group first
    conditions: tuple[str, ...]  # reference condition first
    priors: ForcePriors = field(default_factory=ForcePriors)

    @property
    def group_contrasts(self) -> list[str]:
        return [f"{g} - {self.groups[0]}" for g in self.groups[1:]]

    @property
    def condition_contrasts(self) -> list[str]:
        return [f"{c} - {self.conditions[0]}" for c in self.conditions[1:]]


def _order(found: Sequence[str], reference: str | None, what: str) -> tuple[str, ...]:
    found = sorted(found)
    if reference is None:
        return tuple(found)
    if reference not in found:
        raise ValueError(f"reference_{what}: '{reference}' is not in the data's {what}s "
                         f"{found}")
    return (reference,) + tuple(f for f in found if f != reference)


def force_data(ds: xr.Dataset, reference_group: str | None = None,
               reference_condition: str | None = None,
               priors: ForcePriors | None = None) -> ForceData:
    """Code a dataset from :func:`cpsych.fit.data.load_force_matching` for fitting."""
    for v in ("participant", "group", "condition", "target", "matched"):
        if v not in ds:
            raise ValueError(f"data: variable or coordinate '{v}' missing")
    parts = sorted(set(ds["participant"].values.tolist()))
    groups = _order(set(ds["group"].values.tolist()), reference_group, "group")
    conds = _order(set(ds["condition"].values.tolist()), reference_condition, "condition")
    pidx = {p: i for i, p in enumerate(parts)}
    gidx = {g: i for i, g in enumerate(groups)}
    cidx = {c: i for i, c in enumerate(conds)}
    group_of = np.zeros(len(parts), int)
    for p, g in zip(ds["participant"].values, ds["group"].values, strict=True):
        group_of[pidx[p]] = gidx[g]
    return ForceData(
        participant=np.array([pidx[p] for p in ds["participant"].values]),
        condition=np.array([cidx[c] for c in ds["condition"].values]),
        target=np.asarray(ds["target"].values, float),
        matched=np.asarray(ds["matched"].values, float),
        group_of=group_of, participants=tuple(parts), groups=groups, conditions=conds,
        priors=priors or ForcePriors(),
    )


def force_matching_model(data: ForceData, emulator: Emulator,
                         matched: jnp.ndarray | None = None) -> None:
    """numpyro model of force-matching data (see the module docstring).

    ``matched=None`` samples the observations (prior / posterior predictive).
    """
    pr = data.priors
    n_p, n_g, n_c = len(data.participants), len(data.groups), len(data.conditions)
    mu = numpyro.sample("mu_h", dist.Normal(pr.mu_h_loc, pr.mu_h_scale))
    if n_g > 1:
        delta = numpyro.sample("delta_h", dist.Normal(0.0, pr.delta_h_scale).expand([n_g - 1]))
        offsets = jnp.concatenate([jnp.zeros(1), delta])
    else:
        offsets = jnp.zeros(1)
    numpyro.deterministic("group_mean_h", mu + offsets)
    sigma_h = numpyro.sample("sigma_h", dist.HalfNormal(pr.sigma_h_scale))
    with numpyro.plate("participant", n_p):
        z = numpyro.sample("z_h", dist.Normal(0.0, 1.0))
    h = numpyro.deterministic("h", mu + offsets[data.group_of] + sigma_h * z)
    if n_c > 1:
        beta = numpyro.sample("beta_h", dist.Normal(0.0, pr.beta_h_scale).expand([n_c - 1]))
        cond = jnp.concatenate([jnp.zeros(1), beta])
    else:
        cond = jnp.zeros(1)
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(pr.sigma_obs_scale))
    h_trial = h[data.participant] + cond[data.condition]
    mean = emulator(h_trial, jnp.asarray(data.target))
    with numpyro.plate("trial", data.target.size):
        numpyro.sample("matched", dist.Normal(mean, sigma_obs), obs=matched)
