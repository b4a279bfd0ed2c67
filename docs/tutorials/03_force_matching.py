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
# # The force-matching illusion in health, schizophrenia and autism
#
# People who press on their own finger and then reproduce the force they felt press harder than
# the external force they were asked to match: self-generated forces feel weaker. Brown et al.
# (2013) explain this by **sensory attenuation**: while an agent believes it is pushing it lowers
# the precision of its sensations, which lets it act (see the active-inference tutorial) at the
# price of underestimating its own force. Patients with schizophrenia show less of the illusion.
#
# This tutorial runs the paradigm from `cpsych.models.force_matching` for the presets of the
# three groups, draws the force-matching curves, and looks inside one trial of each group. The
# trial functions are pure JAX, so `jax.jit` and `jax.vmap` batch them.
#
# Run time: about 20 s of CPU time, most of it compiling (measured on the 2-core build
# machine; 68 s of wall time there under a load of about 15).

# %%
# %matplotlib inline
import jax
import jax.numpy as jnp
import numpy as np
from IPython.display import display

from cpsych.active import active_dataset
from cpsych.models import force_matching as fm
from cpsych.plotting import PALETTE, figure, plot_active, style

for name, p in fm.PRESETS.items():
    print(f"{name:14s} h {p.h:4.1f}  sensory {p.log_pi_y:4.1f}  state {p.log_pi_x:4.1f}  "
          f"prior on v_self {p.log_pi_self:4.1f}")

# %% [markdown]
# ## One trial, three read-outs
#
# In a trial the agent intends a force that peaks at bin 16 (`target` N). The **true force** is
# the peak of the world's state. The **perceived force** is what the agent is about 90 % sure
# it produced: its posterior mean of its own force at that time minus 1.694 posterior SDs. The
# **matched force** is the external force that would feel the same; external forces are
# perceived almost veridically, and their percept is affine in their amplitude, so two passive
# replays calibrate it (`fm.matched_force`).

# %%
def readouts(params: fm.Params, target):
    out = fm.simulate_trial(params, target)
    force = out.x_process[:, 0]
    t = jnp.argmax(force)
    perceived = fm.percept(out, t, "self")
    return force[t], perceived, fm.matched_force(params, perceived, force)


targets = jnp.asarray(fm.TARGETS)
curve = jax.jit(jax.vmap(readouts, in_axes=(None, 0)))   # all targets in one call

groups = ("control", "schizophrenia", "autism")
results = {g: np.asarray(curve(fm.PRESETS[g], targets)) for g in groups}
for g, (true, perceived, matched) in results.items():
    slope, intercept = np.polyfit(matched, true, 1)
    print(f"{g:14s} self-generated {np.round(true, 2)}  perceived {np.round(perceived, 2)}  "
          f"matched {np.round(matched, 2)}  slope {slope:.2f}, intercept {intercept:+.2f} N")

# %% [markdown]
# ## The force-matching curves
#
# Each group's self-generated force against the external force it matched, beside the identity
# line (no illusion) and the regression line of healthy people (Shergill et al. 2003:
# self-generated = 0.53 N + 1.49 x matched).

# %%
with style():
    fig = figure("single", aspect=0.95)
    ax = fig.subplots()
    hi = 3.2
    ax.plot([0, hi], [0, hi], color="0.6", ls=":", label="identity (no illusion)")
    ax.plot([0, hi], [0.53, 0.53 + 1.49 * hi], color="0.3", ls="--", lw=1.0,
            label="humans (Shergill et al. 2003)")
    for i, g in enumerate(groups):
        true, _, matched = results[g]
        ax.plot(matched, true, "-o", color=PALETTE[i], markersize=4, label=g)
    ax.set(xlim=(0, hi), ylim=(0, hi), aspect="equal",
           xlabel="matched external force (N)", ylabel="self-generated force (N)")
    ax.set_title("Force-matching illusion", loc="left")
    ax.legend(loc="lower right", fontsize=6.5)
display(fig)

# %% [markdown]
# Controls overshoot at every target, increasingly with force; in the schizophrenia preset
# (attenuation `h` lowered by 2, prior precisions raised by 2) the curve lies near the identity
# line, as in patients; the autism preset (sensory precision raised, attenuation lowered) also
# shows little illusion.
#
# ## Inside a trial
#
# `fm.trial_output` returns the whole trial; `active_dataset` labels it like
# `cpsych.simulate`'s output, ready for the standard active-inference figure. Forces are in N.

# %%
trial_jit = jax.jit(fm.trial_output)   # one compilation for every preset and target


def trial_figure(group: str, target: float = 1.0):
    params = fm.PRESETS[group]
    out = trial_jit(params, target)
    ds = active_dataset(fm.process(), fm.model(params), out)
    return plot_active(ds, title=f"Force matching, {group} ({target:g} N target)")


display(trial_figure("control"))

# %%
display(trial_figure("schizophrenia"))

# %% [markdown]
# In the control trial the sensory log-precision falls while the agent believes it is pushing,
# the agent acts, and its belief in its own force (panel b) stays below the true force (dashed).
# With less attenuation and more precise priors the belief follows the force more closely.
#
# ## Delusions of control
#
# With `D = 4` (the `delusion` preset) the agent pushes with a 2 N intention and no external
# force is applied, yet it becomes confident that someone is pushing against it:

# %%
for g in ("control", "delusion"):
    conf, mean = fm.false_external_force(trial_jit(fm.PRESETS[g], 2.0))
    print(f"{g:9s} |E x_ext| - 1.694 SD = {float(conf):+.3f} N "
          f"(posterior mean of the external force there: {float(mean):+.2f} N)")
