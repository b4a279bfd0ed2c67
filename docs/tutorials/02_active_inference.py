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
# # Active inference: reaching, and attention as precision
#
# In active inference an agent does not only infer the causes of its sensations: it acts on the
# world so that its sensations match its predictions. cpsych keeps the two apart. The **world**
# is a `cpsych.Process` with its own states, noise and the agent's action; the **agent** is an
# `HDM`, a generative model that never sees the world's states, only its sensations.
# `cpsych.simulate` integrates world, beliefs and action together.
#
# Part 1 builds a one-joint reaching agent from scratch. Part 2 runs the Posner cueing
# paradigm from `cpsych.models`, in which attention is nothing but the precision of sensory
# prediction errors.
#
# Run time: about 14 s of CPU time, most of it compiling (measured on the 2-core build
# machine; 55 s of wall time there under a load of about 15).

# %%
# %matplotlib inline
import numpy as np
from IPython.display import display

import cpsych
from cpsych.plotting import PALETTE, figure, plot_active, style

# %% [markdown]
# ## 1. A reaching agent
#
# **World.** One joint angle $x$ (radians), moved by action $a$ against a weak spring:
# $\dot x = a - x/8$. The agent senses the angle through proprioception and vision
# ($y = [x, x]$), almost noiselessly.
#
# **Agent.** It believes that its arm is drawn to a target position $v$ (the cause):
# $\dot x = (v - x)/2$, and it predicts both sensations from the believed angle. Its prior over
# $v$ is the plan: hold at 0, reach to 1 rad at 100 ms, come back at 400 ms.
# Bins last 10 ms, so the time axes are in ms.

# %%
T, BIN_MS = 64, 10.0
world = cpsych.Process(
    f=lambda x, v, a, th: a - x / 8,
    g=lambda x, v, a, th: np.array([1.0, 1.0]) * x[0],
    n_x=1, n_v=0, n_a=1, x_names=("angle",), y_names=("proprioception", "vision"),
)


def predict(x, v, theta):
    """The agent's predictions of proprioception and vision from the believed angle."""
    return np.array([1.0, 1.0]) * x[0]


def motion(x, v, theta):
    """The agent's belief about the dynamics: the arm is drawn to the target."""
    return (v - x) / 2


def agent(log_pi_proprio: float = 4.0) -> cpsych.HDM:
    """The agent's model, with the log-precision of its proprioceptive errors as a knob.

    Functions are static parts of a model (they decide what JAX compiles), numbers are
    leaves: defining ``predict`` and ``motion`` once lets every precision reuse one
    compilation.
    """
    level = cpsych.Level(
        g=predict, f=motion,
        n_x=1, n_v=1, log_pi_z=np.array([log_pi_proprio, 4.0]), log_pi_w=4.0,
        x_names=("angle",), v_names=("target",), out_names=("proprioception", "vision"),
    )
    return cpsych.HDM(levels=(level,), log_pi_eta=4.0, n=4, d=2, s=0.5)


t_ms = np.arange(T) * BIN_MS
plan = ((t_ms >= 100) & (t_ms < 400)).astype(float)[None, :]      # (n_top, T)
reach = cpsych.simulate(world, agent(), causes=None, priors=plan,
                        action_mask=np.array([1.0, 0.0]),          # reflexes: proprioception only
                        noise=False, time=t_ms, time_units="ms")
display(plot_active(reach, title="Reaching: action fulfils the predicted proprioception"))

# %% [markdown]
# Panel (a) shows the predicted sensations and their (dotted) prediction errors; (b) the
# believed angle with its 90 % interval and, dashed in black, the true angle of the world;
# (c) the believed target; (d) action. The agent does not compute a motor command from a goal:
# its prior belief that the arm is at the target predicts proprioception, and action removes
# the proprioceptive prediction error that results. The *action mask* says which sensory
# channels drive reflexes (here proprioception only, as in SPM's `G(1).U`).
#
# ### Precision decides whether the agent acts
#
# The agent's proprioceptive precision sets how strongly the sensed (unmoved) arm argues against
# its belief that it is moving. With very precise proprioception the evidence wins, the belief
# stays near the current angle and the arm barely moves. Precisions are pytree leaves of the
# model, so the sweep below reuses one compilation.

