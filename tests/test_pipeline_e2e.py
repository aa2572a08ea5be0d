"""The default pipeline end to end, in a temporary copy of the project: cold run, fully cached
re-run, a parameter change, --explain / --only / --from, status and reports."""
import json, re
from pathlib import Path

import pytest
from conftest import cli, client_for, copy_project

STEPS = ["ingest", "validate", "split", "eda", "train", "evaluate", "register"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("proj") / "p")
    first = cli(root, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    return root, first


def _runs(client, exp, kind, extra=""):
    return client.search_runs([exp], f"tags.`mlops_wb.kind` = '{kind}'{extra}", max_results=1000,
                              order_by=["attributes.start_time ASC"])


def _children(client, exp, parent_id):
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=100)
    return {r.data.tags["mlops_wb.step"]: r for r in runs}


def test_cold_run_records_parent_children_and_model(project):
    root, first = project
    out = first.stdout
    client, exp = client_for(root)
    parents = _runs(client, exp, "pipeline")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    # the command printed the run id, each step's status and duration, the version and where to look
    assert f"pipeline run id: {parent.info.run_id}" in out
    for s in STEPS: assert re.search(rf"{s}\s+│\s+ran\s+│\s+\d+\.\ds", out), out
    assert "registered model: mlops-wb-model version 1" in out
    assert "reports/index.html" in out and "mlops-wb ui" in out

    kids = _children(client, exp, parent.info.run_id)
    assert sorted(kids) == sorted(STEPS)
    for name, r in kids.items():
        t = r.data.tags
        assert r.info.status == "FINISHED"
        assert t["mlops_wb.notebook"] == f"nbs/pipeline/{name}.ipynb"
        assert len(t["mlops_wb.notebook_hash"]) == 64 and len(t["mlops_wb.cache_key"]) == 64
        assert re.fullmatch(r"[0-9a-f]{40}", t["mlops_wb.git_commit"]) and t["mlops_wb.git_dirty"] == "false"
        assert t["mlops_wb.version"] and t["mlops_wb.cached"] == "false"
        arts = {a.path for a in client.list_artifacts(r.info.run_id, "notebook")}
        assert arts == {f"notebook/{name}.ipynb", f"notebook/{name}.html"}
        assert (root / "reports" / parent.info.run_id / f"{name}.html").is_file()
        outputs = json.loads(t["mlops_wb.outputs"])
        for o in outputs.values(): assert len(o["sha256"]) == 64 and o["bytes"] > 0
    # params injected from pipeline.yaml and the step's own params
    assert kids["train"].data.params["seed"] == "42" and kids["train"].data.params["target"] == "target"
    assert '"trials":2' in kids["train"].data.params["tuning"].replace(" ", "")
    # every tuning trial is a nested run of the train step; the winner's params are on the train run
    trials = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{kids['train'].info.run_id}'", max_results=100)
    assert len(trials) == 3 * 2 and {t.data.tags["mlops_wb.family"] for t in trials} == {"linear", "random_forest", "gradient_boosting"}
    assert kids["train"].data.params["best.family"] in {"linear", "random_forest", "gradient_boosting"}
    assert kids["train"].data.metrics["tuning_seconds"] > 0
    # metrics logged by the notebooks
    assert kids["ingest"].data.metrics["rows"] == 569
    assert kids["evaluate"].data.metrics["roc_auc"] > 0.9
    # exactly one registered version, from the register step's run, aliased @challenger
    versions = client.search_model_versions("name = 'mlops-wb-model'")
    assert [str(v.version) for v in versions] == ["1"]
    assert versions[0].run_id == kids["register"].info.run_id
    assert str(client.get_model_version_by_alias("mlops-wb-model", "challenger").version) == "1"
    # the data the run used is recorded as MLflow dataset inputs, and the model version points at it
    names = sorted(d.dataset.name for d in parent.inputs.dataset_inputs)
    assert names == ["dataset", "holdout", "train", "validation"]
    ds = {d.dataset.name: d.dataset for d in parent.inputs.dataset_inputs}
    assert versions[0].tags["mlops_wb.dataset_digest"].startswith(ds["dataset"].digest)
    assert (root / "reports" / parent.info.run_id / "eda.html").stat().st_size > 100_000   # plotly figures embedded
    index = (root / "reports" / "index.html").read_text()
    assert parent.info.run_id in index and "FINISHED" in index


