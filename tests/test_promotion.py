"""Governed promotion: approvers only, a reason always, no gate-failed version without --force,
every promotion and rollback in the audit log, and `history` answering who was champion when."""
import json, re, time
from datetime import datetime, timezone

import pytest
from conftest import clean_env, cli, client_for, copy_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("promo") / "p")
    for args in (["run"], ["run", "-p", "train.seed=5"]):
        res = cli(root, *args)
        assert res.returncode == 0, res.stdout + res.stderr
    return root


def _as(user, approvers="alice"):
    env = clean_env(); env["MLOPS_WB_USER"] = user; env["MLOPS_WB_APPROVERS"] = approvers
    return env


def _champion(root):
    client, _ = client_for(root)
    try: return str(client.get_model_version_by_alias("mlops-wb-model", "champion").version)
    except Exception: return None


def test_governed_promotion_rollback_and_history(project):
    root = project
    # nobody is an approver by default
    res = cli(root, "promote", "mlops-wb-model", "1", "--reason", "first")
    assert res.returncode == 4 and "is not an approver" in res.stderr and "approvers are: (none)" in res.stderr
    res = cli(root, "promote", "mlops-wb-model", "1", "--reason", "first", env=_as("bob"))
    assert res.returncode == 4 and "user 'bob' is not an approver" in res.stderr
    res = cli(root, "promote", "mlops-wb-model", "1", "--reason", "  ", env=_as("alice"))
    assert res.returncode == 4 and "a reason is required" in res.stderr
    assert _champion(root) is None

    res = cli(root, "promote", "mlops-wb-model", "1", "--reason", "first model", env=_as("alice"))
    assert res.returncode == 0, res.stderr
    assert "mlops-wb-model@champion: none -> 1 by alice" in res.stdout and _champion(root) == "1"
    between = datetime.now(timezone.utc).isoformat()
    time.sleep(0.05)
    res = cli(root, "promote", "mlops-wb-model", "2", "--reason", "seed 5 is better", env=_as("alice"))
    assert res.returncode == 0 and _champion(root) == "2"
    res = cli(root, "rollback", "--reason", "v2 misbehaves in canary", env=_as("alice"))
    assert res.returncode == 0 and "rolled back: 2 -> 1" in res.stdout and _champion(root) == "1"

    h = json.loads(cli(root, "history", "--json").stdout)
    assert [(e["action"], e["from_version"], e["to_version"], e["champion_after"]) for e in h] == [
        ("promote", None, "1", "1"), ("promote", "1", "2", "2"), ("rollback", "2", "1", "1")]
    assert [e["user"] for e in h] == ["alice"] * 3 and h[1]["reason"] == "seed 5 is better"
    assert h[0]["gate"]["passed"] is True and h[0]["metrics"]["roc_auc"] > 0.9   # metric snapshot and gate result kept
    assert "1" == re.search(r"@champion at .*: (\S+)", cli(root, "history", "--at", between).stdout).group(1)
    table = cli(root, "history").stdout
    assert "v2 misbehaves in canary" in table and "rollback" in table


def test_gate_failed_version_needs_force(project):
    root = project
    from mlops_wb.data import load_demo
    from mlops_wb.registry import register_model, TAG_GATE, TAG_GATE_PASSED
    from mlops_wb.train import fit_model
    client, exp = client_for(root)
    df = load_demo("breast_cancer")
    bad = register_model(fit_model(df, "target", max_iter=5), df.drop(columns="target").head(3), client.create_run(exp).info.run_id,
                         "mlops-wb-model", alias=None, tags={TAG_GATE_PASSED: "false",
                                                             TAG_GATE: json.dumps({"passed": False, "failures": ["roc_auc = 0.51, required >= 0.9"]})})
    before = _champion(root)
    res = cli(root, "promote", "mlops-wb-model", bad, "--reason", "try it", env=_as("alice"))
    assert res.returncode == 4 and "did not pass its quality gate (roc_auc = 0.51" in res.stderr and "--force" in res.stderr
    assert _champion(root) == before
    res = cli(root, "promote", "mlops-wb-model", bad, "--reason", "hotfix approved by risk", "--force", env=_as("alice"))
    assert res.returncode == 0 and _champion(root) == bad
    last = json.loads(cli(root, "history", "--json").stdout)[-1]
    assert last["forced"] == "true" and last["gate"]["passed"] is False and last["to_version"] == bad
