"""Several kinds of response in one data set (issue 13): a data format's ``other_responses``.

A cheap closed-form paradigm registered at run time (``two-kinds``) checks the mechanics: its
main response ``y = (a + b) x`` identifies only ``a + b``; a second kind, ``z = b + r / 10``
at reference values ``r``, identifies ``b``. The force-matching checks: its reported
uncertainty about an external force against the independent NumPy re-derivation of
spm_ALAP, and the recovery of attenuation and the prior precision of the intended force
from matched forces plus uncertainty reports (slow).
"""

from __future__ import annotations

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from cpsych.fit import hierarchical as H
from cpsych.fit.data import DataError, read_data
from cpsych.paradigm import DataFormat, Paradigm, Parameter, Readout, register

warnings.filterwarnings("ignore", category=FutureWarning)
XS = (0.5, 1.0, 2.0)
REFS = (1.0, 2.0)


def _simulate(params, design, key):
    x = jnp.asarray(design["xs"], float)
    r = jnp.asarray(design["refs"], float)
    return {"y": (params["a"] + params["b"]) * x, "z": params["b"] + 0.1 * r,
            "zbar": params["b"]}


TWO = register(Paradigm(
    name="two-kinds", title="two kinds of response (test paradigm)",
    parameters=(Parameter("a", 0.0, "1", "first", prior=(0.0, 1.0), bounds=(-5.0, 5.0)),
                Parameter("b", 0.0, "1", "second", prior=(0.0, 1.0), bounds=(-5.0, 5.0))),
    presets={"control": {}},
    readouts=(Readout("y", "1", "main response", ("x",)),
              Readout("z", "1", "second response", ("ref",)),
              Readout("zbar", "1", "second response, no design")),
    simulate=_simulate, design={"xs": XS, "refs": REFS},
    coords={"x": np.asarray(XS), "ref": np.asarray(REFS)},
    data=DataFormat(columns={"participant": "label", "group": "label", "x": "1", "y": "1",
                             "z": "1", "w": "1", "v": "1"},
                    response="y", design=("x",), design_options={"x": "xs"},
                    plausible={"y": (-50.0, 50.0), "z": (-10.0, 10.0), "x": (0.0, 10.0)},
                    other_responses={"z": ("z", "refs"), "w": ("zbar", None),
                                     "v": ("z", "refs")})))


