"""Issue 4: tuning and evaluation artifacts, the quality gate against the champion (exit 3, nothing
registered), `mlflow models serve` on a registered version, `mlops-wb reproduce`, and a multiclass dataset."""
import json, os, subprocess, sys, urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import clean_env, cli, client_for, copy_project, free_port, start_http

M = "mlops-wb-model"
WEAK = ["-p", "train.features=[mean_texture, mean_smoothness]", "-p", "train.candidates=[{family: linear}]"]
WEAKER = ["-p", "train.features=[texture_error]", "-p", "train.candidates=[{family: linear}]"]


def _as_approver():
    env = clean_env(); env["MLOPS_WB_USER"] = "alice"; env["MLOPS_WB_APPROVERS"] = "alice"
    return env


def _alias(client, alias):
    try: return str(client.get_model_version_by_alias(M, alias).version)
    except Exception: return None


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """v1: a weak model (two features), promoted to champion; v2: the full model, which beats it."""
    root = copy_project(tmp_path_factory.mktemp("model") / "p",
                        gate={"thresholds": {"roc_auc": 0.4}, "compare": ["roc_auc", "accuracy"], "tolerance": 0.01})
    res = cli(root, "run", *WEAK)
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli(root, "promote", M, "1", "--reason", "first model", env=_as_approver())
    assert res.returncode == 0, res.stderr
    better = cli(root, "run")
    assert better.returncode == 0, better.stdout + better.stderr
    return root, better


def test_better_challenger_passes_gate_against_champion(project):
    root, res = project
    client, _ = client_for(root)
    assert "registered model: mlops-wb-model version 2" in res.stdout
    assert _alias(client, "challenger") == "2" and _alias(client, "champion") == "1"
    mv = client.get_model_version(M, "2")
    gate = json.loads(mv.tags["mlops_wb.gate"])
    assert gate["passed"] and gate["champion"]["version"] == "1"
    chk = gate["checked"]["roc_auc_vs_champion"]
    assert chk["passed"] and chk["value"] > chk["champion"] > 0.7    # the champion was re-scored on the same holdout
    # the model card is the version's description and an artifact, with plots and importance next to it
    assert mv.description.startswith("# Model card: mlops-wb-model version 2")
    for part in ("## Holdout metrics", "## Quality gate", "**PASSED**", "Compared with champion version 1", "## Permutation importance"):
        assert part in mv.description, part
    arts = {a.path for a in client.list_artifacts(mv.run_id, "evaluation")}
    assert {"evaluation/card.md", "evaluation/evaluation.html", "evaluation/importance.parquet", "evaluation/gate.json"} <= arts
    html = Path(client.download_artifacts(mv.run_id, "evaluation/evaluation.html")).read_text()
    for title in ("ROC curve", "Precision-recall curve", "Confusion matrix", "Calibration"): assert title in html, title
    prid = mv.tags["mlops_wb.pipeline_run_id"]
    report = (root / "reports" / prid / "evaluate.html").read_text()
    assert "Confusion matrix" in report and "plotly" in report


def test_worse_challenger_fails_gate_exit_3_and_gets_nothing(project):
    root, _ = project
    client, exp = client_for(root)
    res = cli(root, "run", *WEAKER)
    assert res.returncode == 3, res.stdout + res.stderr
    err = [l for l in res.stderr.splitlines() if l.startswith("error:")][0]
    assert "quality gate failed, nothing registered" in err and "worse than champion version 1" in err, err
    assert sorted(str(v.version) for v in client.search_model_versions(f"name = '{M}'")) == ["1", "2"]   # nothing registered
    assert _alias(client, "challenger") == "2" and _alias(client, "champion") == "1"   # no alias moved
    # the result is recorded: the evaluate step's gate report and metric, the pipeline run's tag
    parent = client.search_runs([exp], "tags.`mlops_wb.kind` = 'pipeline'", max_results=1, order_by=["attributes.start_time DESC"])[0]
    assert parent.data.tags["mlops_wb.gate_passed"] == "false" and parent.info.status == "FAILED"
    ev = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`mlops_wb.step` = 'evaluate'")[0]
    assert ev.data.metrics["gate_passed"] == 0.0 and ev.info.status == "FINISHED"
    gate = json.loads(Path(client.download_artifacts(ev.info.run_id, "outputs/gate.json")).read_text())
    assert not gate["checked"]["roc_auc_vs_champion"]["passed"] and gate["checked"]["roc_auc"]["passed"]


def test_mlflow_models_serve_scores_registered_version(project):
    root, _ = project
    import pandas as pd
    from mlops_wb.data import load_demo
    client, _ = client_for(root)
    port = free_port()
    env = clean_env(); env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/store/mlflow.db"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"   # as in an activated .venv: it starts `uvicorn`
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = start_http([mlflow_bin, "models", "serve", "-m", f"models:/{M}/2", "--env-manager", "local", "--host", "127.0.0.1",
                       "-p", port], f"http://127.0.0.1:{port}/ping", cwd=root, env=env, timeout=120, what="mlflow models serve")
    try:
        rows = load_demo("breast_cancer").drop(columns="target").head(4)
        body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
        got = json.loads(urllib.request.urlopen(req, timeout=30).read())["predictions"]
        import mlflow
        expected = mlflow.pyfunc.load_model(f"models:/{M}/2").predict(rows)
        assert list(got) == [int(v) for v in expected]
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()


