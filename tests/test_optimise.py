"""cpsych.optimise.lbfgs: the one quasi-Newton loop of learning and fitting."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cpsych.optimise import lbfgs


def _rosenbrock(p):
    x, y = p["x"], p["y"]
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def test_minimises_rosenbrock_over_a_pytree():
    calls = []
    res = lbfgs(_rosenbrock, {"x": -1.2, "y": 1.0}, max_iter=200, tol=1e-8,
                callback=lambda i, v, g: calls.append(v))
    assert res.converged
    np.testing.assert_allclose([res.x["x"], res.x["y"]], [1.0, 1.0], atol=1e-6)
    assert len(calls) == res.history.size and res.history[0] == pytest.approx(24.2)


def _kink(x):
    """x^2 whose gradient is undefined (NaN) for x > 2, as where a simulation runs away."""
    return jnp.sum(x**2) + 0.0 * jnp.sqrt(jnp.maximum(2.0 - x[0], 0.0))


def test_a_non_finite_gradient_raises_or_stops_at_the_last_finite_point():
    with pytest.raises(FloatingPointError, match="or its gradient became non-finite at"):
        lbfgs(_kink, jnp.array([4.0]), max_iter=50)
    res = lbfgs(_kink, jnp.array([4.0]), max_iter=50, non_finite="stop")
    assert not res.converged and np.isnan(res.grad_norm)
    assert float(res.x[0]) == 4.0 and res.history.tolist() == [16.0]
    # from the well-defined side it converges to 0 as usual
    ok = lbfgs(_kink, jnp.array([1.5]), max_iter=50, non_finite="stop")
    assert ok.converged and abs(float(ok.x[0])) < 1e-6
    with pytest.raises(ValueError, match="^non_finite: expected 'raise' or 'stop'"):
        lbfgs(_kink, jnp.array([1.0]), non_finite="ignore")
