"""The paradigm contract (:class:`Paradigm`) and the registry that sweeps, fitting and the
command line discover paradigms through.

A paradigm is a published experiment built on the engine: its parameters (with units, meaning,
a prior for fitting and a plausible range), its presets (control, schizophrenia, autism, where
the literature supports one), a pure-JAX ``simulate(params, design, key) -> read-outs``, the
read-outs with their units, and the behavioural data format it can be fitted to. Each module
of :mod:`cpsych.models` exports one as ``PARADIGM``; third-party packages register theirs under
the entry-point group ``cpsych.paradigms``::

    [project.entry-points."cpsych.paradigms"]
    my-task = "my_package.my_task:PARADIGM"

The engine never imports a paradigm by name: the registry loads entry points on demand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from importlib import metadata
from typing import Any

import jax
import numpy as np

__all__ = ["Parameter", "Readout", "DataFormat", "Paradigm", "registry", "get", "names",
           "register", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "cpsych.paradigms"

SimulateFn = Callable[[Mapping[str, jax.Array], Mapping[str, Any], "jax.Array | None"],
                      Mapping[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A parameter of a paradigm.

    Attributes
    ----------
    name : short name used by sweeps, fits and the command line (e.g. ``"h"``).
    default : value in the control preset.
    unit : physical unit (``"log-precision"`` for log-precisions, ``"1"`` when dimensionless).
    meaning : one line saying what it is.
    prior : ``(mean, sd)`` of the Gaussian prior used when the parameter is fitted.
    bounds : ``(low, high)`` plausible range: values outside are rejected before simulating.
    """

    name: str
    default: float
    unit: str
    meaning: str
    prior: tuple[float, float] = (0.0, 1.0)
    bounds: tuple[float, float] = (-math.inf, math.inf)


@dataclasses.dataclass(frozen=True)
class Readout:
    """A behavioural read-out: name, unit, meaning and its own dimensions (e.g. ``target``)."""

    name: str
    unit: str
    meaning: str
    dims: tuple[str, ...] = ()

    def spec(self) -> dict[str, Any]:
        """The ``{"dims", "attrs"}`` form used by :func:`cpsych.sweep.sweep`."""
        return {"dims": self.dims, "attrs": {"units": self.unit, "long_name": self.meaning}}


