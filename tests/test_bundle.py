"""`mlops-wb package` and `serve --bundle`: a real registered model packaged; the Dockerfile passes hadolint, the
manifests kubernetes-validate; a fresh virtual environment built only from the bundle's requirements serves it, with
no tracking store, and answers the registered version's predictions."""
import json, os, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ONE_FAMILY, copy_project, cli, clean_env, client_for, free_port, start_http

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("proj") / "p", **ONE_FAMILY)
    env = dict(clean_env(), MLOPS_WB_APPROVERS=os.environ.get("USER", "root"))
    assert cli(root, "run", env=env).returncode == 0
    assert cli(root, "promote", "mlops-wb-model", "1", "--reason", "to ship", env=env).returncode == 0
    dist = root.parent / "dist"
    res = cli(root, "package", "mlops-wb-model@champion", str(dist), env=env)
    assert res.returncode == 0, res.stderr
    assert f"packaged mlops-wb-model version 1 into {dist}" in res.stdout
    return root, dist


def test_bundle_files_pass_the_linters(bundle):
    root, dist = bundle
    info = json.loads((dist / "bundle.json").read_text())
    assert (info["name"], info["version"], info["alias"]) == ("mlops-wb-model", "1", "champion")
    r = subprocess.run([str(BIN / "hadolint"), str(dist / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (dist / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/health" in text and text.count("FROM python:") == 2
    files = sorted((dist / "k8s").glob("*.yaml")) + [dist / "kserve" / "inferenceservice.yaml"]
    r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", "1.37.0", *map(str, files)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for kind in ("Deployment", "HorizontalPodAutoscaler", "Service"): assert f"passed for resource {kind.lower()}/" in r.stdout
    dep = yaml.safe_load((dist / "k8s" / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    assert dep["readinessProbe"]["httpGet"]["path"] == "/ready" and dep["livenessProbe"]["httpGet"]["path"] == "/health"
    route = yaml.safe_load((dist / "k8s" / "httproute.yaml").read_text())
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    # a broken manifest fails the same check
    bad = yaml.safe_load((dist / "k8s" / "hpa.yaml").read_text()); bad["spec"]["maxReplicas"] = "ten"
    (root / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert subprocess.run([str(BIN / "kubernetes-validate"), "--strict", str(root / "bad.yaml")], capture_output=True).returncode != 0
    # an existing, non-empty folder is refused, and nothing is written
    res = cli(root, "package", "mlops-wb-model@champion", str(dist))
    assert res.returncode == 2 and "exists and is not empty" in res.stderr


def test_a_fresh_environment_serves_the_bundle(bundle, tmp_path):
    root, dist = bundle
    venv, uv = tmp_path / "venv", str(BIN / "uv")   # uv: pip's job in seconds (its cache), same pins, same wheels
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    py = str(venv / "bin" / "python")
    r = subprocess.run([uv, "pip", "install", "-q", "--no-deps", "--python", py, "-r", "requirements.txt"],
                       cwd=dist, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    # --no-deps above: the pins alone must be complete; only mlops-wb's own notebook-side dependencies are absent
    r = subprocess.run([uv, "pip", "check", "--python", py], capture_output=True, text=True)
    missing = [l for l in (r.stdout + r.stderr).splitlines() if "requires" in l or "missing" in l.lower()]
    assert all("mlops-wb" in l for l in missing), missing
    assert subprocess.run([py, "-c", "import jupyterlab"], capture_output=True).returncode != 0   # a serving env, not the workbench
    empty = tmp_path / "nowhere"; empty.mkdir()   # no project, no store: only the bundle
    port = free_port()
    env = {k: v for k, v in clean_env().items() if k != "VIRTUAL_ENV"}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["MLOPS_WB_INFERENCE_LOG"] = str(tmp_path / "inference.db")
    proc = start_http([str(venv / "bin" / "mlops-wb"), "serve", "--bundle", str(dist), "--port", str(port)],
                      f"http://127.0.0.1:{port}/ready", cwd=empty, env=env, what="bundle server")
    try:
        from mlops_wb.data import load_demo
        from mlops_wb.models import load_model
        df = load_demo("breast_cancer").drop(columns="target").sample(80, random_state=1)
        body = json.dumps({"dataframe_split": {"columns": list(df.columns), "data": df.values.tolist()}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations?probabilities=true", data=body,
                                     headers={"Content-Type": "application/json"})
        out = json.loads(urllib.request.urlopen(req, timeout=30).read())
        client_for(root)   # the registered version, as the registry serves it
        model = load_model("models:/mlops-wb-model/1")
        assert out["predictions"] == [int(x) for x in model.predict(df)] and out["model_version"] == "1"
        assert max(abs(a - b) for p, q in zip(out["probabilities"], model.predict_proba(df)) for a, b in zip(p, q)) < 1e-9
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'mlops_wb_rows_scored_total{version="1"} 80.0' in metrics
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=b'{"dataframe_split": {"columns": ["x"], "data": [[1]]}}',
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e: urllib.request.urlopen(bad, timeout=10)
        assert e.value.code == 422
    finally:
        proc.terminate(); proc.wait(30)
    import sqlite3
    with sqlite3.connect(tmp_path / "inference.db") as db:
        assert db.execute("select count(*) from inference").fetchone()[0] == 80
    assert not (dist / "store").exists()   # the log went where it was told, the bundle is unchanged
