"""Hypothesis fuzzing of what a user hands the workbench: `pipeline.yaml`, `-p` values and data files.

Whatever comes in, the answer is never an internal error or a traceback: the input is accepted, or refused
with an `MlopsWbError` whose exit status is 2 (bad input) and whose message names what was wrong, or (for data
that reads fine but breaks a rule) the data gate's report. The library is called in-process (fast); a handful
of real `mlops-wb run` subprocesses check the CLI path end to end.

Example counts come from a hypothesis profile: `ci` (default, small and derandomized, for `make test`) or
`fuzz` (`HYPOTHESIS_PROFILE=fuzz`, `make fuzz`: many more examples, random).
"""
import copy, json, os, shutil, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from conftest import REPO, cli, copy_project

from mlops_wb.config import PIPELINE_FILE, apply_overrides, context_params, load_pipeline
from mlops_wb.data import DataError, frame_digest, frame_schema, preflight, read_source
from mlops_wb.errors import Exit, MlopsWbError
from mlops_wb.notebook import notebook_params
from mlops_wb.validate import Expectations, ValidationReport

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)
settings.register_profile("ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), derandomize=True, **_COMMON)
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 1000)), **_COMMON)
FUZZ = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))   # a decorator; other test files keep theirs

BASE = yaml.safe_load((REPO / PIPELINE_FILE).read_text())


def refused_cleanly(e: BaseException):
    "The only way an input may be refused: bad input (exit 2), with a message on every line."
    assert isinstance(e, MlopsWbError), f"internal error: {type(e).__name__}: {e}"
    assert e.exit_code == Exit.BAD_INPUT, (e.exit_code, str(e))
    lines = str(e).splitlines()
    assert lines and all(": " in l for l in lines), str(e)   # each line says where: `WHERE: what`
    assert "Traceback" not in str(e)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("fuzz") / "p", small=False)


# ---- pipeline.yaml: the default file, mutated --------------------------------------------------------------

def _paths(x, here=()):
    "Every path into the nested mappings and lists of `x`."
    yield here
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items: yield from _paths(v, here + (k,))

PATHS = [p for p in _paths(BASE) if p]
odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(), st.text(max_size=12),
    st.sampled_from(["", "*", "demo:", "demo:nope", "data/*.csv", "nbs", "../", "-1", "1e999", ".inf", "0x10",
                     "target", "mean_radius", "2 weeks", "30d", "auto"]),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-3, 3), st.text(max_size=3)), max_size=2))

@st.composite
def mutations(draw):
    "One change to the default pipeline.yaml: a value replaced or scaled, a key removed, or an unknown key added."
    path = draw(st.sampled_from(PATHS))
    kind = draw(st.sampled_from(["replace", "replace", "scale", "delete", "unknown"]))
    return kind, path, draw(odd_values), draw(st.sampled_from([-1, 0, 0.5, 10, 10**9]))

def _apply(spec, m):
    kind, path, value, factor = m
    parent = spec
    for k in path[:-1]: parent = parent[k]
    key = path[-1]
    if kind == "delete": del parent[key]
    elif kind == "unknown" and isinstance(parent[key], dict): parent[key]["colour"] = value
    elif kind == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = parent[key] * factor
    else: parent[key] = value


@FUZZ
@given(ms=st.lists(mutations(), min_size=1, max_size=3))
def test_a_mutated_pipeline_yaml_loads_or_is_refused_with_the_key(project, ms):
    spec = copy.deepcopy(BASE)
    for m in ms:
        try: _apply(spec, m)
        except (KeyError, IndexError, TypeError): pass   # an earlier mutation removed the path
    (project / PIPELINE_FILE).write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    try:
        loaded = load_pipeline(project)
        json.dumps(context_params(loaded))   # what every step receives is JSON-ready
        preflight(loaded, project)
    except Exception as e:
        refused_cleanly(e)


@FUZZ
@given(text=st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_any_text_as_pipeline_yaml_is_refused_or_loads(project, text):
    (project / PIPELINE_FILE).write_text(text, encoding="utf-8", errors="surrogatepass")
    try: load_pipeline(project)
    except Exception as e: refused_cleanly(e)


# ---- -p STEP.KEY=VALUE ---------------------------------------------------------------------------------------

STEPS = [s["name"] for s in BASE["steps"]]
KEYS = sorted({k for s in BASE["steps"] for k in notebook_params(REPO / s["notebook"])})
yaml_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["abc", "-1", "-5", "0", "1.5", "0.99", "1e309", ".inf", "-.inf", ".nan", "null", "true", "'7'",
                     "[1, 2]", "[]", "{}", "{trials: 0}", "{trials: 100000000}", "{trials: 3, max_trials: 5}",
                     "{cv: 1}", "{trails: 2}", "{a: [", "[mean_radius]", "[nope]", "nope", "target",
                     "{columns: {x: {min: 2, max: 1}}}", "{slices: [nope]}", "4294967296", "42"]),
    st.integers(-10**20, 10**20).map(str), st.floats().map(repr))

@FUZZ
@given(step=st.one_of(st.sampled_from(STEPS), st.text(max_size=6)),
       key=st.one_of(st.sampled_from(KEYS), st.text(max_size=6)),
       value=yaml_values, sep=st.sampled_from(["=", "=", ":", ""]))
def test_a_p_override_is_applied_or_refused_with_the_key(project, step, key, value, sep):
    shutil.copy2(REPO / PIPELINE_FILE, project / PIPELINE_FILE)
    spec = load_pipeline(project)
    o = f"{step}.{key}{sep}{value}"
    try:
        new = apply_overrides(spec, project, [o])
        json.dumps(context_params(new), default=str)
        preflight(new, project)
    except Exception as e:
        refused_cleanly(e)
        # names the override, the key it broke, or (a source set by -p) the source and file
        assert isinstance(e, DataError) or str(e).startswith(("-p ", PIPELINE_FILE)), str(e)


