"""What the runner does when things go wrong: a failing step, bad pipeline files, Ctrl-C."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import CLI, INJECTED, alive, clean_env, cli, client_for, copy_project, kernel_children, mini_project, write_notebook


def test_failing_step_stops_the_pipeline_and_registers_nothing(tmp_path):
    root = copy_project(tmp_path / "p")
    nb_path = root / "nbs/pipeline/train.ipynb"
    nb = nbformat.read(str(nb_path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("ratio = len(train) / 0  # deliberate failure"))
    nbformat.write(nb, str(nb_path))

    res = cli(root, "run")
    assert res.returncode == 1
    err = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1, res.stderr
    line = err[0]
    assert "step 'train' failed in cell" in line and "ZeroDivisionError: division by zero" in line
    executed = Path(line.split("executed notebook: ")[1])
    assert executed.is_file() and executed.name == "train.ipynb"
    # papermill's error banner is kept in the executed notebook
    text = executed.read_text()
    assert "An Exception was encountered at" in text and "ZeroDivisionError" in text

    client, exp = client_for(root)
    parent = client.search_runs([exp], "tags.`mlops_wb.kind` = 'pipeline'")[0]
    assert parent.info.status == "FAILED"
    kids = {r.data.tags["mlops_wb.step"]: r for r in
            client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")}
    assert sorted(kids) == ["eda", "ingest", "split", "train", "validate"]   # evaluate and register never started
    assert kids["train"].info.status == "FAILED"
    assert all(kids[s].info.status == "FINISHED" for s in ["ingest", "validate", "split", "eda"])
    assert "ZeroDivisionError" in kids["train"].data.tags["mlops_wb.error"]
    arts = {a.path for a in client.list_artifacts(kids["train"].info.run_id, "notebook")}
    assert arts == {"notebook/train.ipynb", "notebook/train.html"}
    assert (root / "reports" / parent.info.run_id / "train.html").is_file()
    assert client.search_registered_models() == []
    assert client.search_model_versions("name = 'mlops-wb-model'") == []
    # the summary names the steps that did not run
    assert "not run" in res.stdout and "an earlier step failed" in res.stdout


GOOD_STEPS = """  - name: a
    notebook: nbs/a.ipynb
  - name: b
    notebook: nbs/b.ipynb
    depends_on: [a]
