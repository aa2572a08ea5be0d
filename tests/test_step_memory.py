"""A step whose kernel dies (the OOM killer, or over `step_memory_limit`) fails the run with a plain message."""
import os, re, signal, subprocess, time
from pathlib import Path

from conftest import CLI, alive, clean_env, cli, client_for, kernel_children, mini_project

ONE_STEP = "  - {name: ingest, notebook: nbs/ingest.ipynb}\n"


def _runs(root):
    "The project's only pipeline run and its step run, from the tracking store."
    client, exp = client_for(root)
    parent, = client.search_runs([exp], "tags.`mlops_wb.kind` = 'pipeline'")
    step, = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, step


def _error_line(stderr):
    lines = [l for l in stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0][len("error: "):]


def test_a_kernel_killed_by_sigkill_is_said_to_be_most_likely_out_of_memory(tmp_path):
    # the step says which process it runs in, then sleeps; the test kills that kernel as the OOM killer would
    root = mini_project(tmp_path / "p", {"ingest": ("", [
        "import os, pathlib, time\n"
        "pathlib.Path(project_root, 'kernel.pid').write_text(str(os.getpid()))\n"
        "time.sleep(120)"])}, ONE_STEP)
    proc = subprocess.Popen([str(CLI), "--project", str(root), "run"], cwd=root, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_file, deadline = root / "kernel.pid", time.time() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None, proc.communicate()   # the run ended before its step slept: say why
        assert time.time() < deadline, "the step never started"
        time.sleep(0.2)
    pid = int(pid_file.read_text())
    mine = kernel_children(proc.pid)
    assert pid in mine, (pid, mine)   # it is this run's kernel, found in the runner's process tree
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 1, (out, err)
    line = _error_line(err)
    print(line)
    m = re.match(r"step 'ingest' was killed by signal 9 \(SIGKILL\), most likely out of memory: its kernel "
                 rf"\(pid {pid}\) peaked at (\d+) MiB of this (machine|container)'s (\d+) MiB; free memory on this "
                 r"machine, or set dask_scheduler = local in settings.ini to run data steps on a Dask cluster; "
                 r"step_memory_limit has the runner stop a step before the system must -- executed notebook: (.+)$",
                 line)
    assert m, line
    assert 0 < int(m[1]) < int(m[3])
    assert "DeadKernelError" not in err and "Traceback" not in err
    parent, step = _runs(root)
    assert (parent.info.status, step.info.status) == ("FAILED", "FAILED")
    assert step.data.tags["mlops_wb.error"] == line
    assert alive(mine) == set(), "a kernel outlived the run"


def test_a_step_over_step_memory_limit_is_killed_and_said_out_of_memory(tmp_path):
    # the step grows by 20 MB every 0.05 s up to 2 GB: far past the limit, unless the runner stops it first
    root = mini_project(tmp_path / "p", {"ingest": ("", [
        "import time\n"
        "hold = []\n"
        "for _ in range(100):\n"
        "    hold.append(b'x' * 20_000_000)\n"
        "    time.sleep(0.05)"])}, ONE_STEP)
    (root / "settings.ini").write_text("[workbench]\nstep_memory_limit = 400MiB\n")
    res = cli(root, "run", timeout=180)

    assert res.returncode == 1, (res.stdout, res.stderr)
    line = _error_line(res.stderr)
    print(line)
    m = re.match(r"step 'ingest' was killed: out of memory \(its kernel, pid (\d+), peaked at (\d+) MiB; "
                 r"step_memory_limit is 400 MiB\); set step_memory_limit higher, or dask_scheduler = local in "
                 r"settings.ini to run data steps on a Dask cluster -- executed notebook: (.+)$", line)
    assert m, line
    assert int(m[2]) > 400, line                  # the peak it was killed at is over the limit
    assert Path(m[3]).name == "ingest.ipynb"
    assert not alive({int(m[1])})                  # the kernel is gone
    parent, step = _runs(root)
    assert (parent.info.status, step.info.status) == ("FAILED", "FAILED")
    assert step.data.tags["mlops_wb.error"] == line
