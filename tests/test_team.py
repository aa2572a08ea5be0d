"""Team mode against the real thing: a throwaway PostgreSQL cluster and `mlflow server --app-name basic-auth`
started by `mlops-wb server init`, users added by `mlops-wb users add`, two checkouts as two users.

The tests of this file share one server and run in order (pytest-xdist's loadfile keeps them on one worker):
alice (scientist) runs the pipeline in checkout A, bob (approver) runs it in checkout B from A's cache;
alice's promotion is refused by the server, also through the raw MLflow API; bob's is audited under his login;
carol (viewer) is refused; two registers at once each get a version and the newest holds @challenger.
"""
import json, os, shutil, stat, tempfile, threading
from pathlib import Path

import pytest

from conftest import CLI, clean_env, cli, copy_project, free_port

ADMIN_PW = "admin-pw-for-tests-1"
USERS = {"alice": "scientist", "bob": "approver", "carol": "viewer"}
MODEL = "mlops-wb-model"


def password(user): return f"{user}-password-1234"


@pytest.fixture(scope="module")
def server():
    # PostgreSQL runs as the postgres user: its folder's parents must let that user in (pytest's tmp_path is 0700).
    base = Path(tempfile.mkdtemp(prefix="mlops-wb-team-", dir="/tmp"))
    base.chmod(0o755)
    proj = copy_project(base / "a")
    port, pg_port = free_port(), free_port()
    folder = base / "srv"
    import subprocess
    res = subprocess.run([str(CLI), "--project", str(proj), "server", "init", str(folder), "--port", str(port),
                          "--pg-port", str(pg_port), "--admin-password-stdin"], input=ADMIN_PW + "\n",
                         capture_output=True, text=True, timeout=300, env=clean_env())
    assert res.returncode == 0, res.stdout + res.stderr
    url = f"http://127.0.0.1:{port}"
    admin = {**clean_env(), "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin",
             "MLFLOW_TRACKING_PASSWORD": ADMIN_PW}
    for user, role in USERS.items():
        r = subprocess.run([str(CLI), "--project", str(proj), "users", "add", user, "--role", role, "--password-stdin"],
                           input=password(user) + "\n", capture_output=True, text=True, timeout=120, env=admin)
        assert r.returncode == 0, r.stdout + r.stderr
    yield dict(base=base, folder=folder, url=url, a=proj, b=copy_project(base / "b"), init=res)
    cli(proj, "server", "stop", str(folder), timeout=120)
    for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"): os.environ.pop(k, None)   # set by client_as
    shutil.rmtree(base, ignore_errors=True)


def as_user(server, user, **extra):
    return {**clean_env(), "MLFLOW_TRACKING_URI": server["url"], "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password(user), **extra}


def client_as(server, user):
    """An MlflowClient on the server with `user`'s login (MLflow reads the login from the environment)."""
    from mlflow import MlflowClient
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password(user))
    return MlflowClient(server["url"], server["url"])