"""

BAD_PIPELINES = {
    "unknown top-level key": ("project: mini\nprojekt: x\ndataset: {source: 'demo:iris', target: target}\nsteps:\n" + GOOD_STEPS,
                              ["pipeline.yaml", "projekt: unknown key", "expected one of: project, dataset"]),
    "unknown step key": ("project: mini\ndataset: {source: 'demo:iris', target: target}\nsteps:\n" +
                         GOOD_STEPS.replace("depends_on: [a]", "depend_on: [a]"),
                         ["pipeline.yaml", "steps[1].depend_on: unknown key", "expected one of: name, notebook, params, depends_on"]),
    "missing notebook": ("project: mini\ndataset: {source: 'demo:iris', target: target}\nsteps:\n" +
                         GOOD_STEPS.replace("nbs/b.ipynb", "nbs/missing.ipynb"),
                         ["pipeline.yaml", "steps[1].notebook: nbs/missing.ipynb not found", "expected a notebook path"]),
    "dependency cycle": ("project: mini\ndataset: {source: 'demo:iris', target: target}\nsteps:\n" +
                         GOOD_STEPS.replace("notebook: nbs/a.ipynb", "notebook: nbs/a.ipynb\n    depends_on: [b]"),
                         ["pipeline.yaml", "steps: dependency cycle", "must form a DAG"]),
    "unknown dependency": ("project: mini\ndataset: {source: 'demo:iris', target: target}\nsteps:\n" +
                           GOOD_STEPS.replace("depends_on: [a]", "depends_on: [x]"),
                           ["pipeline.yaml", "steps[1].depends_on[0]: unknown step 'x'", "expected one of: a, b"]),
    "unknown step param": ("project: mini\ndataset: {source: 'demo:iris', target: target}\nsteps:\n" +
                           GOOD_STEPS.replace("depends_on: [a]", "depends_on: [a]\n    params: {nn: 3}"),
                           ["pipeline.yaml", "steps[1].params.nn: not a parameter of nbs/b.ipynb", "expected one of: n"]),
    "not yaml": ("project: [mini\n", ["pipeline.yaml", "not valid YAML"]),
    "missing target": ("project: mini\ndataset: {source: 'demo:iris'}\nsteps:\n" + GOOD_STEPS,
                       ["pipeline.yaml", "dataset.target: required key is missing"]),
}


@pytest.mark.parametrize("case", sorted(BAD_PIPELINES))
def test_bad_pipeline_file_exits_2_and_runs_nothing(tmp_path, case):
    text, expected = BAD_PIPELINES[case]
    root = mini_project(tmp_path / "p", {"a": ("n = 1\n", ["x = n"]), "b": ("n = 1\n", ["y = n"])}, GOOD_STEPS)
    (root / "pipeline.yaml").write_text(text)
    res = cli(root, "run")
    assert res.returncode == 2, res.stdout + res.stderr
    for e in expected: assert e in res.stderr, (e, res.stderr)
    assert "Traceback" not in res.stderr
    assert not (root / "store").exists() and not (root / "reports").exists()   # nothing ran, nothing recorded


@pytest.mark.parametrize("args, expected", [
    (["-p", "b.zz=1"], "'zz' is not a parameter of nbs/b.ipynb"),
    (["-p", "q.n=1"], "unknown step 'q'"),
    (["-p", "b.n"], "expected STEP.KEY=VALUE"),
    (["--only", "zz"], "--only zz: unknown step"),
])
def test_bad_arguments_exit_2(tmp_path, args, expected):
    root = mini_project(tmp_path / "p", {"a": ("n = 1\n", ["x = n"]), "b": ("n = 1\n", ["y = n"])}, GOOD_STEPS)
    res = cli(root, "run", *args)
    assert res.returncode == 2 and expected in res.stderr, res.stderr
    assert not (root / "store").exists()


def test_ctrl_c_ends_the_kernel_and_marks_runs_killed(tmp_path):
    root = mini_project(tmp_path / "p", {
        "a": ("", ["from mlops_wb.step import StepIO\nStepIO(step_dir, upstream).save('x', {'v': 1})"]),
        "slow": ("", ["import time\nprint('sleeping', flush=True)\ntime.sleep(120)"]),
    }, "  - {name: a, notebook: nbs/a.ipynb}\n  - {name: slow, notebook: nbs/slow.ipynb, depends_on: [a]}\n")
    proc = subprocess.Popen([str(CLI), "--project", str(root), "run"], cwd=root, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client, exp = client_for(root)
    deadline = time.time() + 120
    running, mine = [], set()
    while time.time() < deadline and not running:   # wait until the slow step's kernel is executing
        time.sleep(0.5)
        running = client.search_runs([exp], "tags.`mlops_wb.step` = 'slow' and attributes.status = 'RUNNING'")
        mine |= kernel_children(proc.pid)           # this run's kernels only: other tests run in parallel
        running = running if running and mine else []
        assert proc.poll() is None, proc.communicate()   # the run ended before its slow step: say why
    assert running, "the slow step never started"
    time.sleep(3)
    mine |= kernel_children(proc.pid)
    proc.send_signal(signal.SIGINT)
    try: out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:   # hung: the CLI dumps every thread's stack on SIGUSR1; show where
        sig = Path(f"/proc/{proc.pid}/status").read_text()
        sig = "\n".join(l for l in sig.splitlines() if l.startswith(("SigBlk", "SigIgn", "SigPnd", "ShdPnd", "SigCgt")))
        me = "\n".join(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(("SigBlk", "SigIgn")))
        proc.send_signal(signal.SIGUSR1); time.sleep(2); proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the interrupted run did not exit within 60 s; its signal state:\n{sig}\ntest process:\n{me}\nits threads:\n{err[-8000:]}")
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    slow = client.get_run(running[0].info.run_id)
    assert slow.info.status == "KILLED"
    parent = client.get_run(slow.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"
    time.sleep(1)
    assert alive(mine) == set(), "a kernel outlived the interrupted run"
