"""Strict reading of behavioural data in a paradigm's format (issue 13, item 6).

- the shipped force-matching example and the four pursuit files read with the right shapes,
  and their values agree with an independent parse (``numpy.genfromtxt``);
- a BOM and CRLF line endings read the same as plain UTF-8; ``group``/``condition`` may be
  absent (one level, ``"all"``, said in ``attrs``); extra numeric columns are kept and extra
  text columns are listed as ignored;
- every malformed case gives a :class:`DataError` whose message names the file, the line and
  the column (a typo of 18158 N, non-numeric / empty / NaN / inf cells, identical rows,
  a participant in two groups, binary and non-UTF-8 bytes, empty and header-only files,
  missing columns, wrong number of cells);
- reading imports neither numpyro nor compiles anything (checked in a fresh interpreter);
- property (hypothesis): a random valid table round-trips exactly, and any one numeric cell
  pushed outside the plausible range is reported at its line and column.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cpsych
from cpsych.fit.data import DataError, read_data
from cpsych.models import force_matching_fit as FF

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments/data/force_matching_example.csv"
SPEM = ROOT / "experiments/data/spem_fit"
FM = cpsych.paradigm.get("force-matching")
PURSUIT = cpsych.paradigm.get("pursuit")

GOOD = """participant,group,condition,target,matched
p1,control,finger,0.5,0.9
p1,control,finger,1.0,1.6
p2,patient,finger,0.5,0.6
p2,patient,finger,1.0,1.1
p2,patient,finger,1.5,1.7
p2,patient,finger,2.0,2.3
"""


def _write(tmp_path, content, name="data.csv") -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_bytes(content.encode("utf-8"))
    return p


# ----------------------------------------------------------------------------- good files
def test_example_reads_like_an_independent_parse():
    ds = read_data(EXAMPLE, FM)
    assert dict(ds.sizes) == {"obs": 160}
    assert list(ds.data_vars) == ["participant", "group", "condition", "target", "matched"]
    ref = np.genfromtxt(EXAMPLE, delimiter=",", names=True, dtype=None, encoding="utf-8")
    for c in ("participant", "group", "condition"):
        assert ds[c].dtype.kind == "U"
        assert list(ds[c].values) == [str(v) for v in ref[c]]
    for c in ("target", "matched"):
        assert ds[c].dtype == np.float64 and ds[c].attrs["units"] == "N"
        np.testing.assert_array_equal(ds[c].values, ref[c])
    np.testing.assert_array_equal(ds["line"].values, np.arange(2, 162))
    assert ds.attrs["source"] == str(EXAMPLE) and ds.attrs["paradigm"] == "force-matching"
    assert ds.attrs["response"] == "matched" and ds.attrs["design"] == ["target"]
    assert sorted(set(ds["group"].values)) == ["control", "schizophrenia"]
    assert "filled_columns" not in ds.attrs and "ignored_columns" not in ds.attrs


@pytest.mark.parametrize("name", ["fast_smooth", "fast_noisy", "slow_smooth", "slow_noisy"])
def test_pursuit_files_read(name):
    path = SPEM / f"{name}_10ms.csv"
    ds = read_data(path, PURSUIT)
    ref = np.genfromtxt(path, delimiter=",", names=True)
    assert ds.sizes["obs"] == ref.shape[0] and ds.sizes["obs"] > 400
    for c in ref.dtype.names:  # format columns and the extra numeric ones, NaN included
        np.testing.assert_array_equal(ds[c].values, ref[c])
    assert ds["time_ms"].attrs["units"] == "ms"
    assert ds.attrs["n_missing_eye_velocity"] == int(np.isnan(ref["eye_velocity"]).sum()) > 0


def test_bom_and_crlf_read_as_plain(tmp_path):
    plain = read_data(_write(tmp_path, GOOD, "plain.csv"), FM)
    crlf = GOOD.replace("\n", "\r\n").encode("utf-8")
    for content in (b"\xef\xbb\xbf" + GOOD.encode(), crlf, b"\xef\xbb\xbf" + crlf):
        ds = read_data(_write(tmp_path, content), FM)
        assert list(ds.data_vars) == list(plain.data_vars)
        for c in plain.data_vars:
            np.testing.assert_array_equal(ds[c].values, plain[c].values)
        np.testing.assert_array_equal(ds["line"].values, plain["line"].values)


def test_single_group_and_condition(tmp_path):
    text = "\n".join(",".join(c for i, c in enumerate(r.split(",")) if i not in (1, 2))
                     for r in GOOD.splitlines()) + "\n"
    assert text.startswith("participant,target,matched\n")
    ds = read_data(_write(tmp_path, text), FM)
    assert list(ds["group"].values) == ["all"] * 6
    assert list(ds["condition"].values) == ["all"] * 6
    assert ds.attrs["filled_columns"] == ["group", "condition"]
    assert "column 'group' absent" in ds.attrs["notes"]
    # the force-matching loader inherits it: one group, one condition
    fm = FF.load_force_matching(_write(tmp_path, text, "fm.csv"))
    assert fm.attrs["groups"] == ["all"] and fm.attrs["conditions"] == ["all"]
    assert fm.sizes["trial"] == 6


def test_extra_columns(tmp_path):
    lines = GOOD.splitlines()
    text = "\n".join([lines[0] + ",rt,note"] + [
        f"{r},{0.1 * i if i != 2 else ''},{'ok' if i % 2 else 'late'}"
        for i, r in enumerate(lines[1:])]) + "\n"
    ds = read_data(_write(tmp_path, text), FM)
    np.testing.assert_array_equal(ds["rt"].values, [0.0, 0.1, np.nan, 0.30000000000000004,
                                                    0.4, 0.5])
    assert ds.attrs["n_missing_rt"] == 1
    assert "note" not in ds and ds.attrs["ignored_columns"] == ["note"]
    fm = FF.load_force_matching(_write(tmp_path, text, "fm.csv"))
    assert "rt" in fm and fm.attrs["ignored_columns"] == ["note"]


def test_repeated_trials_with_different_responses_are_kept(tmp_path):
    text = GOOD + "p2,patient,finger,2.0,2.4\n"  # same design as line 7, another response
    ds = read_data(_write(tmp_path, text), FM)
    assert ds.sizes["obs"] == 7 and ds["line"].values[-1] == 8


def test_no_data_format():
    with pytest.raises(ValueError, match="paradigm: mmn has no data format"):
        read_data(EXAMPLE, cpsych.paradigm.get("mmn"))


def test_reading_compiles_nothing(tmp_path):
    """In a fresh interpreter: reading a good and a bad file imports no numpyro and compiles
    nothing (the listener does see a compilation: the jit call at the end)."""
    bad = _write(tmp_path, GOOD.replace("1.0,1.6", "1.0,18158"))
    code = f"""
