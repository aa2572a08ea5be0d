"""The mlops-wb command: help on every subcommand, and `ui` serving the MLflow UI on the project store."""
import subprocess, time, urllib.request
from pathlib import Path
import pytest
from conftest import CLI, clean_env, cli, copy_project, free_port, start_http


@pytest.mark.parametrize("sub", [[], ["run"], ["status"], ["ui"], ["lineage"], ["data"], ["data", "diff"], ["data", "list"], ["lab"], ["server", "init"], ["users", "add"]])
def test_help(sub):
    res = subprocess.run([str(CLI), *sub, "--help"], capture_output=True, text=True, env=clean_env())
    assert res.returncode == 0 and "usage: mlops-wb" in res.stdout


def test_outside_a_project_is_a_clear_error(tmp_path):
    res = cli(None, "status", cwd=tmp_path)
    assert res.returncode == 2 and "No pipeline.yaml found" in res.stderr


def test_ui_serves_the_project_store(tmp_path):
    root = copy_project(tmp_path / "p")
    port = free_port()
    proc = start_http([CLI, "--project", root, "ui", "--port", port], f"http://127.0.0.1:{port}/health", cwd=tmp_path,
                      what="mlops-wb ui")
    try:
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read().decode() == "OK"
        exps = urllib.request.urlopen(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10",
                                      timeout=5).read().decode()
        assert "mlops-wb" in exps or '"experiments"' in exps
        assert (root / "store" / "mlflow.db").is_file()
    finally:
        proc.terminate(); proc.wait(timeout=30)
    time.sleep(1)
    try: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2); alive = True
    except OSError: alive = False
    assert not alive, "the MLflow UI server outlived `mlops-wb ui`"


def test_lab_starts_jupyterlab_with_the_project_kernel(tmp_path):
    root = copy_project(tmp_path / "p")
    port = free_port()
    env = clean_env(); env["JUPYTER_TOKEN"] = "t0k3n"; env["HOME"] = str(tmp_path)
    proc = subprocess.Popen([str(CLI), "--project", str(root), "lab", "--no-browser", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        specs, deadline = None, time.time() + 120
        while time.time() < deadline and specs is None:
            try: specs = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token=t0k3n", timeout=2).read().decode()
            except OSError: time.sleep(0.5)
        assert specs is not None, "JupyterLab did not answer"
        import json, sys
        data = json.loads(specs)
        assert data["default"] == "mlops-wb"
        argv = data["kernelspecs"]["mlops-wb"]["spec"]["argv"]
        assert Path(argv[0]).parent == Path(sys.executable).parent   # the project environment's Python, with mlops_wb importable
        contents = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=t0k3n", timeout=5).read())
        assert {"pipeline.yaml", "nbs"} <= {c["name"] for c in contents["content"]}
    finally:
        proc.terminate(); proc.wait(timeout=30)
