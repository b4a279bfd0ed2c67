"""Fit the smooth-pursuit paradigm ``pursuit-spem`` to human eye traces (SPM's SPEM data).

Data: the grand-average eye traces of Adams et al. (2015), four conditions (fast / slow x
smooth / noisy target), binned in 32 bins per target cycle into the paradigm's tidy format
(experiments/data/spem_fit/spem_binned.csv, made from the four raw files beside it by
:func:`cpsych.models.spem.write_binned`). The fitted signal is the smooth eye velocity
(saccades removed; target amplitudes per 1/32 cycle): the model's eye has no saccades, and the
gains are properties of velocity.

Model: the paradigm ``pursuit-spem`` (:mod:`cpsych.models.spem`: the pursuit agent of SPEC 5.5
in the experiment's geometry, with the kinetics of SPM's DCM of these data). Each data row
(condition, time) is predicted by the paradigm's ``eye_velocity`` read-out at that condition
and time, simulated directly (no emulator).

Fitted (:data:`SPEC`): the log-precision of the retinal channels (the sensory precision of the
target) and of the level-2 state fluctuations (the precision of the prior beliefs about the
target's motion), each with an intercept and additive effects of target noise and of target
speed (priors N(4, 1) and N(0, 1/2) as in SPM's DCM); the log cause gain ``k_c`` and its
hidden-target change ``k_h``, each also with noise and speed effects (intercepts N(0, 1),
effects N(0, 1/2)); the target gain ``k_t``, its hidden change ``k_th``, the log damping
``k_d`` and the log target rate ``k_r`` (N(0, 1), shared by the conditions); and the SD of the
eye-velocity residuals (log, N(log 0.02, 1)): 17 parameters. Every other parameter of the
paradigm stays at its default.

Inference (:func:`fit`): multi-start MAP, optax L-BFGS from ``--starts K`` starting points
drawn from the prior (seeded), reverse-mode gradients through the four simulations; the best
start is kept and every start's final loss is reported (the loss is piecewise smooth: the
occluder is a hard step in the agent's model, so L-BFGS stops in different local optima).
Then a Laplace approximation at the best start (Hessian by forward-over-reverse; eigenvalues
floored at the smallest prior precision, 1, and the number floored recorded). Residuals of a
grand-average trace are autocorrelated, so the Laplace intervals, which treat 32 bins per
condition as independent, are optimistic. The generic fit of :mod:`cpsych.fit` is meant to
replace :func:`fit`.

Smooth vs noisy (:func:`noisy_profile`, :func:`needed_change`): from the MAP, each parameter
of the paradigm is shifted in every condition (the others held); per condition, the shift that
gives the model the data's visible gain is found. The noisy minus smooth shift is the noise
effect that parameter would need to carry the data's 0.17-0.21 lower visible gain with a
noisy target, and the summed change of the -log likelihood there is its cost.

Writes <out>/fit_pursuit.nc (data, fitted traces, posterior predictive bands, parameters with
90 % intervals, gains of data and fit, the per-start losses and the profile) and
<out>/fit_pursuit_traces, <out>/fit_pursuit_effects, <out>/fit_pursuit_noisy (PDF and PNG).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SPEC 8

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from cpsych.experiments import add_out_argument, module_main  # noqa: E402

__all__ = ["CONDITIONS", "PARAMS", "KINETIC", "SPEC", "FitSpec", "PRIOR_MEAN", "PRIOR_SD",
           "prepare_data", "make_loss", "multistart_map", "fit", "gains", "noisy_profile",
           "results_dataset", "add_arguments", "run", "main"]

DATA = Path(__file__).parent / "data" / "spem_fit"
BINNED = DATA / "spem_binned.csv"
DEFAULT_OUT = "results/fit_pursuit"
PARADIGM_NAME = "pursuit-spem"
CONDITIONS = ("fast_smooth", "fast_noisy", "slow_smooth", "slow_noisy")  # = spem.CONDITIONS
BINS = 32
KINETIC = ("k_c", "k_h", "k_t", "k_th", "k_d", "k_r")  # = spem.KINETIC
EFFECTS = ("noisy", "fast")
EFFECT_SD = float(np.sqrt(0.5))
SIGMA_PRIOR = (float(np.log(0.02)), 1.0)  # log SD of the residuals (target amplitudes / bin)


@dataclasses.dataclass(frozen=True)
class FitSpec:
    """Which paradigm parameters are fitted, and which of them have condition effects.

    The parameter vector is, per free parameter, its intercept (prior: the paradigm's) and,
    for those in ``effects``, its additive ``noisy`` and ``fast`` effects (N(0, 1/2)); then
    ``log_sigma``, the log SD of the residuals.
    """

    free: tuple[str, ...] = ("retina", "state2", "k_c", "k_h", "k_t", "k_th", "k_d", "k_r")
    effects: tuple[str, ...] = ("retina", "state2", "k_c", "k_h")

    @property
    def names(self) -> tuple[str, ...]:
        out: list[str] = []
        for p in self.free:
            out += [p] + ([f"{p}_{e}" for e in EFFECTS] if p in self.effects else [])
        return (*out, "log_sigma")

    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Prior means and SDs of the parameter vector."""
        par = _paradigm()
        mean, sd = [], []
        for p in self.free:
            m, s = par.parameter(p).prior
            mean.append(m)
            sd.append(s)
            if p in self.effects:
                mean += [0.0, 0.0]
                sd += [EFFECT_SD, EFFECT_SD]
        return np.array([*mean, SIGMA_PRIOR[0]]), np.array([*sd, SIGMA_PRIOR[1]])

    def condition_values(self, theta):
        """Every paradigm parameter per condition, ``{name: (4,)}``, from the vector."""
        import jax.numpy as jnp

        par = _paradigm()
        X = jnp.asarray(design())  # (condition, [intercept, noisy, fast])
        values = {p.name: jnp.full(len(CONDITIONS), p.default) for p in par.parameters}
        i = 0
        for p in self.free:
            if p in self.effects:
                values[p] = X @ theta[i:i + 3]
                i += 3
            else:
                values[p] = jnp.full(len(CONDITIONS), 1.0) * theta[i]
                i += 1
        return values


def _paradigm():
    import cpsych

    return cpsych.paradigm.get(PARADIGM_NAME)


SPEC = FitSpec()
PARAMS = SPEC.names
PRIOR_MEAN, PRIOR_SD = SPEC.prior()


def design() -> np.ndarray:
    """(condition, [intercept, noisy, fast]) design matrix of the condition effects."""
    return np.array([[1.0, "noisy" in c, "fast" in c] for c in CONDITIONS])


# ----------------------------------------------------------------------------- data
_EXTRA = ("target_position", "target_velocity")


def prepare_data(path: str | Path = BINNED) -> xr.Dataset:
    """The binned tidy file (read strictly by :func:`cpsych.fit.data.read_data`) laid out over
    ``(condition, bin)``: ``eye_velocity``, ``target``, ``target_velocity``, ``occluded``,
    ``time_ms`` (NaN where a bin has no row), ``period_ms``.

    Rows are placed by their time: ``time_ms`` must be a bin centre of its condition
    (:func:`cpsych.models.spem.bin_times`). Besides the data format's columns, the file needs
    ``target_position`` and ``target_velocity`` (the gains and figures use them).
    """
    from cpsych.fit.data import DataError, read_data
    from cpsych.models import spem

    par = _paradigm()
    rows = read_data(path, par)
    src = rows.attrs["source"]
    missing = [c for c in _EXTRA if c not in rows]
    if missing:
        raise DataError(src, f"missing numeric column(s) {', '.join(missing)} (the binned "
                             "target, made by cpsych.models.spem.write_binned)")
    if len(set(rows["participant"].values)) != 1:
        raise DataError(src, "expected one participant (the grand average), got "
                             f"{len(set(rows['participant'].values))}", None, "participant")
    shape = (len(CONDITIONS), BINS)
    out = {k: np.full(shape, np.nan) for k in ("eye_velocity", "target", "target_velocity",
                                               "time_ms")}
    for k in range(rows.sizes["obs"]):
        line, c = int(rows["line"][k]), str(rows["condition"].values[k])
        if c not in CONDITIONS:
            raise DataError(src, f"unknown condition '{c}'; choose from "
                                 f"{', '.join(CONDITIONS)}", line, "condition")
        t = float(rows["time_ms"][k])
        centres = spem.bin_times(c)
        b = int(np.argmin(np.abs(centres - t)))
        if abs(centres[b] - t) > 1e-6:
            raise DataError(src, f"{t:g} ms is not a bin centre of {c} (32 bins of "
                                 f"{centres[1] - centres[0]:g} ms from {centres[0]:g} ms)",
                            line, "time_ms")
        i = CONDITIONS.index(c)
        out["eye_velocity"][i, b] = float(rows["eye_velocity"][k])
        out["target"][i, b] = float(rows["target_position"][k])
        out["target_velocity"][i, b] = float(rows["target_velocity"][k])
        out["time_ms"][i, b] = centres[b]
    for i, c in enumerate(CONDITIONS):
        if np.all(np.isnan(out["eye_velocity"][i])):
            raise DataError(src, f"no row of condition '{c}'", None, "condition")
    occ = (out["target"] > spem.OCC_LO) & (out["target"] < spem.OCC_HI)
    vu, amp = spem.VELOCITY_UNIT, "target amplitude (600 px)"
    return xr.Dataset(
        {"eye_velocity": (("condition", "bin"), out["eye_velocity"], {
            "units": vu, "long_name": "smooth eye velocity (saccades removed)"}),
         "target": (("condition", "bin"), out["target"], {"units": amp}),
         "target_velocity": (("condition", "bin"), out["target_velocity"], {"units": vu}),
         "occluded": (("condition", "bin"), occ),
         "time_ms": (("condition", "bin"), out["time_ms"], {"units": "ms"}),
         "period_ms": ("condition", [spem.PERIOD_MS[spem.speed(c)] for c in CONDITIONS],
                       {"units": "ms"})},
        coords={"condition": list(CONDITIONS), "bin": np.arange(BINS)},
        attrs={"source": src, "bins_per_cycle": BINS, "paradigm": PARADIGM_NAME})


# ----------------------------------------------------------------------------- model
def make_loss(data: xr.Dataset, spec: FitSpec = SPEC) -> tuple[Callable, Callable]:
    """Negative log posterior of the parameter vector (jit-able) and ``traces(theta)``, the
    paradigm's eye velocity at every (condition, bin) of the data, ``(4, 32)``."""
    import jax.numpy as jnp

    par = _paradigm()
    times = np.asarray(data["time_ms"].values)
    grid = np.unique(times[np.isfinite(times)])
    # each (condition, bin) looks its prediction up in the read-out's (condition, time_ms)
    t_idx = np.where(np.isfinite(times), np.searchsorted(grid, np.nan_to_num(times)), 0)
    c_idx = np.broadcast_to(np.arange(len(CONDITIONS))[:, None], times.shape)
    dsg = {"conditions": CONDITIONS, "times_ms": tuple(float(t) for t in grid)}
    eye = jnp.asarray(np.nan_to_num(data["eye_velocity"].values))
    mask = jnp.asarray(np.isfinite(data["eye_velocity"].values), float)
    n_obs = float(mask.sum())
    mean, sd = (jnp.asarray(a) for a in spec.prior())

    def traces(theta):
        ro = par.simulate(spec.condition_values(theta), dsg, None)
        return ro["eye_velocity"][c_idx, t_idx]

    def loss(theta):
        e = traces(theta)
        sigma = jnp.exp(theta[-1])
        sse = jnp.sum(mask * (eye - e) ** 2)
        nll = 0.5 * sse / sigma**2 + n_obs * theta[-1]
        return nll + 0.5 * jnp.sum(((theta - mean) / sd) ** 2)

    return loss, traces


def multistart_map(loss: Callable, starts: np.ndarray, steps: int = 80, tol: float = 1e-3,
                   verbose: bool = False) -> dict:
    """L-BFGS (optax, zoom line search) from each row of ``starts``; one compilation serves
    every start. A start whose loss becomes non-finite is stopped and scored ``inf``.

    Returns ``theta`` (best), ``best``, ``losses`` (lowest loss reached per start),
    ``thetas`` (where), ``histories`` (loss before each iteration, then after the last, per
    start), ``iterations`` (L-BFGS iterations run per start), ``seconds``.
    """
    import jax
    import optax

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(x, updates), state, value, optax.tree_utils.tree_norm(grad)

    t0 = time.perf_counter()
    thetas, losses, histories, iterations = [], [], [], []
    for k, x0 in enumerate(np.asarray(starts, float)):
        x = jax.numpy.asarray(x0)
        state = opt.init(x)
        hist: list[float] = []
        best_x, best_v = x, np.inf
        n_it, stopped = 0, False
        while n_it < steps and not stopped:
            x_new, state, value, g = step(x, state)
            n_it += 1
            value = float(value)
            if not np.isfinite(value):  # a run-away start: keep the best point so far
                break
            hist.append(value)
            if value < best_v:
                best_x, best_v = x, value
            stopped = float(g) < tol
            if not stopped:
                x = x_new
        else:
            if not stopped:  # the loss after the last update
                v_last = float(loss(x))
                if np.isfinite(v_last) and v_last < best_v:
                    best_x, best_v = x, v_last
                    hist.append(v_last)
        thetas.append(np.asarray(best_x))
        losses.append(best_v)
        histories.append(np.asarray(hist))
        iterations.append(n_it)
        if verbose:
            first = hist[0] if hist else np.inf
            print(f"    start {k + 1}/{len(starts)}: -log posterior {first:.1f} -> {best_v:.2f}"
                  f" ({n_it} iterations, {time.perf_counter() - t0:.0f} s)",
                  flush=True)
    losses_a = np.asarray(losses)
    best = int(np.argmin(losses_a))
    return {"theta": thetas[best], "best": best, "losses": losses_a,
            "thetas": np.stack(thetas), "histories": histories,
            "iterations": np.asarray(iterations),
            "seconds": time.perf_counter() - t0}


def prior_starts(k: int, seed: int = 0, spec: FitSpec = SPEC, loss: Callable | None = None,
                 screen: int = 8) -> np.ndarray:
    """``k`` starting points from the prior (seeded).

    With ``loss``, ``screen * k`` points are drawn and the ``k`` of lowest loss kept: many
    prior draws make the agent's eye oscillate or run away (losses of 1e6-1e10, where
    L-BFGS makes no progress in 80 iterations), so the starts are screened.
    """
    import jax

    mean, sd = spec.prior()
    rng = np.random.default_rng(seed)
    n = k if loss is None else screen * k
    draws = mean + sd * rng.standard_normal((n, mean.size))
    if loss is None:
        return draws
    values = np.asarray(jax.jit(jax.vmap(loss))(draws))
    values = np.where(np.isfinite(values), values, np.inf)
    return draws[np.argsort(values, kind="stable")[:k]]


def fit(data: xr.Dataset, steps: int = 80, starts: int = 4, n_predictive: int = 40,
        seed: int = 0, verbose: bool = False, spec: FitSpec = SPEC,
        start: np.ndarray | None = None) -> dict:
    """Multi-start MAP (``starts`` prior draws, or the rows of ``start``) and Laplace at the
    best start. The Hessian is the forward-mode Jacobian of the gradient."""
    import jax
    import jax.numpy as jnp

    loss, traces = make_loss(data, spec)
    x0 = prior_starts(starts, seed, spec, loss) if start is None else np.atleast_2d(start)
    if x0.shape[1] != len(spec.names):
        raise ValueError(f"start: expected {len(spec.names)} parameters, got {x0.shape[1]}")
    ms = multistart_map(jax.jit(loss), x0, steps=steps, verbose=verbose)
    theta = ms["theta"]
    t0 = time.perf_counter()
    H = np.asarray(jax.jit(jax.jacfwd(jax.grad(loss)))(jnp.asarray(theta)))
    H = 0.5 * (H + H.T)
    # away from a converged MAP (few steps, or a kink of the piecewise-smooth loss) the
    # Hessian can be indefinite; its eigenvalues are floored at the smallest prior precision
    _, prior_sd = spec.prior()
    w, V = np.linalg.eigh(H)
    floor = float(np.min(1.0 / prior_sd**2))
    n_clipped = int(np.sum(w < floor))
    cov = (V / np.maximum(w, floor)) @ V.T
    t_lap = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(cov + 1e-12 * np.eye(cov.shape[0]))
    draws = theta + rng.standard_normal((n_predictive, theta.size)) @ L.T
    e_pp = np.asarray(jax.jit(jax.vmap(traces))(jnp.asarray(draws)))
    e_pp = e_pp + np.exp(draws[:, -1])[:, None, None] * rng.standard_normal(e_pp.shape)
    e_map = np.asarray(jax.jit(traces)(jnp.asarray(theta)))
    return {"theta": theta, "cov": cov, "history": ms["histories"][ms["best"]],
            "t_map": ms["seconds"], "t_laplace": t_lap, "hessian_clipped": n_clipped,
            "eye_fit": e_map, "eye_pp": e_pp, "draws": draws, "spec": spec,
            "start_losses": ms["losses"], "start_thetas": ms["thetas"], "starts": x0,
            "start_iterations": ms["iterations"], "best_start": ms["best"]}


def gains(eye_velocity: np.ndarray, target_velocity: np.ndarray,
          occluded: np.ndarray) -> tuple[float, float]:
    """Pursuit gain while visible / occluded (:func:`cpsych.models.spem.gains`), as floats."""
    from cpsych.models import spem

    g = spem.gains(eye_velocity, target_velocity, occluded)
    return float(g[0]), float(g[1])


def noisy_profile(data: xr.Dataset, theta: np.ndarray, spec: FitSpec = SPEC,
                  deltas: Sequence[float] = tuple(np.linspace(-3.0, 3.0, 25)),
                  names: Sequence[str] | None = None) -> xr.Dataset:
    """How each parameter sets the visible gain, condition by condition, at the MAP.

    Every paradigm parameter in ``names`` (default: all) is moved by ``delta`` from its MAP
    value in each condition (the others held). The conditions are simulated independently, so
    one sweep gives, per condition, the model's visible gain (against the data's target
    velocity, as for the data) and that condition's negative log-likelihood. From these,
    :func:`needed_change` finds the shift of each parameter that gives each condition the
    data's visible gain: the noisy-minus-smooth difference of those shifts is the noise
    effect that parameter would need to carry the data's smooth-vs-noisy gain difference.

    Returns over ``(parameter, delta, condition)``: ``gain_visible``, ``gain_occluded`` and
    ``nll`` (change of the condition's negative log-likelihood from the MAP); the data's gains
    (``data_gain_visible``) and the MAP's (``fit_gain_visible``) per condition.
    """
    import jax
    import jax.numpy as jnp

    par = _paradigm()
    names = tuple(names or par.parameter_names)
    times = data["time_ms"].values
    grid = np.unique(times[np.isfinite(times)])
    dsg = {"conditions": CONDITIONS, "times_ms": tuple(float(t) for t in grid)}
    t_idx = np.where(np.isfinite(times), np.searchsorted(grid, np.nan_to_num(times)), 0)
    c_idx = np.broadcast_to(np.arange(len(CONDITIONS))[:, None], times.shape)
    eye = jnp.asarray(np.nan_to_num(data["eye_velocity"].values))
    mask = jnp.asarray(np.isfinite(data["eye_velocity"].values), float)
    tv, occ = data["target_velocity"].values, data["occluded"].values
    base = spec.condition_values(jnp.asarray(theta))
    keys = list(base)
    sigma = float(np.exp(theta[-1]))

    @jax.jit
    def one(i_name, delta):
        vals = {k: v + (i_name == j) * delta for j, (k, v) in enumerate(base.items())}
        e = par.simulate(vals, dsg, None)["eye_velocity"][c_idx, t_idx]
        return e, 0.5 * jnp.sum(mask * (eye - e) ** 2, axis=1) / sigma**2

    e0, nll0 = (np.asarray(a) for a in one(-1, 0.0))
    shape = (len(names), len(deltas), len(CONDITIONS))
    gv, go, nll = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for a, name in enumerate(names):
        for b, d in enumerate(deltas):
            e, v = (np.asarray(x) for x in one(keys.index(name), float(d)))
            if not np.all(np.isfinite(e)):
                continue
            g = np.array([gains(e[i], tv[i], occ[i]) for i in range(len(CONDITIONS))])
            gv[a, b], go[a, b], nll[a, b] = g[:, 0], g[:, 1], v - nll0
    g_data = [gains(data["eye_velocity"].values[i], tv[i], occ[i])[0]
              for i in range(len(CONDITIONS))]
    g_fit = [gains(e0[i], tv[i], occ[i])[0] for i in range(len(CONDITIONS))]
    dims = ("parameter", "delta", "condition")
    return xr.Dataset(
        {"gain_visible": (dims, gv, {"units": "1", "long_name": "model visible gain"}),
         "gain_occluded": (dims, go, {"units": "1", "long_name": "model occluded gain"}),
         "nll": (dims, nll, {"long_name": "change of the condition's negative "
                                          "log-likelihood from the MAP"}),
         "data_gain_visible": ("condition", g_data), "fit_gain_visible": ("condition", g_fit)},
        coords={"parameter": list(names), "delta": np.asarray(deltas, float),
                "condition": list(CONDITIONS)},
        attrs={"sigma": sigma})


def _crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """The ``x`` nearest 0 where ``y`` (linear between grid points) equals ``target``."""
    best = np.nan
    for k in range(x.size - 1):
        a, b = y[k] - target, y[k + 1] - target
        if np.isfinite(a) and np.isfinite(b) and a * b <= 0 and a != b:
            xx = x[k] + a / (a - b) * (x[k + 1] - x[k])
            if np.isnan(best) or abs(xx) < abs(best):
                best = float(xx)
    return best


def needed_change(profile: xr.Dataset) -> xr.Dataset:
    """Per parameter: the shift from the MAP giving each condition the data's visible gain
    (NaN where the profiled range does not reach it), the noise effect this implies per speed
    (noisy shift minus smooth shift), and the summed change of the negative log-likelihood
    of the four conditions at those shifts (each condition its own shift)."""
    d = profile["delta"].values
    names = [str(p) for p in profile["parameter"].values]
    shift = np.full((len(names), len(CONDITIONS)), np.nan)
    dnll = np.full_like(shift, np.nan)
    for a, p in enumerate(names):
        for i, c in enumerate(CONDITIONS):
            y = profile["gain_visible"].sel(parameter=p, condition=c).values
            s = _crossing(d, y, float(profile["data_gain_visible"].sel(condition=c)))
            shift[a, i] = s
            if np.isfinite(s):
                dnll[a, i] = np.interp(s, d, profile["nll"].sel(parameter=p, condition=c).values)
    effect = np.stack([shift[:, 1] - shift[:, 0], shift[:, 3] - shift[:, 2]], 1)
    return xr.Dataset(
        {"shift": (("parameter", "condition"), shift),
         "noise_effect": (("parameter", "speed"), effect),
         "nll_change": ("parameter", dnll.sum(1))},
        coords={"parameter": names, "condition": list(CONDITIONS), "speed": ["fast", "slow"]})


# ----------------------------------------------------------------------------- results
def results_dataset(data: xr.Dataset, res: dict,
                    profile: xr.Dataset | None = None) -> xr.Dataset:
    """Data, fit, parameters with 90 % Laplace intervals, gains, per-start losses (and the
    noisy profile when given) in one dataset."""
    spec: FitSpec = res.get("spec", SPEC)
    names = list(spec.names)
    sd = np.sqrt(np.diag(res["cov"]))
    z = 1.6449
    ds = data.copy()
    units = data["eye_velocity"].attrs["units"]
    ds["eye_velocity_fit"] = (("condition", "bin"), res["eye_fit"],
                              {"units": units, "long_name": "fitted eye velocity (MAP)"})
    q = np.quantile(res["eye_pp"], [0.05, 0.95], axis=0)
    ds["eye_pp_lo"] = (("condition", "bin"), q[0], {"long_name": "posterior predictive 5 %"})
    ds["eye_pp_hi"] = (("condition", "bin"), q[1], {"long_name": "posterior predictive 95 %"})
    ds = ds.assign_coords(parameter=names, bound=["lower", "upper"],
                          start=np.arange(len(res["start_losses"])))
    ds["estimate"] = ("parameter", res["theta"], {"long_name": "MAP (best start)"})
    ds["posterior_sd"] = ("parameter", sd, {"long_name": "Laplace posterior SD"})
    ds["interval90"] = (("parameter", "bound"),
                        np.stack([res["theta"] - z * sd, res["theta"] + z * sd], 1))
    ds["covariance"] = (("parameter", "parameter_2"), res["cov"])
    ds["start_loss"] = ("start", res["start_losses"], {
        "long_name": "final negative log posterior of each L-BFGS start"})
    ds["start_iterations"] = ("start", res["start_iterations"])
    ds["start_value"] = (("start", "parameter"), res["starts"], {"long_name": "start point"})
    ds["start_estimate"] = (("start", "parameter"), res["start_thetas"])
    g = np.array([[gains(src[i], ds["target_velocity"].values[i], ds["occluded"].values[i])
                   for i in range(len(CONDITIONS))]
                  for src in (ds["eye_velocity"].values, res["eye_fit"])])  # (source, cond, 2)
    ds = ds.assign_coords(source=["data", "fit"], phase=["visible", "occluded"])
    ds["gain"] = (("source", "condition", "phase"), g, {"units": "1", "long_name": "pursuit gain"})
    values = {k: np.asarray(v) for k, v in spec.condition_values(res["theta"]).items()}
    ds["retina_log_precision"] = ("condition", values["retina"])
    ds["state2_log_precision"] = ("condition", values["state2"])
    ds = ds.assign_coords(kinetic=list(KINETIC))
    ds["kinetic_parameter"] = (("condition", "kinetic"),
                               np.stack([values[k] for k in KINETIC], 1), {
        "long_name": "agent's level-1 kinetic parameters (log gains, linear k_t)"})
    if profile is not None:
        need = needed_change(profile)
        ds = ds.assign_coords(profile_parameter=profile["parameter"].values,
                              delta=profile["delta"].values, speed=["fast", "slow"])
        for k in ("gain_visible", "gain_occluded", "nll"):
            ds[f"profile_{k}"] = (("profile_parameter", "delta", "condition"),
                                  profile[k].values, dict(profile[k].attrs))
        ds["needed_shift"] = (("profile_parameter", "condition"), need["shift"].values, {
            "long_name": "shift from the MAP giving the condition the data's visible gain"})
        ds["needed_noise_effect"] = (("profile_parameter", "speed"), need["noise_effect"].values,
                                     {"long_name": "noisy minus smooth needed shift"})
        ds["needed_nll_change"] = ("profile_parameter", need["nll_change"].values, {
            "long_name": "change of -log likelihood, every condition at its needed shift"})
    ds.attrs.update({"map_seconds": res["t_map"], "laplace_seconds": res["t_laplace"],
                     "map_iterations": int(res["start_iterations"][res["best_start"]]),
                     "starts": len(res["start_losses"]),
                     "best_start": int(res["best_start"]),
                     "hessian_eigenvalues_floored": res["hessian_clipped"],
                     "paradigm": PARADIGM_NAME,
                     "method": "multi-start optax L-BFGS MAP (starts drawn from the prior, "
                               "reverse-mode gradients through the paradigm's simulator) "
                               "+ Laplace"})
    return ds


def plot_traces(ds: xr.Dataset):
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    with style():
        fig = Figure(figsize=(10.0, 6.4), layout="constrained")
        axs = fig.subplots(2, 2, sharey=True)
    for ax, c in zip(axs.ravel(), CONDITIONS, strict=True):
        d = ds.sel(condition=c)
        t = d["time_ms"].values / 1000
        occ = d["occluded"].values
        for b in np.flatnonzero(occ):
            w = float(d["period_ms"]) / BINS / 1000
            ax.axvspan(t[b] - w / 2, t[b] + w / 2, color="0.9", lw=0)
        ax.plot(t, d["target_velocity"], color="0.4", ls="--", lw=1, label="target")
        ax.fill_between(t, d["eye_pp_lo"], d["eye_pp_hi"], color=PALETTE[0], alpha=0.25,
                        label="fit: predictive 90 %")
        ax.plot(t, d["eye_velocity_fit"], color=PALETTE[0], lw=1.5, label="fit (MAP)")
        ax.plot(t, d["eye_velocity"], "o", ms=3, color=PALETTE[1],
                label="human eye (grand average, saccades removed)")
        g = d["gain"]
        gv = [float(g.sel(source=src, phase=ph)) for ph in ("visible", "occluded")
              for src in ("data", "fit")]
        ax.set_title(f"{c.replace('_', ', ')}: gain visible {gv[0]:.2f} (fit {gv[1]:.2f}), "
                     f"occluded {gv[2]:.2f} (fit {gv[3]:.2f})", fontsize=8)
        ax.set_xlabel("time (s)")
    for ax in axs[:, 0]:
        ax.set_ylabel("velocity (target amplitudes / bin)")
    axs[0, 0].legend(frameon=False, fontsize=7, loc="lower left")
    fig.suptitle("Smooth pursuit through occlusion: human traces and the fitted active-"
                 "inference agent (grey: occluded)")
    return fig


_LABEL = {"retina": "retina (log-precision)", "state2": "prior, level 2 (log-precision)",
          "k_c": "eye to cause (log gain k_c)", "k_h": "hidden: change of it (k_h)",
          "k_t": "eye to target (gain k_t)", "k_th": "hidden: change of it (k_th)",
          "k_d": "eye damping (log, k_d)", "k_r": "target to cause (log rate, k_r)",
          "proprio": "proprioception (log-precision)", "state1": "level-1 states (log-prec.)",
          "cause2": "level-2 cause (log-precision)", "prior": "frequency prior (log-prec.)"}


def plot_effects(ds: xr.Dataset):
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    with style():
        fig = Figure(figsize=(10.0, 5.2), layout="constrained")
        axs = fig.subplots(1, 2, width_ratios=(1.1, 1.0))
    ax = axs[0]
    names = [str(p) for p in ds["parameter"].values if p != "log_sigma"]
    y = np.arange(len(names))[::-1]
    est = ds["estimate"].sel(parameter=names).values
    ci = ds["interval90"].sel(parameter=names).values
    cols = [PALETTE[0] if "retina" in n else PALETTE[2] if "state2" in n else PALETTE[3]
            for n in names]
    for yi, e, (lo, hi), col in zip(y, est, ci, cols, strict=True):
        ax.plot([lo, hi], [yi, yi], color=col, lw=2)
        ax.plot(e, yi, "o", color=col)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y)

    def label(n: str) -> str:
        stem, _, effect = n.rpartition("_")
        return f"   {effect} effect" if effect in EFFECTS else _LABEL.get(n, n)

    ax.set_yticklabels([label(n) for n in names], fontsize=8)
    ax.set_xlabel("estimate (MAP, 90 % Laplace interval)")
    ax.set_title("log-precisions (blue, green) and kinetics (pink):\nintercepts and condition "
                 "effects", fontsize=9)
    ax = axs[1]
    x = np.arange(len(CONDITIONS))
    w = 0.2
    for k, (src, ph) in enumerate([("data", "visible"), ("fit", "visible"),
                                   ("data", "occluded"), ("fit", "occluded")]):
        ax.bar(x + (k - 1.5) * w, ds["gain"].sel(source=src, phase=ph), w,
               color=PALETTE[0 if ph == "visible" else 1], alpha=1.0 if src == "data" else 0.45,
               label=f"{ph}, {src}")
    ax.set_xticks(x)
    ax.set_xticklabels([c.replace("_", "\n") for c in CONDITIONS], fontsize=8)
    ax.set_ylabel("pursuit gain")
    ax.set_ylim(0, 1.2)
    ax.legend(frameon=False, fontsize=7, ncol=2, loc="upper right")
    ax.set_title(f"gains: data vs fit (best of {ds.attrs['starts']} starts)")
    return fig