import sys, jax, jax.monitoring
events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **k: events.append(name) if "compile" in name else None)
import cpsych
from cpsych.fit.data import read_data, DataError
ds = read_data({str(EXAMPLE)!r}, cpsych.paradigm.get("force-matching"))
try:
    read_data({str(bad)!r}, cpsych.paradigm.get("force-matching"))
except DataError:
    pass
print("numpyro" in sys.modules, len(events), ds.sizes["obs"])
jax.jit(lambda x: x + 1)(1.0)
print(len(events) > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["False", "0", "160", "True"], out


# ----------------------------------------------------------------------------- bad files
def _replace_line(text: str, line: int, new: str) -> str:
    rows = text.splitlines()
    rows[line - 1] = new
    return "\n".join(rows) + "\n"


HEADER = "participant,group,condition,target,matched"
BAD = [
    # (id, content, line, column, words)
    ("typo-18158", _replace_line(GOOD, 7, "p2,patient,finger,2.0,18158"), 7, "matched",
     "18158 N is outside the plausible range [0, 20] N of force-matching; check the "
     "units/typo"),
    ("negative", _replace_line(GOOD, 3, "p1,control,finger,-1.0,1.6"), 3, "target",
     "negative force -1 N is outside the plausible range"),
    ("too-many", _replace_line(GOOD, 4, "p2,patient,finger,0.5,0,6"), 4, None,
     "found 6: cell 6 ('6') is past the last column 'matched'"),
    ("text", _replace_line(GOOD, 4, "p2,patient,finger,0.5N,0.6"), 4, "target",
     "non-numeric cell '0.5N'"),
    ("empty-cell", _replace_line(GOOD, 5, "p2,patient,finger,1.0,"), 5, "matched",
     "empty cell"),
    ("nan", _replace_line(GOOD, 5, "p2,patient,finger,1.0,nan"), 5, "matched",
     "non-finite value 'nan'"),
    ("inf", _replace_line(GOOD, 2, "p1,control,finger,-inf,0.9"), 2, "target",
     "non-finite value '-inf'"),
    ("empty-label", _replace_line(GOOD, 2, ",control,finger,0.5,0.9"), 2, "participant",
     "empty label"),
    ("duplicate", GOOD + "p1,control,finger,1.00,1.6\n", 8, "matched",
     "duplicated row: identical to line 3"),
    ("two-groups", _replace_line(GOOD, 5, "p2,control,finger,1.0,1.1"), 5, "group",
     "participant 'p2' is in group 'patient' on line 4 and in group 'control' here"),
    ("nul-bytes", GOOD.encode().replace(b"p2,patient,finger,1.0", b"p2,pat\x00ent,finger,1.0"),
     5, "group", "binary file, not a text CSV (NUL byte at byte offset"),
    ("xlsx", b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)), 1, None,
     "binary file, not a text CSV (NUL byte at byte offset 5)"),
    ("latin-1", GOOD.replace("p2,patient,finger,1.5", "p2,patient,Fingersp\u00e4tze,1.5")
     .encode("latin-1"), 6, "condition", "byte 0xe4 at byte offset"),
    ("empty-file", b"", 1, None, "the file is empty"),
    ("header-only", HEADER + "\n", 1, None, "no data rows after the header"),
    ("missing-columns", "group,condition,matched\ncontrol,finger,0.9\n", 1, "participant",
     "required column(s) ['participant', 'target'] missing"),
    ("misspelt", GOOD.replace("matched", "matchd"), 1, "matched", "found 'matchd'"),
    ("too-few", _replace_line(GOOD, 6, "p2,patient,finger,1.5"), 6, None,
     "expected 5 cells (as in the header), found 4: no value for column 'matched'"),
    ("empty-line", GOOD.replace("p2,patient,finger,0.5,0.6\n", "p2,patient,finger,0.5,0.6\n\n"),
     5, None, "empty line"),
    ("unnamed-index", "," + GOOD.replace("\np", "\n0,p"), 1, None, "header cell 1 is empty"),
]