def test_server_folder_and_logins(server):
    folder = server["folder"]
    for name in ("auth.ini", "server.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    st = cli(server["a"], "server", "status", str(folder))
    assert st.returncode == 0 and "postgresql:    running" in st.stdout and "mlflow server: running" in st.stdout
    pg_password = json.loads((folder / "server.json").read_text())["pg_password"]
    assert pg_password not in server["init"].stdout + server["init"].stderr
    import requests
    who = lambda u, p: requests.get(f"{server['url']}/api/2.0/mlflow/users/current", auth=(u, p), timeout=30)
    assert who("admin", ADMIN_PW).json()["user"]["username"] == "admin"
    assert who("admin", "password1234").status_code == 401   # MLflow's well-known default never existed
    assert who("alice", password("alice")).json()["user"]["username"] == "alice"
    assert requests.get(f"{server['url']}/api/2.0/mlflow/experiments/search", timeout=30).status_code == 401
    wrong = cli(server["a"], "status", env=as_user(server, "alice", MLFLOW_TRACKING_PASSWORD="not-her-password"))
    assert wrong.returncode == 1 and "refused the login: set MLFLOW_TRACKING_USERNAME" in wrong.stderr, wrong.stderr
    assert "not-her-password" not in wrong.stdout + wrong.stderr
    # a second init into the same folder is refused and changes nothing
    again = cli(server["a"], "server", "init", str(folder), "--admin-password-stdin")
    assert again.returncode == 2 and "not empty" in again.stderr


def test_two_checkouts_share_the_cache(server):
    a = cli(server["a"], "run", env=as_user(server, "alice"), timeout=900)
    assert a.returncode == 0, a.stdout + a.stderr
    assert f"registered model: {MODEL}-candidates version 1" in a.stdout
    b = cli(server["b"], "run", env=as_user(server, "bob"), timeout=900)
    assert b.returncode == 0, b.stdout + b.stderr
    assert b.stdout.count("│ cached ") == 7 and "│ ran " not in b.stdout, b.stdout   # every step reused from A


def test_scientist_cannot_move_champion(server):
    from mlflow.exceptions import MlflowException
    r = cli(server["a"], "promote", MODEL, "1", "--reason", "alice tries", env=as_user(server, "alice"))
    assert r.returncode == 4, r.stdout + r.stderr
    assert "promote refused by the tracking server: alice may not change mlops-wb-model" in r.stderr
    c = client_as(server, "alice")
    assert c.get_registered_model(MODEL).aliases == {}            # nothing moved
    assert c.search_model_versions(f"name = '{MODEL}'") == []     # and nothing was copied
    with pytest.raises(MlflowException, match="403"):             # nor through the raw API
        c.set_registered_model_alias(MODEL, "champion", "1")
    c.set_registered_model_alias(f"{MODEL}-candidates", "challenger", "1")   # her own model: allowed
    refusals = c.search_runs([c.get_experiment_by_name("mlops-wb-refusals").experiment_id])
    assert [(x.data.tags["audit.user"], x.data.tags["audit.action"]) for x in refusals] == [("alice", "promote")]
    # the client cannot make her an approver, nor someone else
    for extra in ({"MLOPS_WB_APPROVERS": "alice"}, {"MLOPS_WB_USER": "bob"}):
        r = cli(server["a"], "promote", MODEL, "1", "--reason", "x", env=as_user(server, "alice", **extra))
        assert r.returncode == 2 and "not used with a tracking server" in r.stderr, r.stderr


def test_approver_promotes_under_his_login(server):
    r = cli(server["b"], "promote", MODEL, "1", "--reason", "bob approves", env=as_user(server, "bob"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "by bob" in r.stdout and "a copy of mlops-wb-model-candidates version 1" in r.stdout
    c = client_as(server, "bob")
    runs = c.search_runs([c.get_experiment_by_name("mlops-wb").experiment_id], "tags.`mlops_wb.kind` = 'pipeline'")
    assert sorted(r.data.tags["mlflow.user"] for r in runs) == ["alice", "bob"]   # who ran each, from the login
    mv = c.get_model_version_by_alias(MODEL, "champion")
    assert mv.tags["mlops_wb.candidate_version"] == "1" and mv.tags["mlops_wb.gate_passed"] == "true"
    h = cli(server["a"], "history", "--json", env=as_user(server, "carol"))   # a viewer may read the audit log
    assert h.returncode == 0, h.stderr
    entries = json.loads(h.stdout)
    assert [(e["action"], e["user"], e["to_version"], e["candidate"]) for e in entries] == [("promote", "bob", "1", "1")]


def test_two_registers_at_once(server):
    """Both checkouts re-run only the register step at the same moment, the second waiting for the project's run lock
    (--wait): two versions, the newest is @challenger."""
    out = {}
    def go(key, user):
        out[key] = cli(server[key], "run", "--from", "register", "--wait", env=as_user(server, user), timeout=900)
    ts = [threading.Thread(target=go, args=a) for a in (("a", "alice"), ("b", "bob"))]
    for t in ts: t.start()
    for t in ts: t.join()
    for k, r in out.items(): assert r.returncode == 0, (k, r.stdout, r.stderr)
    c = client_as(server, "carol")
    versions = sorted(int(v.version) for v in c.search_model_versions(f"name = '{MODEL}-candidates'"))
    assert versions == [1, 2, 3], versions
    assert c.get_model_version_by_alias(f"{MODEL}-candidates", "challenger").version == "3"


def test_viewer_refused_approver_rolls_back(server):
    v = cli(server["a"], "promote", MODEL, "3", "--reason", "carol tries", env=as_user(server, "carol"))
    assert v.returncode == 4 and "refused by the tracking server: carol may not change" in v.stderr, v.stderr
    bob = as_user(server, "bob")
    p = cli(server["b"], "promote", MODEL, "3", "--reason", "newer", env=bob)
    assert p.returncode == 0 and "none" not in p.stdout and "1 -> 2 (a copy of mlops-wb-model-candidates version 3)" in p.stdout, p.stdout
    r = cli(server["b"], "rollback", "--reason", "back to the first", env=bob)
    assert r.returncode == 0 and "rolled back: 2 -> 1" in r.stdout, r.stdout + r.stderr
    h = json.loads(cli(server["a"], "history", "--json", env=as_user(server, "alice")).stdout)
    assert [(e["action"], e["user"], e["champion_after"]) for e in h] == [
        ("promote", "bob", "1"), ("promote", "bob", "2"), ("rollback", "bob", "1")]

