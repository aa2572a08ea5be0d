"""Issue 3: a killed snapshot write leaves nothing half-written; a second dataset with
categorical features, missing values and a string target, a wide one and a regression one
run through pipeline.yaml alone."""
import json, os, re, signal, subprocess, time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from conftest import CLI, clean_env, cli, client_for, copy_project, gate_copy, kernel_children

from mlops_wb.config import load_settings
from mlops_wb.data import SnapshotStore, frame_digest, read_source, split_frame
from mlops_wb.step import file_digest


def test_killed_snapshot_write_leaves_no_partial_snapshot(tmp_path):
    root = tmp_path / "p"; (root / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 600_000
    big = pd.DataFrame({f"f{i}": rng.normal(size=n).round(4) for i in range(20)})
    big["label"] = rng.choice(["a", "b"], n)
    big.to_csv(root / "data" / "big.csv", index=False)
    gate_copy(root, root / "data" / "big.csv")
    store = SnapshotStore(load_settings(root, env={}))
    proc = subprocess.Popen([str(CLI), "--project", str(root), "run"], cwd=root, env=clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writing, deadline = [], time.time() + 240
    while not writing and time.time() < deadline and proc.poll() is None:
        writing = store.client.search_runs([store.exp_id], "attributes.status = 'RUNNING'")
        time.sleep(0.05)
    assert writing, "the snapshot write was never seen in progress"
    for pid in kernel_children(proc.pid) | {proc.pid}:     # SIGKILL the runner and its kernels mid-write
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass
    proc.wait(timeout=30)
    runs = store.client.search_runs([store.exp_id], "")
    assert [r.info.status for r in runs] == ["RUNNING"]            # the interrupted write, never FINISHED
    assert store.list() == [] and store.latest("dataset", "gate") is None   # so no snapshot is visible

    st = cli(root, "status")                                       # the next look ends the killed pipeline run
    assert "KILLED" in st.stdout and "RUNNING" not in st.stdout, st.stdout

    res = cli(root, "run")                                         # the next run succeeds
    assert res.returncode == 0, res.stdout + res.stderr
    snaps = store.list()
    assert len(snaps) == 1
    assert file_digest(store.path(snaps[0])) == snaps[0].file_sha256
    assert snaps[0].digest == frame_digest(read_source("data/big.csv", root))
    stale = store.client.get_run(writing[0].info.run_id)
    assert stale.info.status == "KILLED" and "is gone" in stale.data.tags["mlops_wb.end_reason"]   # its writer, by pid
    assert list((root / ".mlops_wb" / "tmp").glob("snapshot-*")) == []   # and the killed write's scratch folder is gone


def _tips_fixture(path: Path):
    """plotly's bundled `tips` data with seeded missing values: numbers, categories and a string target."""
    import plotly.express as px
    df = px.data.tips()
    rng = np.random.default_rng(7)
    for col in ["total_bill", "day", "smoker"]:
        df.loc[rng.choice(len(df), 12, replace=False), col] = None
    df.to_csv(path, index=False)
    return df


def test_second_dataset_through_pipeline_yaml_only(tmp_path):
    root = copy_project(tmp_path / "p")
    (root / "data").mkdir()
    _tips_fixture(root / "data" / "tips.csv")
    spec = yaml.safe_load((root / "pipeline.yaml").read_text())
    spec["project"] = "tips"
    spec["dataset"] = {"source": "data/tips.csv", "target": "time", "task": "auto"}
    spec["gate"] = {"thresholds": {"roc_auc": 0.6}, "tolerance": 0.01}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    res = cli(root, "run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "registered model: mlops-wb-model version 1" in res.stdout

    digest = frame_digest(read_source("data/tips.csv", root))
    lin = cli(root, "lineage", "mlops-wb-model@challenger")
    assert lin.returncode == 0, lin.stderr
    assert re.search(rf"dataset\s+│\s+{digest}\s+│\s+244\s+│\s+data/tips.csv", lin.stdout), lin.stdout
    assert "pipeline run:" in lin.stdout and "nbs/pipeline/train.ipynb" in lin.stdout
    js = json.loads(cli(root, "lineage", "mlops-wb-model/1", "--json").stdout)
    assert {d["name"]: d["digest"] for d in js["datasets"]}["dataset"] == digest

    # the model takes the raw categorical columns, missing values included
    import mlflow
    client_for(root)   # points mlflow's tracking and registry URIs at this project's store
    model = mlflow.pyfunc.load_model("models:/mlops-wb-model@challenger")
    rows = pd.read_csv(root / "data" / "tips.csv").drop(columns="time").head(20)
    assert set(model.predict(rows)) <= {"Lunch", "Dinner"}

    # a changed source file is noticed: ingest runs again and says why
    df = pd.read_csv(root / "data" / "tips.csv"); df.loc[0, "tip"] = 99.0; df.to_csv(root / "data" / "tips.csv", index=False)
    res = cli(root, "run", "--explain")
    assert re.search(r"would run\s+ingest\s+source files changed: data/tips.csv", res.stdout), res.stdout

    # diff between the train and holdout snapshots of that run
    store = SnapshotStore(load_settings(root, env={}))
    d = cli(root, "data", "diff", store.latest("train", "tips").digest[:10], store.latest("holdout", "tips").digest[:10])
    assert d.returncode == 0, d.stderr
    assert "columns added in B: none" in d.stdout and "total_bill" in d.stdout and "KS" in d.stdout


def test_wide_and_regression_data(tmp_path):
    """Hundreds of columns and a numeric target go through read, validate, snapshot and split unchanged."""
    from mlops_wb.validate import Expectations, detect_task
    rng = np.random.default_rng(3)
    wide = pd.DataFrame(rng.normal(size=(300, 400)), columns=[f"c{i}" for i in range(400)])
    wide["cat"] = rng.choice(list("abcd"), 300); wide["y"] = rng.normal(size=300)
    wide.to_csv(tmp_path / "wide.csv", index=False)
    df = read_source("wide.csv", tmp_path)
    assert df.shape == (300, 402) and detect_task(df.y) == "regression"
    ex = Expectations(target="y").fit(df)
    assert ex.validate(df).passed
    store = SnapshotStore(load_settings(tmp_path, env={}))
    ref = store.put(df, "wide.csv")
    assert len(ref.schema) == 402 and store.load(ref).equals(df)
    parts = split_frame(df, "y", 0.2, 0.2, stratify=False)
    assert sum(len(p) for p in parts.values()) == 300


def test_regression_dataset_through_pipeline_yaml_only(tmp_path):
    root = copy_project(tmp_path / "p")
    spec = yaml.safe_load((root / "pipeline.yaml").read_text())
    spec["project"] = "diabetes"
    spec["dataset"] = {"source": "demo:diabetes", "target": "target", "task": "auto"}
    spec["gate"] = {"thresholds": {"r2": 0.2, "rmse": 80.0}, "tolerance": 0.01}
    spec["evaluation"] = {"slices": ["sex"], "importance_repeats": 2}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    res = cli(root, "run")
    assert res.returncode == 0, res.stdout + res.stderr
    client, exp = client_for(root)
    ev = client.search_runs([exp], "tags.`mlops_wb.step` = 'evaluate'")[0]
    assert {"rmse", "mae", "r2"} <= set(ev.data.metrics) and ev.data.metrics["r2"] > 0.2
    assert "registered model: mlops-wb-model version 1" in res.stdout