@pytest.mark.parametrize("content, line, column, words", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_file(tmp_path, content, line, column, words):
    path = _write(tmp_path, content, "bad_file.csv")
    with pytest.raises(DataError) as err:
        read_data(path, FM)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}, line {line}"), msg
    assert words in msg, msg
    assert err.value.line == line and err.value.column == column
    if column is not None:
        assert f"column '{column}'" in msg, msg


def test_bad_file_messages_name_the_column_in_words(tmp_path):
    """Cell-count errors have no single cell, but the message still says which column."""
    path = _write(tmp_path, _replace_line(GOOD, 6, "p2,patient,finger,1.5"))
    with pytest.raises(DataError, match=r"line 6: .*column 'matched'"):
        read_data(path, FM)


def test_byte_offset_is_exact(tmp_path):
    """The offset is that of the bad byte in the file, a byte-order mark included."""
    raw = GOOD.replace("p2,patient,finger,1.5", "p2,patient,fing\u00e9r,1.5").encode("latin-1")
    at = raw.index(b"\xe9")
    with pytest.raises(DataError, match=rf"line 6, column 'condition': .* byte offset {at} "):
        read_data(_write(tmp_path, raw), FM)
    with pytest.raises(DataError, match=rf"line 6, column 'condition': .* byte offset {at + 3} "):
        read_data(_write(tmp_path, b"\xef\xbb\xbf" + raw), FM)


# ----------------------------------------------------------------------------- properties
_label = st.text(alphabet="abcxyz_0123456789", min_size=1, max_size=6)
_force = st.floats(0.0, 20.0, allow_nan=False).map(lambda v: float(f"{v:.6g}"))


@st.composite
def _tables(draw):
    n = draw(st.integers(1, 12))
    group_of = {}
    rows = []
    for _ in range(n):
        p = draw(_label)
        g = group_of.setdefault(p, draw(_label))
        rows.append((p, g, draw(_label), draw(_force), draw(_force)))
    rows = list(dict.fromkeys(rows))  # identical rows are an error, tested above
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rows=_tables(), crlf=st.booleans(), pick=st.integers(0, 10**6),
       bad=st.sampled_from([-0.5, 20.5, 18158.0]))
def test_roundtrip_and_range_property(tmp_path, rows, crlf, pick, bad):
    path = tmp_path / "prop.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n" if crlf else "\n")
        w.writerow(HEADER.split(","))
        w.writerows([[p, g, c, repr(t), repr(m)] for p, g, c, t, m in rows])
    ds = read_data(path, FM)
    assert ds.sizes["obs"] == len(rows)
    for j, col in enumerate(HEADER.split(",")):
        assert list(ds[col].values) == [r[j] for r in rows]
    np.testing.assert_array_equal(ds["line"].values, np.arange(2, len(rows) + 2))
    # one numeric cell pushed out of range: reported at its line and column
    k, col = pick % len(rows), ("target", "matched")[pick % 2]
    broken = [list(r) for r in rows]
    broken[k][3 if col == "target" else 4] = bad
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER.split(","))
        w.writerows(broken)
    with pytest.raises(DataError) as err:
        read_data(path, FM)
    assert (err.value.line, err.value.column) == (k + 2, col), str(err.value)
    assert "outside the plausible range [0, 20] N" in str(err.value)


# ----------------------------------------------------------------------------- formats
def test_every_data_format_has_plausible_ranges_that_hold_the_shipped_data():
    shipped = {"force-matching": [EXAMPLE], "pursuit": sorted(SPEM.glob("*_10ms.csv")),
               "pursuit-spem": [SPEM / "spem_binned.csv"]}
    from importlib import metadata

    # the paradigms the package ships (entry points), not those other tests register
    for name in sorted(ep.name for ep in metadata.entry_points(group="cpsych.paradigms")):
        par = cpsych.paradigm.get(name)
        if par.data is None:
            continue
        fmt = par.data
        assert fmt.response in fmt.columns and set(fmt.design) <= set(fmt.columns), name
        numeric = {c for c, kind in fmt.columns.items() if kind != "label"}
        assert set(fmt.plausible) == numeric, (name, numeric - set(fmt.plausible))
        for c, (lo, hi) in fmt.plausible.items():
            assert np.isfinite([lo, hi]).all() and lo < hi, (name, c)
        for path in shipped[name]:
            read_data(path, par)  # raises if a shipped value were outside a range