def test_rerun_with_nothing_changed_is_fully_cached(project):
    root, _ = project
    client, exp = client_for(root)
    first_parent = _runs(client, exp, "pipeline")[0]
    first = _children(client, exp, first_parent.info.run_id)
    res = cli(root, "run")
    assert res.returncode == 0, res.stderr
    parent = _runs(client, exp, "pipeline")[-1]
    kids = _children(client, exp, parent.info.run_id)
    for s in STEPS:
        t = kids[s].data.tags
        assert t["mlops_wb.cached"] == "true", s
        assert t["mlops_wb.cached_from_run_id"] == first[s].info.run_id
        assert t["mlops_wb.cache_key"] == first[s].data.tags["mlops_wb.cache_key"]
    assert "registered model: mlops-wb-model version 1" in res.stdout  # the reused version, no new one
    assert len(client.search_model_versions("name = 'mlops-wb-model'")) == 1


def test_explain_says_why(project):
    root, _ = project
    res = cli(root, "run", "--explain")
    assert res.returncode == 0
    assert res.stdout.count("cached") >= len(STEPS) and "would run" not in res.stdout
    res = cli(root, "run", "--explain", "-p", "train.seed=7")
    assert "param seed: 42 -> 7" in res.stdout
    # what train will produce is unknown until it runs: downstream says so instead of guessing
    assert re.search(r"would run\s+evaluate\s+upstream train would run", res.stdout), res.stdout


def test_changed_param_reruns_step_and_downstream_only(project):
    root, _ = project
    client, exp = client_for(root)
    res = cli(root, "run", "-p", "train.seed=5")
    assert res.returncode == 0, res.stderr
    parent = _runs(client, exp, "pipeline")[-1]
    kids = _children(client, exp, parent.info.run_id)
    cached = {s: kids[s].data.tags["mlops_wb.cached"] for s in STEPS}
    assert cached == {"ingest": "true", "validate": "true", "split": "true", "eda": "true",
                      "train": "false", "evaluate": "false", "register": "false"}
    assert "param seed: 42 -> 5" in kids["train"].data.tags["mlops_wb.reason"]
    assert kids["train"].data.params["seed"] == "5"
    assert "registered model: mlops-wb-model version 2" in res.stdout


def test_only_and_from(project):
    root, _ = project
    client, exp = client_for(root)
    res = cli(root, "run", "--only", "evaluate")
    assert res.returncode == 0, res.stderr
    kids = _children(client, exp, _runs(client, exp, "pipeline")[-1].info.run_id)
    assert kids["evaluate"].data.tags["mlops_wb.cached"] == "false"
    assert kids["evaluate"].data.tags["mlops_wb.reason"] == "forced by --only evaluate"
    assert all(kids[s].data.tags["mlops_wb.cached"] == "true" for s in ["ingest", "validate", "split", "train"])
    assert "register" not in kids
    res = cli(root, "run", "--from", "evaluate")
    assert res.returncode == 0, res.stderr
    kids = _children(client, exp, _runs(client, exp, "pipeline")[-1].info.run_id)
    assert {s for s in STEPS if kids[s].data.tags["mlops_wb.cached"] == "false"} == {"evaluate", "register"}


def test_status_lists_runs_and_steps(project):
    root, _ = project
    res = cli(root, "status")
    assert res.returncode == 0
    client, exp = client_for(root)
    for r in _runs(client, exp, "pipeline")[-3:]: assert r.info.run_id in res.stdout
    assert "ingest:cached" in res.stdout and "train:ran" in res.stdout
    last = _runs(client, exp, "pipeline")[-1].info.run_id
    res = cli(root, "status", last[:8])
    assert res.returncode == 0 and "forced by --from evaluate" in res.stdout


def test_store_lives_in_the_project_not_the_cwd(project):
    root, _ = project
    res = cli(None, "status", cwd=root / "nbs" / "pipeline")
    assert res.returncode == 0, res.stderr
    assert not (root / "nbs" / "pipeline" / "store").exists() and not (root / "nbs" / "pipeline" / "mlruns").exists()
    assert (root / "store" / "mlflow.db").is_file()