def _write(tmp_path, lines, name="two.csv"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_read_and_code_two_kinds(tmp_path):
    """One response cell per row; each kind coded with its own design values; the predictor
    returns every kind from one simulation, equal to the closed form."""
    p = _write(tmp_path, ["participant,group,x,y,z", "p1,c,0.5,1.0,", "p1,c,2,4.1,",
                          "p1,c,1,,0.6", "p2,c,0.5,0.2,", "p2,c,2,,0.3", "p2,c,1,,0.25"])
    ds = read_data(p, TWO)
    assert ds.attrs["responses"] == ["y", "z"] and "w" not in ds
    assert np.isnan(ds["y"].values[2]) and ds["z"].values[2] == 0.6
    coded = H.code_data(TWO, ds)
    assert coded.kinds == ("y", "z") and coded.kind_sizes == (2, 2)
    np.testing.assert_array_equal(coded.x_values, [0.5, 2.0, 1.0, 2.0])
    np.testing.assert_array_equal(coded.row_kind, [0, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(coded.x_values[coded.row_x], ds["x"].values)
    np.testing.assert_array_equal(coded.y, [1.0, 4.1, 0.6, 0.2, 0.3, 0.25])
    assert coded.response == "response"
    pred = H.make_predictor(TWO, ("a", "b"), "control", coded.design_values())
    out = np.asarray(pred.batch()(jnp.asarray([[0.3, 0.5], [1.0, -2.0]])))
    a, b = np.array([0.3, 1.0]), np.array([0.5, -2.0])
    expect = np.c_[(a + b)[:, None] * [0.5, 2.0], b[:, None] + 0.1 * np.array([1.0, 2.0])]
    np.testing.assert_allclose(out, expect, rtol=1e-12)
    # a kind read without a design dimension is the same at every design value
    pw = H.make_predictor(TWO, ("a", "b"), "control", {"y": (1.0,), "w": (3.0, 4.0)})
    np.testing.assert_allclose(np.asarray(pw({"a": 0.3, "b": 0.5})), [0.8, 0.5, 0.5])
    # a file without the further columns is read as before (one kind)
    one = read_data(_write(tmp_path, ["participant,x,y", "p1,1,2"], "one.csv"), TWO)
    assert "z" not in one and H.code_data(TWO, one).kinds == ("y",)


@pytest.mark.parametrize("row, msg, column", [
    ("p1,c,1,2,0.5", "responses in y and z (each row holds exactly one of y, z", "z"),
    ("p1,c,1,,", "no response (each row holds exactly one of y, z", "y"),
    ("p1,c,1,,12", "12 is outside the plausible range [-10, 10]", "z"),
    ("p1,c,1,,abc", "non-numeric cell 'abc'", "z"),
])
def test_bad_rows_of_two_kinds_name_line_and_column(tmp_path, row, msg, column):
    p = _write(tmp_path, ["participant,group,x,y,z", "p1,c,0.5,1.0,", row])
    with pytest.raises(DataError, match=r"two\.csv, line 3, column '" + column + "'") as err:
        read_data(p, TWO)
    assert msg in str(err.value)


def test_predictor_and_coding_reject_inconsistent_kinds():
    with pytest.raises(ValueError, match="x_values: expected"):
        H.make_predictor(TWO, ("a",), "control", {"z": (1.0,)})
    with pytest.raises(ValueError, match="x_values: expected"):
        H.make_predictor(TWO, ("a",), "control", {"y": (1.0,), "q": (1.0,)})
    # two kinds cannot share a design option (one would be read at the other's values)
    with pytest.raises(ValueError, match="response 'v' runs over design option 'refs', which "
                                         "must be a design option of its own"):
        H.make_predictor(TWO, ("a",), "control", {"y": (1.0,), "z": (1.0,), "v": (2.0, 3.0)})
    with pytest.raises(ValueError, match="^noise_sd: with several kinds"):
        H.synthetic_data(TWO, ("a",), np.zeros((2, 1)), responses={"z": REFS}, noise_sd=0.1)
    with pytest.raises(ValueError, match="^responses: 'q' is not a further kind of response"):
        H.synthetic_data(TWO, ("a",), np.zeros((2, 1)), responses={"q": REFS},
                         noise_sd={"y": 0.1, "q": 0.1})
    with pytest.raises(ValueError, match="^noise_sd: a mapping needs responses="):
        H.synthetic_data(TWO, ("a",), np.zeros((2, 1)), noise_sd={"y": 0.1})
    # coded data: one response per row, and some rows of the main response
    import xarray as xr

    def ds(y, z):
        return xr.Dataset({"participant": ("obs", ["p1", "p1"]), "x": ("obs", [1.0, 1.0]),
                           "y": ("obs", y), "z": ("obs", z)},
                          coords={"line": ("obs", [2, 3])})
    with pytest.raises(ValueError, match="^data: line 3 holds 2 responses"):
        H.code_data(TWO, ds([1.0, 2.0], [np.nan, 0.5]))
    with pytest.raises(ValueError, match="^data: column 'y' has no values"):
        H.code_data(TWO, ds([np.nan, np.nan], [0.4, 0.5]))


def _two_kind_data(seed: int, with_z: bool):
    rng = np.random.default_rng(seed)
    theta = np.c_[rng.uniform(-1.0, 1.0, 12), rng.uniform(-1.0, 1.0, 12)]
    kw = (dict(responses={"z": REFS}, noise_sd={"y": 0.1, "z": 0.02}) if with_z
          else dict(noise_sd=0.1))
    ds = H.synthetic_data(TWO, ("a", "b"), theta, repeats=2, seed=seed + 1, **kw)
    return theta, ds.drop_vars(["theta_true", "parameter"])


@pytest.mark.slow
def test_second_kind_separates_parameters_the_first_confounds():
    """``y`` alone identifies ``a + b`` (posterior correlation of a and b near -1); with
    the ``z`` rows both are recovered (r > 0.95 for each; measured 0.998 or more over seeds
    0-2) and each kind's noise is estimated on its own (true 0.1 and 0.02; measured 0.094-0.096
    and 0.016-0.028 over seeds 0-2, so within 50 %); without them the mean posterior
    correlation is -0.999."""
    theta, ds = _two_kind_data(0, with_z=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = H.fit(TWO, ds, ("a", "b"), emulator=None, chains=2, warmup=300, draws=300,
                    progress=False, verbose=False)
    post = res.idata.posterior
    est = post["theta"].mean(("chain", "draw")).values
    for k in range(2):
        assert np.corrcoef(theta[:, k], est[:, k])[0, 1] > 0.95
    noise = post["sigma_obs"].median(("chain", "draw"))
    assert list(noise["response_kind"].values) == ["y", "z"]
    np.testing.assert_allclose(noise.values, [0.1, 0.02], rtol=0.5)
    assert list(res.idata.constant_data["kind_of_obs"].values[:1]) == ["y"]
    assert res.idata.log_likelihood["response"].sizes["obs"] == ds.sizes["obs"]

    theta1, ds1 = _two_kind_data(0, with_z=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res1 = H.fit(TWO, ds1, ("a", "b"), emulator=None, chains=2, warmup=300, draws=300,
                     progress=False, verbose=False)
    th = res1.idata.posterior["theta"].stack(s=("chain", "draw")).values  # (P, K, S)
    corr = np.mean([np.corrcoef(th[i])[0, 1] for i in range(th.shape[0])])
    assert corr < -0.8, corr


def test_save_draws_one_predictive_figure_per_kind(tmp_path):
    theta, ds = _two_kind_data(1, with_z=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = H.fit(TWO, ds, ("a", "b"), emulator=None, method="map", starts=1, draws=50,
                    progress=False, verbose=False)
    paths = res.save(tmp_path / "fit")
    assert {"predictive", "predictive_z"} <= set(paths)
    assert (tmp_path / "fit" / "predictive_z.png").stat().st_size > 1000
    back = H.load_result(tmp_path / "fit")
    assert back.attrs["responses"] == "y,z"


# ----------------------------------------------------------------------------- force matching
@pytest.mark.parametrize("kw", [{}, {"log_pi_self": 4.0}, {"log_pi_self": 8.0},
                                {"log_pi_y": 6.0}, {"h": 4.0}])
def test_external_uncertainty_equals_spm_alap_oracle(kw):
    """The reported uncertainty is the posterior SD of the external force at the peak of a
    1 N bump applied at rest, as in the independent re-derivation of spm_ALAP (noise off)."""
    import spm_alap_oracle as oracle

    from cpsych.models import force_matching as fm

    ref = oracle.simulate(np.zeros(fm.N_BINS), fm.bump(), **kw)
    t = int(np.argmax(fm.bump()))
    p = fm.Params()._replace(**kw)
    got = float(fm.external_uncertainty(p, 1.0))
    np.testing.assert_allclose(got, math.sqrt(ref["x_var"][t, 1]), rtol=1e-9)
    # the paradigm's read-out at its default reference force (1 N) is the same number
    run = fm.PARADIGM.run(**{k2: float(getattr(p, f)) for k2, f in fm.FIELDS.items()})
    np.testing.assert_allclose(run["uncertainty"], [got], rtol=1e-12)


def test_force_matching_reads_uncertainty_rows(tmp_path):
    from cpsych.models import force_matching as fm

    p = _write(tmp_path, ["participant,group,target,matched,uncertainty",
                          "p1,control,1,1.4,", "p1,control,2,2.5,", "p1,control,1,,0.021"],
               "fm.csv")
    coded = H.code_data(fm.PARADIGM, read_data(p, fm.PARADIGM))
    assert coded.kinds == ("matched", "uncertainty")
    pred = H.make_predictor(fm.PARADIGM, ("h",), "control", coded.design_values())
    got = np.asarray(pred({"h": 6.0}))
    direct = fm.PARADIGM.run(design={"references": (1.0,)})["uncertainty"]
    np.testing.assert_allclose(got[-1], direct[0], rtol=1e-9)
    # the matched forces: SPM's curve at 1 and 2 N targets (test_force_matching), inverted
    assert 1.2 < got[0] < 1.6 and 2.3 < got[1] < 2.9
    # the 1-D fit of matched forces alone refuses such a file, pointing to the generic fit
    from cpsych.models.force_matching_fit import load_force_matching

    with pytest.raises(DataError, match=r"fm\.csv, line 4, column 'uncertainty': this file "
                                        r"holds uncertainty reports"):
        load_force_matching(p)
    # ... but reads a file whose uncertainty column is empty
    empty = _write(tmp_path, ["participant,target,matched,uncertainty", "p1,1,1.4,",
                              "p1,2,2.5,"], "fm_empty.csv")
    assert "uncertainty" not in load_force_matching(empty)
    # a misspelt optional column is named when the main response's cell is empty
    typo = _write(tmp_path, ["participant,target,matched,uncertanity", "p1,1,1.4,",
                             "p1,1,,0.02"], "fm_typo.csv")
    with pytest.raises(DataError, match=r"fm_typo\.csv, line 3, column 'matched': empty cell; "
                                        r"if this row's response is in column 'uncertanity', "
                                        r"rename that column 'uncertainty' \(misspelt\?\)"):
        read_data(typo, fm.PARADIGM)


@pytest.mark.slow
def test_force_matching_recovers_attenuation_and_prior_with_uncertainty_reports():
    """Matched forces alone identify attenuation only (prior's r was -0.18, docs/fitting);
    with two reports of the uncertainty about a 1 N external force per participant the
    prior precision of the intended force is recovered too. Measured (16 participants, 4
    targets x 2 repeats at 0.1 N, reports at 0.001 N, 2 chains x 300 draws, seed 0):
    r = 0.981 and 0.966 for h (seeds 0, 1), 0.961 and 0.959 for prior, mean posterior
    correlation 0.30 and 0.28; at report noise 0.004 N prior's r fell to 0.73."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec, res = H.recovery("force-matching", ("h", "prior"), 16,
                              noise_sd={"matched": 0.1, "uncertainty": 0.001}, repeats=2,
                              responses={"uncertainty": (1.0,)}, chains=2, warmup=300,
                              draws=300, seed=0, progress=False, verbose=False)
    r = rec["r"].values
    assert r[0] > 0.9 and r[1] > 0.9, r
    assert abs(float(rec["posterior_corr"].values[0, 1])) < 0.6
    assert res.attrs["emulator_max_abs_uncertainty"] < 1e-4


def test_cli_recovery_with_a_second_kind(tmp_path, capsys):
    from cpsych.cli import main

    out = tmp_path / "rec"
    common = ["recovery", "two-kinds", "--free", "a,b", "--participants", "6", "--method",
              "map", "--knots", "5", "--no-figures", "--no-progress", "--no-cache"]
    assert main([*common, "--with", "z", "--noise", "y=0.1,z=0.02", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "noise SD y=0.1,z=0.02" in text and "by response: y max" in text
    for argv, msg in ((["--with", "q"], "--with: 'q' is not a further kind of response of "
                                        "two-kinds; choose from z, w"),
                      (["--with", "z"], "--noise: with --with give one SD per kind of "
                                        "response, e.g. y=SD,z=SD; got '0.1'"),
                      (["--with", "z", "--noise", "y=0.1,z=-1"],
                       "--noise: expected a finite SD > 0 for z, got '-1'"),
                      (["--noise", "abc"], "--noise: expected a finite SD > 0, got 'abc'")):
        assert main([*common, *argv, "--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err