@dataclasses.dataclass(frozen=True)
class DataFormat:
    """The tidy CSV a paradigm can be fitted to: one row per observation.

    Attributes
    ----------
    columns : column name -> unit or kind (``"label"`` for text columns).
    response : the observed column the likelihood is on.
    design : columns that set the simulated design (e.g. ``target``).
    plausible : column -> ``(low, high)``: values outside are a data error.
    description : what a row is.
    readout : the read-out that predicts ``response`` (default: the read-out named like
        ``response``).
    design_options : design column -> the paradigm's design option that takes the tuple of
        the column's values (e.g. ``{"target": "targets"}``); the read-out's last dimension
        runs over them. At most one design column besides ``condition`` is mapped. A mapped
        ``condition`` column means the conditions are conditions of the design (e.g. the
        stimulus): each participant x condition cell is simulated in its own condition
        (the option gets a one-element tuple), as well as shifting the parameters by the
        condition effects.
    match : ``None`` (the row's design value is simulated directly), or the read-out that
        the design value *equals*: the fit then simulates the design option at
        ``match_grid`` and predicts ``readout`` where ``match`` equals the row's value
        (a monotone inversion; e.g. force matching: the participant produces the force whose
        percept matches the target).
    match_grid : design values simulated for the inversion of ``match``.
    regular : parameter -> ``(low, high)``: where the simulation is regular enough to fit
        (e.g. where a scheme does not oscillate); fits and recoveries keep their emulator
        grids and true values inside it unless given explicit ranges.
    regular_joint : tuple of parameters -> ``{parameter: (low, high)}``: narrower regular
        ranges that hold when all the named parameters are free together (a scheme's regular
        region is rarely a box: e.g. strong attenuation is regular at the control state
        precision but not at every state precision). Applied on top of ``regular``.
    other_responses : further kinds of response a file may hold besides ``response``:
        column -> ``(read-out, design option)``. The read-out predicts the column; its last
        dimension runs over the design option, which takes the rows' values of the design
        column (e.g. force matching's reported uncertainty about external forces of peak
        ``target``); ``None``: a scalar read-out. These columns are optional; a file that has
        one fills exactly one response cell per row (the others empty), and each kind gets
        its own observation noise in the fit.
    """

    columns: Mapping[str, str]
    response: str
    design: tuple[str, ...] = ()
    plausible: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    description: str = ""
    readout: str | None = None
    design_options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    match: str | None = None
    match_grid: tuple[float, ...] = ()
    regular: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    regular_joint: Mapping[tuple[str, ...], Mapping[str, tuple[float, float]]] = \
        dataclasses.field(default_factory=dict)
    other_responses: Mapping[str, tuple[str, str | None]] = \
        dataclasses.field(default_factory=dict)

    @property
    def responses(self) -> tuple[str, ...]:
        """Every response column: ``response`` first, then ``other_responses``."""
        return (self.response, *self.other_responses)

    def regular_range(self, name: str, free: Sequence[str] = ()) -> tuple[float, float]:
        """Where ``name`` is regular when ``free`` are the free parameters: ``regular`` and
        every ``regular_joint`` entry whose parameters are all free (``(-inf, inf)`` when
        nothing is stated)."""
        lo, hi = self.regular.get(name, (-math.inf, math.inf))
        for names, ranges in self.regular_joint.items():
            if name in ranges and set(names) <= set(free):
                lo, hi = max(lo, ranges[name][0]), min(hi, ranges[name][1])
        return lo, hi

    @property
    def predicted_by(self) -> str:
        """The read-out predicting the response."""
        return self.readout or self.response

    @property
    def x_column(self) -> str | None:
        """The mapped design column the read-out's last dimension runs over (not
        ``condition``), or ``None``."""
        return next((c for c in self.design_options if c != "condition"), None)

    @property
    def condition_option(self) -> str | None:
        """The design option that takes the condition, when conditions are designs."""
        return self.design_options.get("condition")