# %%
levels = [0.0, 4.0, 6.0, 8.0]
with style():
    fig = figure("single", aspect=0.8)
    ax = fig.subplots()
    ax.plot(t_ms, plan[0], ":", color="k", label="plan (prior)")
    for i, lp in enumerate(levels):
        ds = cpsych.simulate(world, agent(lp), None, plan, action_mask=np.array([1.0, 0.0]),
                             noise=False, time=t_ms, time_units="ms")
        ax.plot(t_ms, ds["x_process"].sel(process_state="angle"), color=PALETTE[i],
                label=f"{lp:g}")
    ax.set(xlabel="time (ms)", ylabel="joint angle (rad)", xlim=(0, t_ms[-1]), ylim=(-0.1, 1.5))
    ax.set_title("Reaches under four proprioceptive precisions", loc="left")
    ax.legend(loc="upper center", ncol=5, title="proprioceptive log-precision", fontsize=6.5,
              title_fontsize=7)
display(fig)

# %% [markdown]
# This is the logic of **sensory attenuation** (see the force-matching tutorial): to move, an
# agent must lower the precision of the sensations that say it is not moving.
#
# ## 2. Attention as precision: Posner cueing
#
# In the Posner paradigm a cue points to the left, and a target then appears on the left
# (valid trial) or on the right (invalid trial). The observer's hidden state *attention* sets
# the log-precision of the two target channels, $2 \pm \gamma x$: the cue raises the precision
# on the cued side, so a validly cued target is believed sooner. The observer cannot act (its
# action mask is zero), so this is perception run through the same integrator.

# %%
from cpsych.models import posner  # noqa: E402

trials = {cue: posner.simulate_trial(cue) for cue in posner.CUES}
no_attention = {cue: posner.simulate_trial(cue, attention_gain=0.0) for cue in posner.CUES}
for cue in posner.CUES:
    print(f"{cue:8s} RT {trials[cue].attrs['rt_ms']:5.1f} ms with attention, "
          f"{no_attention[cue].attrs['rt_ms']:5.1f} ms without")
effect = trials["invalid"].attrs["rt_ms"] - trials["valid"].attrs["rt_ms"]
print(f"validity effect: {effect:.0f} ms")

# %%
onset = trials["valid"].attrs["target_onset_ms"]
th = trials["valid"].attrs["threshold"]
with style():
    fig = figure("double", aspect=0.34)
    a, b = fig.subplots(1, 2)
    for i, cue in enumerate(posner.CUES):
        ds = trials[cue]
        t = ds["time"].values
        a.plot(t, ds["belief"], color=PALETTE[i], label=f"{cue} cue")
        a.plot(t, no_attention[cue]["belief"], color=PALETTE[i], ls=":", lw=1.0)
        a.axvline(onset + ds.attrs["rt_ms"], color=PALETTE[i], lw=0.8, ls="--")
        b.plot(t, ds["x"].sel(state="attention"), color=PALETTE[i], label=f"{cue} cue")
    a.axhline(th, color="0.3", lw=0.8, ls="--", label=f"threshold {th:g}")
    a.axvline(onset, color="0.6", lw=0.8)
    a.set(xlabel="time (ms)", ylabel="belief in the target", xlim=(onset - 100, t[-1]))
    a.set_title("belief (dotted: no attention)", loc="left")
    a.legend(loc="lower right")
    b.axvline(onset, color="0.6", lw=0.8, label="target onset")
    b.set(xlabel="time (ms)", ylabel="attention to the left (a.u.)", xlim=(t[0], t[-1]))
    b.set_title("attention: oriented by the cue, captured by the target", loc="left")
    b.legend(loc="lower left")
display(fig)

# %% [markdown]
# On valid trials the belief rises quickly because the target arrives where precision is high;
# on invalid trials it lags until the target captures attention and with it precision. Without
# attention ($\gamma = 0$, dotted) both cues give the same reaction time. The full four-panel
# figure of the invalid trial shows the sensory log-precisions in force in place of action:

# %%
from cpsych.experiments.posner import plot_trial  # noqa: E402

display(plot_trial(trials["invalid"], "Posner trial, invalid cue"))