def plot_noisy(ds: xr.Dataset):
    """The profile: each parameter's effect on the visible gain of a smooth and a noisy
    condition, against the data's gains (fast speed left, slow right)."""
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    with style():
        fig = Figure(figsize=(10.0, 4.6), layout="constrained")
        axs = fig.subplots(1, 2, sharey=True)
    d = ds["delta"].values
    for ax, sp in zip(axs, ("fast", "slow"), strict=True):
        for k, p in enumerate(ds["profile_parameter"].values):
            col, ls = PALETTE[k % len(PALETTE)], "-" if k < len(PALETTE) else ":"
            for cond, lw in ((f"{sp}_smooth", 1.8), (f"{sp}_noisy", 0.9)):
                g = ds["profile_gain_visible"].sel(profile_parameter=p, condition=cond)
                ax.plot(d, g, color=col, ls=ls, lw=lw, label=str(p) if lw > 1 else None)
        for cond, ls in ((f"{sp}_smooth", "-"), (f"{sp}_noisy", "--")):
            ax.axhline(float(ds["gain"].sel(source="data", phase="visible", condition=cond)),
                       color="k", ls=ls, lw=1)
        ax.set_title(f"{sp}: data smooth (black line), noisy (dashed); model smooth (thick), "
                     "noisy (thin)", fontsize=8)
        ax.set_xlabel("shift of the parameter from the MAP")
        ax.set_ylim(0.0, 1.5)
    axs[0].set_ylabel("visible pursuit gain")
    axs[0].legend(frameon=False, fontsize=7, ncol=2)
    fig.suptitle("Which parameter sets the visible gain? (one at a time, from the MAP)")
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--data", metavar="CSV", default=str(BINNED),
                        help="binned tidy data (default: the shipped grand averages)")
    parser.add_argument("--steps", type=int, default=80,
                        help="L-BFGS iterations per start (default 80)")
    parser.add_argument("--starts", type=int, default=4,
                        help="L-BFGS starts drawn from the prior; the best is kept (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starts (default 0)")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the noisy-condition profile of every parameter")
    parser.add_argument("--no-figures", action="store_true", help="write the results only")


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych.plotting import save_figure

    if args.steps < 1:
        raise ValueError(f"--steps: expected at least 1 L-BFGS iteration, got {args.steps}")
    if args.starts < 1:
        raise ValueError(f"--starts: expected at least 1 start, got {args.starts}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    data = prepare_data(args.data)
    print(f"pursuit fit ({PARADIGM_NAME}): {len(PARAMS)} parameters, {args.starts} starts x "
          f"{args.steps} L-BFGS iterations", flush=True)
    res = fit(data, steps=args.steps, starts=args.starts, seed=args.seed, verbose=True)
    profile = None if args.no_profile else noisy_profile(data, res["theta"])
    ds = results_dataset(data, res, profile)
    out = Path(args.out)
    nc = cpsych.save(ds, out / "fit_pursuit.nc")
    figs = [] if args.no_figures else [save_figure(plot_traces(ds), out / "fit_pursuit_traces"),
                                       save_figure(plot_effects(ds), out / "fit_pursuit_effects")]
    if profile is not None and not args.no_figures:
        figs.append(save_figure(plot_noisy(ds), out / "fit_pursuit_noisy"))
    sl = res["start_losses"]
    print(f"MAP {ds.attrs['map_seconds']:.1f} s, best start {res['best_start'] + 1}: "
          f"-log posterior per start {', '.join(f'{v:.1f}' for v in sl)} (spread "
          f"{np.ptp(sl[np.isfinite(sl)]) if np.isfinite(sl).any() else np.nan:.1f}); "
          f"Laplace {ds.attrs['laplace_seconds']:.1f} s "
          f"({ds.attrs['hessian_eigenvalues_floored']} Hessian eigenvalues floored)")
    for p in PARAMS:
        lo, hi = ds["interval90"].sel(parameter=p).values
        print(f"  {p:14s} {float(ds['estimate'].sel(parameter=p)):+.2f}  [{lo:+.2f}, {hi:+.2f}]")
    for c in CONDITIONS:
        g = ds["gain"].sel(condition=c)
        print(f"  {c:12s} gain visible data {float(g.sel(source='data', phase='visible')):.2f} "
              f"fit {float(g.sel(source='fit', phase='visible')):.2f}; occluded data "
              f"{float(g.sel(source='data', phase='occluded')):.2f} fit "
              f"{float(g.sel(source='fit', phase='occluded')):.2f}")
    if profile is not None:
        need = needed_change(profile)
        g = ds["gain"].sel(source="data", phase="visible").values
        print(f"  visible gain smooth minus noisy: data {g[0] - g[1]:.2f} (fast), "
              f"{g[2] - g[3]:.2f} (slow). Noise effect one parameter would need (noisy minus "
              "smooth shift from the MAP; change of -log likelihood with every condition at "
              "its data gain):")
        for p in need["parameter"].values:
            e = need["noise_effect"].sel(parameter=p).values
            print(f"    {p:8s} fast {e[0]:+.2f}, slow {e[1]:+.2f} "
                  f"({float(need['nll_change'].sel(parameter=p)):+.1f})")
    print(f"  results: {nc}")
    for _pdf, png in figs:
        print(f"  figure:  {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