@dataclasses.dataclass(frozen=True, eq=False)
class Paradigm:
    """A published paradigm on the cpsych engine (the contract every model module exports).

    Attributes
    ----------
    name : registry and command-line name (``"force-matching"``).
    title : one line: the paradigm and its paper.
    parameters : the parameters, in order.
    presets : preset name -> parameter values (missing parameters take their default).
    readouts : the read-outs ``simulate`` returns.
    simulate : pure JAX ``simulate(params, design, key) -> {read-out: array}``; ``params``
        maps every parameter name to a (possibly traced) scalar, ``design`` holds static
        options (hashable values), ``key`` is a PRNG key or ``None`` for a noiseless run.
    design : the default design.
    coords : coordinates of the read-outs' own dimensions (for labelled results).
    data : the behavioural data format, or ``None`` if the paradigm is not fitted to data.
    references : the papers it follows.
    """

    name: str
    title: str
    parameters: tuple[Parameter, ...]
    presets: Mapping[str, Mapping[str, float]]
    readouts: tuple[Readout, ...]
    simulate: SimulateFn
    design: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    coords: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: DataFormat | None = None
    references: tuple[str, ...] = ()

    # ------------------------------------------------------------------ lookups
    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def readout_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.readouts)

    def parameter(self, name: str) -> Parameter:
        """The parameter ``name`` (one-line ``ValueError`` listing the choices otherwise)."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise ValueError(f"parameter: '{name}' is not a parameter of {self.name}; choose from "
                         f"{', '.join(self.parameter_names)}")

    def readout(self, name: str) -> Readout:
        for r in self.readouts:
            if r.name == name:
                return r
        raise ValueError(f"readout: '{name}' is not a read-out of {self.name}; choose from "
                         f"{', '.join(self.readout_names)}")

    # ------------------------------------------------------------------ values
    def params(self, preset: str = "control", **overrides: float) -> dict[str, float]:
        """Every parameter's value under ``preset``, with ``overrides``; checked and finite."""
        if preset not in self.presets:
            raise ValueError(f"preset: unknown preset '{preset}' of {self.name}; choose from "
                             f"{', '.join(self.presets)}")
        values = {p.name: float(p.default) for p in self.parameters}
        values.update({k: float(v) for k, v in self.presets[preset].items()})
        for k, v in overrides.items():
            self.parameter(k)
            values[k] = v
        return self.check_params(values)

    def check_params(self, values: Mapping[str, Any], where: str = "params") -> dict[str, Any]:
        """Reject unknown names and concrete values that are non-finite or out of bounds."""
        out = {}
        for k, v in values.items():
            p = self.parameter(k)
            if not isinstance(v, jax.core.Tracer):
                arr = np.asarray(v, dtype=float)
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{where}: parameter '{k}' of {self.name} must be finite, "
                                     f"got {v}")
                lo, hi = p.bounds
                if np.any(arr < lo) or np.any(arr > hi):
                    raise ValueError(f"{where}: parameter '{k}' of {self.name} = {v} is outside "
                                     f"its plausible range [{lo}, {hi}] ({p.unit})")
                v = float(arr) if arr.ndim == 0 else arr
            out[k] = v
        return out

    def full_design(self, design: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The default design updated with ``design`` (unknown keys are an error)."""
        out = dict(self.design)
        for k, v in (design or {}).items():
            if k not in self.design:
                raise ValueError(f"design: '{k}' is not a design option of {self.name}; "
                                 f"choose from {', '.join(self.design) or '(none)'}")
            out[k] = v
        return out

    def compiled(self, design: Mapping[str, Any] | None = None) -> Callable:
        """``jit(params, key) -> read-outs`` for a design: one compiled function per paradigm,
        design and shape, shared by every preset (parameters are traced arguments)."""
        return _compiled(self, _freeze(self.full_design(design)))

    def run(self, preset: str = "control", design: Mapping[str, Any] | None = None,
            key: jax.Array | int | None = None, **overrides: float) -> dict[str, np.ndarray]:
        """Simulate one parameter set (a preset with overrides) and return NumPy read-outs."""
        values = self.params(preset, **overrides)
        if isinstance(key, int | np.integer):
            key = jax.random.key(int(key))
        out = self.compiled(design)({k: np.float64(v) for k, v in values.items()}, key)
        return {k: np.asarray(v) for k, v in out.items()}


def _freeze(design: Mapping[str, Any]) -> tuple:
    def one(v):  # designs hold static, hashable options; arrays become tuples
        if isinstance(v, np.ndarray | list):
            return tuple(np.asarray(v).ravel().tolist())
        return v
    return tuple(sorted((k, one(v)) for k, v in design.items()))


@lru_cache(maxsize=64)
def _compiled(paradigm: Paradigm, frozen: tuple) -> Callable:
    design = dict(frozen)
    return jax.jit(lambda params, key: paradigm.simulate(params, design, key))


# ---------------------------------------------------------------------- registry
_EXTRA: dict[str, Paradigm] = {}


def register(paradigm: Paradigm) -> Paradigm:
    """Register a paradigm at run time (for scripts and tests; packages use entry points)."""
    if not isinstance(paradigm, Paradigm):
        raise TypeError(f"register: expected a cpsych.Paradigm, got {type(paradigm).__name__}")
    _EXTRA[paradigm.name] = paradigm
    return paradigm


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def names() -> tuple[str, ...]:
    """Names of every registered paradigm (entry points and run-time registrations)."""
    return tuple(sorted(set(_entry_points()) | set(_EXTRA)))


@cache
def _load(name: str) -> Paradigm:
    obj = _entry_points()[name].load()
    if not isinstance(obj, Paradigm):
        raise TypeError(f"paradigm: entry point '{name}' of group {ENTRY_POINT_GROUP} is a "
                        f"{type(obj).__name__}, not a cpsych.Paradigm")
    return obj


def get(name: str) -> Paradigm:
    """The registered paradigm ``name`` (one-line ``ValueError`` listing the choices)."""
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _entry_points():
        raise ValueError(f"paradigm: unknown paradigm '{name}'; choose from "
                         f"{', '.join(names()) or '(none registered: is cpsych installed?)'}")
    return _load(name)


def registry() -> dict[str, Paradigm]:
    """Every registered paradigm, loaded."""
    return {n: get(n) for n in names()}
