"""Malformed models and data are rejected before tracing, naming the level and field."""

import dataclasses

import numpy as np
import pytest

import cpsych
from cpsych import HDM, Level
from cpsych.models import convolution


def _level(**kw):
    base = dict(g=lambda x, v, th: x[:1] * 2, f=lambda x, v, th: -x + v[0], n_x=2, n_v=1)
    base.update(kw)
    return Level(**base)


def _model(level=None, **kw):
    return HDM(levels=(level or _level(),), **kw)


@pytest.mark.parametrize(
    "level, message",
    [
        (_level(f=lambda x, v, th: x[:1]), r"level 1: field 'f' returns shape \(1,\), expected \(2,\)"),
        (_level(n_x=3, f=lambda x, v, th: x[:2]), r"level 1: field 'f' returns shape \(2,\), expected \(3,\) = n_x"),
        (_level(g=lambda x, v, th: x[0]), r"level 1: field 'g' returns shape \(\)"),
        (_level(f=None), r"level 1: field 'f' is required"),
        (_level(log_pi_z=np.inf), r"level 1: field 'log_pi_z' has non-finite"),
        (_level(log_pi_w=[1.0, np.nan]), r"level 1: field 'log_pi_w' has non-finite"),
        (_level(log_pi_w=[1.0, 2.0, 3.0]), r"level 1: field 'log_pi_w' must be a scalar or have shape \(2,\)"),
        (_level(pi_z=0.0), r"level 1: field 'pi_z' must be positive"),
        (_level(pi_w=-1.0), r"level 1: field 'pi_w' must be positive"),
        (_level(pi_z=np.nan), r"level 1: field 'pi_z' has non-finite"),
        (_level(x0=[1.0, 2.0, 3.0]), r"level 1: field 'x0'"),
        (_level(x_names=("a",)), r"level 1: field 'x_names' has 1 names for 2 values"),
    ],
)
def test_bad_levels(level, message):
    with pytest.raises(ValueError, match=message):
        _model(level).validate()


def test_second_level_output_must_match_first_level_causes():
    top = Level(g=lambda x, v, th: np.ones(3) * v[0], n_v=1)
    with pytest.raises(ValueError, match=r"level 2: field 'g' returns shape \(3,\).*n_v of level 1"):
        HDM(levels=(_level(), top)).validate()


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(n=0), r"HDM: field 'n' \(embedding order\) must be an integer >= 1"),
        (dict(n=3, d=4), r"HDM: field 'd' must be an integer with 1 <= d <= n"),
        (dict(d=0), r"HDM: field 'd'"),
        (dict(s=-0.5), r"HDM: field 's' \(smoothness\) must be >= 0"),
        (dict(s=np.nan), r"HDM: field 's' has non-finite"),
        (dict(log_pi_eta=np.inf), r"prior: field 'log_pi_eta' has non-finite"),
        (dict(eta=np.zeros(3)), r"prior: field 'eta' must be a scalar, \(1,\)"),
        (dict(levels=()), r"HDM: field 'levels' must hold at least one Level"),
    ],
)
def test_bad_model_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        _model(**kw).validate() if "levels" not in kw else HDM(**kw).validate()


def test_data_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"y: data must have shape \(n_y, T\) = \(4, T\)"):
        cpsych.invert(convolution.model(), np.zeros((3, 32)))


def test_non_finite_data_is_rejected():
    y = np.zeros((4, 32))
    y[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"y: data has non-finite values at \(channel, time\) \(2, 5\)"):
        cpsych.invert(convolution.model(), y)


def test_prior_series_of_the_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="eta: prior time series has 10 bins but the data has 32"):
        cpsych.invert(convolution.model(), np.zeros((4, 32)), eta=np.zeros((1, 10)))


def test_divergence_is_reported_not_silent():
    # an explosive world, dx/dt = 50 x, overflows within a few bins
    lv = dataclasses.replace(convolution.model().levels[0], f=lambda x, v, th: 50.0 * x + v[0])
    m = dataclasses.replace(convolution.model(), levels=(lv,))
    with pytest.raises(FloatingPointError, match="generation diverged: variable 'y'"):
        cpsych.generate(m, np.ones((1, 64)))
    ds = cpsych.generate(m, np.ones((1, 64)), on_divergence="flag")
    assert ds.attrs["diverged"] == 1


def test_inversion_overflow_is_reported():
    y = np.full((4, 16), 1e200)  # squared errors overflow to inf
    with pytest.raises(FloatingPointError, match="inversion diverged"):
        cpsych.invert(convolution.model(), y)
    assert cpsych.invert(convolution.model(), y, on_divergence="flag").attrs["diverged"] == 1
