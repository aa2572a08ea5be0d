"""The mlops-wb command: help on every subcommand, and `ui` serving the MLflow UI on the project store."""
import socket, subprocess, time, urllib.request
import pytest
from conftest import CLI, clean_env, cli, copy_project


@pytest.mark.parametrize("sub", [[], ["run"], ["status"], ["ui"]])
def test_help(sub):
    res = subprocess.run([str(CLI), *sub, "--help"], capture_output=True, text=True, env=clean_env())
    assert res.returncode == 0 and "usage: mlops-wb" in res.stdout


def test_outside_a_project_is_a_clear_error(tmp_path):
    res = cli(None, "status", cwd=tmp_path)
    assert res.returncode == 2 and "No pipeline.yaml found" in res.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def test_ui_serves_the_project_store(tmp_path):
    root = copy_project(tmp_path / "p")
    port = _free_port()
    proc = subprocess.Popen([str(CLI), "--project", str(root), "ui", "--port", str(port)], cwd=tmp_path,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body, deadline = None, time.time() + 90
        while time.time() < deadline and body is None:
            try: body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read().decode()
            except OSError: time.sleep(0.5)
        assert body == "OK"
        exps = urllib.request.urlopen(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10",
                                      timeout=5).read().decode()
        assert "mlops-wb" in exps or '"experiments"' in exps
        assert (root / "store" / "mlflow.db").is_file()
    finally:
        proc.terminate(); proc.wait(timeout=30)
