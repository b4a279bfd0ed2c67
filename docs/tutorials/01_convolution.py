# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Inverting a model: the linear convolution model
#
# This tutorial builds a hierarchical dynamic model, inverts it on data by generalised
# filtering, and checks the posterior against SPM's DEM toolbox on the same data. It is the
# validation case of the package: a linear model whose posterior cpsych reproduces to rounding
# error.
#
# A smooth bump of input $v$ drives two coupled hidden states $x$ (a damped oscillator) that
# four noisy channels observe:
#
# $$
# \dot x = A x + B v + w, \qquad y = C x + z, \qquad v = \eta + z^{(2)}, \quad \eta = 0 .
# $$
#
# Run time: about 11 s of CPU time, most of it compiling (measured on the 2-core build
# machine; 48 s of wall time there under a load of about 15).

# %%
# %matplotlib inline
from pathlib import Path

import jax
import numpy as np
from IPython.display import display

import cpsych
from cpsych.experiments.convolution import load_reference
from cpsych.models import convolution
from cpsych.plotting import PALETTE, figure, plot_inversion, style

print("cpsych", cpsych.__version__)

# %% [markdown]
# ## The model
#
# `convolution.model()` returns an `HDM` with one `Level`: the functions `f` and `g`, the sizes,
# the parameters and the log-precisions of the fluctuations. The embedding settings are in
# generalised coordinates: `n = 7` orders for states, `d = 3` for causes, noise smoothness
# `s = 1/2` bin.

# %%
model = convolution.model()
level = model.levels[0]
print("A =\n", convolution.A, "\nB =", convolution.B.ravel(), "\nC =\n", convolution.C.round(4))
print("log-precisions: z", level.log_pi_z, " w", level.log_pi_w, " prior", model.log_pi_eta)
print("settings:", model.settings())

# %% [markdown]
# ## SPM's data
#
# The repository ships the data SPM12's `spm_DEM_generate` drew from this model (32 bins), with
# the true states and cause.

# %%
ref = load_reference()
Y, U, X = ref["Y"], ref["U"], ref["X"]
print("data", Y.shape, " true cause", U.shape, " true states", X.shape)

# %% [markdown]
# ## Inversion
#
# `cpsych.invert` validates the model and the data, runs the jitted filter, and returns a
# labelled `xarray.Dataset`: posterior expectations with conditional (co)variances, predictions,
# prediction errors, the sensory log-precision in force and the free energy of every bin.

# %%
post = cpsych.invert(model, Y)
display(post)

# %% [markdown]
# The standard four-panel figure: (a) predictions of the data (solid) and their prediction
# errors (dotted) with the data as dots; (b) hidden states and (c) the cause with 90 %
# conditional intervals, against the truth (dashed); (d) the free energy of each bin.

# %%
display(plot_inversion(post, truth={"x": X, "v": U}, data=True,
               title="Linear convolution model: generalised filtering"))

# %% [markdown]
# ## Agreement with SPM
#
# SPM's posteriors (DEM's D-step and the Laplace scheme `spm_LAP`) for these data are stored
# under `tests/data/convolution` in a checkout of the repository (they are test data, not
# installed with the package). SPM stores variables in rows and time in columns.

# %%
def repository_root() -> Path:
    """The checkout holding tests/data (the docs build runs from the repository root)."""
    for p in (Path.cwd(), *Path.cwd().parents):
        if (p / "tests" / "data" / "convolution").is_dir():
            return p
    raise FileNotFoundError("run this tutorial from a checkout of the cpsych repository")


spm_dir = repository_root() / "tests" / "data" / "convolution"


def spm(name: str) -> np.ndarray:
    return np.loadtxt(spm_dir / f"{name}.csv", delimiter=",", ndmin=2)


rows = []
for scheme in ("DEM", "LAP"):
    ex = np.abs(post["x"].values.T - spm(f"{scheme}_qU_x1")).max()
    ev = np.abs(post["v"].values.T - spm(f"{scheme}_qU_v2")).max()
    cv = np.abs(post["v_var"].values / spm(f"{scheme}_qU_C").ravel() - 1).max()
    rows.append((scheme, ex, ev, cv))
    print(f"{scheme}: max |x - SPM| = {ex:.1e}, max |v - SPM| = {ev:.1e}, "
          f"max relative error of var(v) = {cv:.1e}")
assert max(max(r[1:]) for r in rows) < 1e-8  # rounding error, not a convention

# %% [markdown]
# The differences are at the level of floating-point rounding (about 1e-13). The figure
# overlays SPM's posterior (markers) on cpsych's (lines), and shows the absolute difference on a
# log scale.

# %%
t = post["time"].values
dem_x, dem_v = spm("DEM_qU_x1"), spm("DEM_qU_v2")
with style():
    fig = figure("double", aspect=0.36)
    a, b = fig.subplots(1, 2)
    for i, name in enumerate(post["state"].values):
        a.plot(t, post["x"].sel(state=name), color=PALETTE[i], label=f"cpsych {name}")
        a.plot(t, dem_x[i], "o", color=PALETTE[i], markersize=3, label=f"SPM {name}")
    a.plot(t, post["v"].sel(cause="v"), color=PALETTE[2], label="cpsych v")
    a.plot(t, dem_v[0], "s", color=PALETTE[2], markersize=3, label="SPM v")
    a.set(xlabel="time (bins)", ylabel="posterior expectation (a.u.)")
    a.set_title("cpsych (lines) and SPM DEM (markers)", loc="left")
    a.legend(ncol=3, loc="upper right")
    diff = np.abs(np.vstack([post["x"].values.T - dem_x, post["v"].values.T - dem_v]))
    for i, lab in enumerate(["x1", "x2", "v"]):
        b.semilogy(t, np.maximum(diff[i], 1e-18), color=PALETTE[i], label=lab)
    b.set(xlabel="time (bins)", ylabel="|cpsych - SPM|", ylim=(1e-18, 1e-10))
    b.set_title("absolute difference", loc="left")
    b.legend(loc="upper right")
display(fig)

# %% [markdown]
# ## Generating new data
#
# `cpsych.generate` integrates the same model forward with smooth noise at the model's
# precisions. Inverting many data sets gives the coverage of the 90 % intervals: an optimal
# filter should hold the truth about 90 % of the time.

# %%
cover, rms = [], []
for seed in range(8):
    sim = cpsych.generate(model, convolution.bump(), jax.random.key(seed))
    fit = cpsych.invert(model, sim["y"].values.T)
    err = np.abs(fit["x"].values - sim["x"].values)
    cover.append(np.mean(err <= 1.645 * np.sqrt(fit["x_var"].values)))
    rms.append(np.sqrt(np.mean(err ** 2)))
print(f"90 % intervals hold the true states {100 * np.mean(cover):.0f} % of the time "
      f"(8 data sets); RMS error {np.mean(rms):.3f}")

# %% [markdown]
# The last data set, inverted:

# %%
display(plot_inversion(fit, truth=sim, title="A new data set from the same model"))
