"""Learning (E- and M-steps): parameters and log-precisions recovered from generated data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpsych
from cpsych.learning import free_action, learn
from cpsych.models import convolution


def _build(p):
    A = jnp.asarray(convolution.A).at[1, 0].set(p["a21"])
    m = convolution.model(log_pi_z=p["h"])
    lv = dataclasses.replace(m.levels[0], theta={"A": A, "B": convolution.B, "C": convolution.C})
    return dataclasses.replace(m, levels=(lv,))


@pytest.mark.slow
def test_learning_recovers_coupling_and_noise_precision():
    T = 64
    t = np.arange(1, T + 1)
    u = (np.exp(-(((t - 12) / 2.0) ** 2)) + np.exp(-(((t - 40) / 3.0) ** 2)))[None]
    sim = cpsych.generate(convolution.model(log_pi_z=6.0), u, jax.random.key(2))
    y = sim["y"].values.T
    start = {"a21": 0.0, "h": 4.0}
    res = learn(_build, y, start, prior_var=jnp.array([1.0, 4.0]), max_iter=60)
    assert res.converged
    # true values: a21 = -0.5, h = 6
    assert abs(float(res.params["a21"]) + 0.5) < 0.1
    assert abs(float(res.params["h"]) - 6.0) < 1.0
    # learning lowered the free action from the start
    y_j = jnp.asarray(y)
    before = free_action(_build(start).validate(), y_j)
    after = free_action(_build(res.params).validate(), y_j)
    assert after < before - 10
    assert res.sd["a21"] > 0 and np.isfinite(res.cov).all()


def test_bad_prior_variance_is_rejected():
    with pytest.raises(ValueError, match="prior_var: prior variances must be positive"):
        learn(_build, np.zeros((4, 8)), {"a21": 0.0, "h": 4.0}, prior_var=0.0)
