"""Issue 3: bad inputs stop the pipeline with a clear error or a validation report and no
snapshot; a killed snapshot write leaves nothing half-written; a second dataset with
categorical features, missing values and a string target runs through pipeline.yaml alone."""
import json, os, re, signal, subprocess, time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from conftest import CLI, clean_env, cli, client_for, copy_project, gate_copy

from mlops_wb.config import load_settings
from mlops_wb.data import SnapshotStore, frame_digest, read_source, split_frame
from mlops_wb.step import file_digest


def _good_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(10, 2, n).round(3), "size": rng.integers(1, 6, n),
                         "color": rng.choice(["red", "green", "blue"], n), "label": rng.choice(["yes", "no"], n)})


def _snapshots(root):
    store = SnapshotStore(load_settings(root, env={}))
    return store.client.search_runs([store.exp_id], "", max_results=100)


@pytest.fixture(scope="module")
def gate_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate") / "p"
    root.mkdir(parents=True)
    (root / "data").mkdir()
    _good_frame().to_csv(root / "data" / "data.csv", index=False)
    gate_copy(root, root / "data" / "data.csv")
    res = cli(root, "run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len([r for r in _snapshots(root) if r.info.status == "FINISHED"]) == 1   # the accepted reference
    return root


def _write(kind):
    """The bytes of each bad input, made from the good frame (so only the intended problem shows)."""
    g = _good_frame()
    if kind == "empty file": return b""
    if kind == "header only": return b"x,size,color,label\n"
    if kind == "missing target column": return g.drop(columns="label").to_csv(index=False).encode()
    if kind == "missing feature column": return g.drop(columns="color").to_csv(index=False).encode()
    if kind == "wrong dtype": return g.assign(x=np.where(g.index % 2, "high", "low")).to_csv(index=False).encode()
    if kind == "all-null column": return g.assign(size=np.nan).to_csv(index=False).encode()
    if kind == "duplicate column names": return g.to_csv(index=False).encode().replace(b"x,size,color", b"x,size,x", 1)
    if kind == "non-UTF-8 bytes": return g.to_csv(index=False).encode().replace(b"red", b"r\xe9d", 1)
    if kind == "mixed types": return g.assign(x=[("abc" if i == 7 else v) for i, v in enumerate(g.x)]).to_csv(index=False).encode()
    if kind == "target with one class": return g.assign(label="yes").to_csv(index=False).encode()
    raise KeyError(kind)


BAD = {  # kind -> (failing step, words the error must contain, (column, rule) in the validation report or None)
    # "preflight": found from the header before the first step (exit 2, nothing recorded)
    "empty file": ("preflight", ["data/data.csv", "the file is empty"], None),
    "header only": ("ingest", ["header (4 columns) but no data rows"], None),
    "duplicate column names": ("preflight", ["duplicate column names ['x']"], None),
    "non-UTF-8 bytes": ("ingest", ["not UTF-8 text", "re-save the file as UTF-8"], None),
    "mixed types": ("ingest", ["column 'x' mixes numbers and text", "'abc' (row 7)"], None),
    "missing target column": ("preflight", ["pipeline.yaml: dataset.target: column 'label' is not in the data"], None),
    "missing feature column": ("validate", ["color: required column: observed column missing"], ("color", "required column")),
    "wrong dtype": ("validate", ["x: kind: observed kind string", "allowed kind number"], ("x", "kind")),
    "all-null column": ("validate", ["size: not entirely null"], ("size", "not entirely null")),
    "target with one class": ("validate", ["label: two classes", "at least 2 classes"], ("label", "two classes")),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_stops_with_clear_error_and_no_snapshot(gate_project, kind):
    root = gate_project
    step, words, report_key = BAD[kind]
    before = {r.info.run_id for r in _snapshots(root)}
    client, exp = client_for(root)
    runs_before = len(client.search_runs([exp], "", max_results=1000))
    (root / "data" / "data.csv").write_bytes(_write(kind))
    res = cli(root, "run")
    assert res.returncode == (2 if step == "preflight" else 1), res.stdout + res.stderr
    line = [l for l in res.stderr.splitlines() if l.startswith("error:")][0]
    if step != "preflight": assert f"step '{step}' failed" in line, line
    for w in words: assert w in line, (w, line)
    assert {r.info.run_id for r in _snapshots(root)} == before     # no snapshot, not even a partial one
    if step == "preflight":   # refused before the first step: no pipeline run, no step run
        assert len(client.search_runs([exp], "", max_results=1000)) == runs_before
        return
    run = client.search_runs([exp], f"tags.`mlops_wb.step` = '{step}'", max_results=1, order_by=["attributes.start_time DESC"])[0]
    assert run.info.status == "FAILED"
    if report_key:
        rep = json.loads(Path(client.download_artifacts(run.info.run_id, "outputs/validation_report.json")).read_text())
        assert not rep["passed"]
        f = [x for x in rep["failures"] if (x["column"], x["rule"]) == report_key][0]
        assert f["observed"] and f["allowed"]
        html = client.download_artifacts(run.info.run_id, "outputs/validation_report.html")
        assert report_key[0] in Path(html).read_text()


def test_offending_rows_are_named(gate_project):
    root = gate_project
    g = _good_frame(); g.loc[5, "x"] = 1000.0; g.loc[9, "color"] = "purple"
    g.to_csv(root / "data" / "data.csv", index=False)
    res = cli(root, "run")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "step 'validate' failed" in res.stderr, res.stderr
    client, exp = client_for(root)
    run = client.search_runs([exp], "tags.`mlops_wb.step` = 'validate'", max_results=1, order_by=["attributes.start_time DESC"])[0]
    assert run.info.status == "FAILED", (run.info, res.stderr)
    rep = json.loads(Path(client.download_artifacts(run.info.run_id, "outputs/validation_report.json")).read_text())
    by = {(f["column"], f["rule"]): f for f in rep["failures"]}
    assert by[("x", "range")]["rows"] == [{"row": 5, "x": 1000.0}]
    assert by[("color", "categories")]["rows"] == [{"row": 9, "color": "purple"}]
    assert "'blue', 'green', 'red'" in by[("color", "categories")]["allowed"]