def test_reproduce_reports_identical_metrics(project):
    root, _ = project
    client, _ = client_for(root)
    res = cli(root, "reproduce", M, "2", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    rep = json.loads(res.stdout[res.stdout.index("{"):])
    assert rep["identical"] and rep["sources"].startswith("git commit ")
    got = {r["metric"]: r for r in rep["metrics"]}
    assert {"roc_auc", "accuracy", "f1", "log_loss"} <= set(got)
    assert all(r["reproduced"] == r["registered"] for r in got.values())
    assert all(d["identical"] for d in rep["data"]) and len(rep["data"]) == 3
    assert client.get_model_version(M, "2").tags["mlops_wb.reproduced"].startswith("identical at ")
    res = cli(root, "reproduce", M, "9")
    assert res.returncode == 2 and "not found" in res.stderr


def test_multiclass_dataset_through_pipeline_yaml_only(tmp_path):
    root = copy_project(tmp_path / "p", project="wine",
                        dataset={"source": "demo:wine", "target": "target", "task": "auto"},
                        gate={"thresholds": {"accuracy": 0.8, "f1": 0.8}},
                        evaluation={"slices": ["alcohol"], "importance_repeats": 2})
    res = cli(root, "run")
    assert res.returncode == 0, res.stdout + res.stderr
    client, exp = client_for(root)
    ev = client.search_runs([exp], "tags.`mlops_wb.step` = 'evaluate'")[0]
    assert ev.data.metrics["accuracy"] > 0.8 and ev.data.metrics["roc_auc"] > 0.9   # one-vs-rest AUC
    mv = client.get_model_version(M, "1")
    assert "Predicts **target** (multiclass)" in mv.description and "f1_macro" in mv.description
    assert "## Slices" in mv.description and "alcohol" in mv.description


def test_monitor_reports_drift_against_the_stored_profile(project, tmp_path):
    root, _ = project
    from mlops_wb.data import load_demo
    X = load_demo("breast_cancer").drop(columns="target")
    X.sample(300, random_state=3).to_csv(root / "same.csv", index=False)
    shifted = X.sample(300, random_state=4)
    moved = list(X.columns[:20])
    shifted[moved] = shifted[moved] * 1.6
    shifted.drop(columns=["worst_symmetry"]).assign(region="north").to_csv(root / "shifted.csv", index=False)
    res = cli(root, "monitor", f"{M}/2", "--data", "same.csv", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    same = json.loads(res.stdout)
    assert not same["dataset_drift"] and same["share_drifted"] < 0.2 and not same["prediction"]["drifted"]
    spec = yaml.safe_load((root / "pipeline.yaml").read_text())
    spec["drift"] = {"alerts": [{"kind": "dataset_drift"}, {"kind": "psi", "column": "mean_radius", "above": 0.25}]}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = clean_env(); env["MLOPS_WB_ALERT_WEBHOOK"] = "http://127.0.0.1:9/dead"   # nothing listens: delivery fails, monitoring goes on
    res = cli(root, "monitor", f"{M}/2", "--data", "shifted.csv", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "dataset drift: YES" in res.stdout and "missing in the current data" in res.stdout
    assert "ALERT dataset_drift" in res.stdout and "ALERT psi: PSI of mean_radius" in res.stdout and "webhook: failed" in res.stdout
    from mlops_wb.alerts import alert_log
    from mlops_wb.config import load_settings
    log = alert_log(client_for(root)[0], load_settings(root, env={}), M)
    assert {a["rule"]["kind"] for a in log[:2]} == {"dataset_drift", "psi"} and all(a["delivery"] == "failed" for a in log[:2])
    client, _ = client_for(root)
    mv = client.get_model_version(M, "2")
    run = client.get_run(mv.tags["mlops_wb.last_monitoring_run"])
    assert run.data.tags["mlops_wb.model_version"] == "2" and run.data.metrics["dataset_drift"] == 1.0
    rep = json.loads((root / "reports" / "monitor" / f"{run.info.run_id}.json").read_text())
    drifted = {c["column"] for c in rep["columns"] if c["drifted"]}
    assert drifted == set(moved)   # exactly the moved columns
    assert rep["missing_columns"] == ["worst_symmetry"] and rep["extra_columns"] == ["region"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} >= {f"report/{run.info.run_id}.html"}
    assert not (tmp_path / "mlruns").exists() and not (root / "mlruns").exists()   # artifacts stay in the project's store
    res = cli(root, "monitor", f"{M}/2", "--since", "2h")    # nothing served yet: a clear error, exit 2
    assert res.returncode == 2 and "no inference log" in res.stderr, res.stderr
    res = cli(root, "monitor", f"{M}/2", "--backtest", "--data", "same.csv", "--chunks", "3", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    bt = json.loads(res.stdout)   # three windows of rows the model was trained on: the configured thresholds stay quiet
    assert bt["windows"] == 3 and bt["window_rows"] == [100, 100, 100] and bt["dataset_drift_rate"] == 0.0
    assert set(bt["columns"]) == set(X.columns) and Path(bt["json"]).exists()
    assert bt["rules"] == {'{"kind": "dataset_drift"}': 0.0, '{"kind": "psi", "column": "mean_radius", "above": 0.25}': 0.0}
    res = cli(root, "monitor", f"{M}/2", "--backtest", "--data", "same.csv", "--chunks", "1")
    assert res.returncode == 2 and "at least 2 windows" in res.stderr, res.stderr
    spec["drift"] = {"threshold": 0.2}   # a typo in pipeline.yaml is an error, not silently the defaults
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    res = cli(root, "monitor", f"{M}/2", "--data", "same.csv")
    assert res.returncode == 2 and "drift: unknown key(s) ['threshold']" in res.stderr, res.stderr
    versions = len(client.search_model_versions(f"name = '{M}'"))
    res = cli(root, "run", "--no-cache")    # and it stops a run before anything is trained or registered
    assert res.returncode == 2 and "drift: unknown key(s) ['threshold']" in res.stderr, res.stderr
    assert len(client.search_model_versions(f"name = '{M}'")) == versions