# ---- data files ------------------------------------------------------------------------------------------------

names = st.one_of(st.sampled_from(["target", "x", "x", "mean_radius", "", " ", "1", "a,b", 'q"', "é"]),
                  st.text(max_size=6))
def column(n):
    return st.one_of(
        st.lists(st.integers(-2**40, 2**40), min_size=n, max_size=n),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n),
        st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.one_of(st.integers(0, 9), st.text(max_size=2)), min_size=n, max_size=n),
        st.lists(st.lists(st.integers(0, 3), max_size=2), min_size=n, max_size=n),   # nested (Parquet only)
        st.lists(st.binary(max_size=3), min_size=n, max_size=n),
        st.lists(st.datetimes(), min_size=n, max_size=n))

@st.composite
def frames(draw):
    n = draw(st.integers(0, 12))
    cols = draw(st.lists(names, min_size=0, max_size=5))
    return cols, [draw(column(n)) for _ in cols], n

@FUZZ
@given(f=frames(), fmt=st.sampled_from(["csv", "parquet"]), raw=st.one_of(st.none(), st.binary(max_size=60)))
def test_a_data_file_is_read_and_validated_or_refused_naming_it(project, tmp_path_factory, f, fmt, raw):
    cols, values, n = f
    d = tmp_path_factory.mktemp("data")
    path = d / f"data.{fmt}"
    if raw is not None: path.write_bytes(raw)   # arbitrary bytes where a file is expected
    else:
        df = pd.DataFrame({i: v for i, v in enumerate(values)}, index=range(n))
        df.columns = cols
        try: df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path, index=False)
        except Exception: assume(False)   # pandas/pyarrow cannot write it: not a file a user could have
    target = cols[0] if cols and raw is None else "target"
    try:
        rows = read_source(str(path), d)
        frame_schema(rows), frame_digest(rows)
        report = Expectations(target=target).validate(rows)   # the data gate: a report, passed or not
        assert isinstance(report, ValidationReport)
        json.dumps(report.to_dict()), report.summary(), report.to_html()
        for x in report.failures:   # each failure names a column of the file, the (missing) target, or the table
            assert x["column"] is None or x["column"] in rows.columns or x["column"] == target, x
    except Exception as e:
        refused_cleanly(e)
        assert isinstance(e, DataError) and str(path) in str(e), str(e)   # names the file


@FUZZ
@given(x=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=30))
def test_non_finite_numbers_are_a_validation_failure_naming_column_and_count(x):
    df = pd.DataFrame({"x": x, "y": [0, 1] * (len(x) // 2) + [0] * (len(x) % 2)})
    report = Expectations(target="y").validate(df)
    n_inf = int(np.isinf(np.array(x)).sum())
    finite = [f for f in report.failures if f["rule"] == "finite"]
    if n_inf:
        assert [f["column"] for f in finite] == ["x"] and finite[0]["observed"].startswith(f"{n_inf} non-finite")
        assert not report.passed
    else: assert not finite


# ---- the real CLI ---------------------------------------------------------------------------------------------

def _nested(p):
    (p / "data").mkdir()
    pd.DataFrame({"x": [1.0, 2.0], "tags": [[1], [2, 3]], "target": [0, 1]}).to_parquet(p / "data/n.parquet")
    return {"dataset": {"source": "data/n.parquet", "target": "target"}}

CLI_CASES = {   # name: (pipeline.yaml changes (or a function making them), arguments, the message)
    "-p seed": ({}, ["run", "-p", "train.seed=abc"], "-p train.seed=abc: seed: Input should be a valid integer (got 'abc')"),
    "-p share": ({}, ["run", "-p", "split.holdout_share=1.5"], "holdout_share: Input should be less than 1 (got 1.5)"),
    "trials cap": ({"tuning": {"trials": 10**9}}, ["run", "--explain"], "tuning: trials 1000000000 is above max_trials 1000"),
    "slice missing": ({"evaluation": {"slices": ["nope"]}}, ["run"], "evaluation.slices[0]: column 'nope' is not in the data"),
    "target missing": ({"dataset": {"source": "demo:wine", "target": "label"}}, ["run"], "dataset.target: column 'label'"),
    "nested parquet": (_nested, ["run"], "column 'tags' has type list<element: int64>, nested"),
}

@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_run_refuses_bad_input_before_the_first_step(tmp_path, case):
    changes, args, says = CLI_CASES[case]
    p = copy_project(tmp_path / "p")
    if callable(changes): changes = changes(p)
    spec = yaml.safe_load((p / PIPELINE_FILE).read_text()) | changes
    (p / PIPELINE_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    res = cli(p, *args, timeout=300)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert says in res.stderr and res.stderr.startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr + res.stdout and "internal error" not in res.stderr
    assert not (p / "store").exists() and not list((p / "reports").glob("*/"))   # nothing ran, nothing recorded


def test_a_serve_port_out_of_range_in_settings_is_refused(tmp_path):
    "The port from settings.ini or MLOPS_WB_SERVE_PORT is held to the same range as `--port` (it used to serve, and hang)."
    p = copy_project(tmp_path / "p")
    env = {**os.environ, "MLOPS_WB_SERVE_PORT": "99999", "NO_COLOR": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_")}
    res = cli(p, "serve", timeout=120, env=env)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "environment variable MLOPS_WB_SERVE_PORT: serve_port must be a TCP port from 1 to 65535, got '99999'" in res.stderr
    assert "serving" not in res.stdout
