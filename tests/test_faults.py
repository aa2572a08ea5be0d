"""Fault injection with real processes (issue 14): kill -9 of `mlops-wb run` at several points, Ctrl-C with a
tuning trial open, two runs at once, a store that goes read-only mid-run, a locked, full or unreachable store,
kill -9 of `mlops-wb serve` during a hot swap.
After each fault: no RUNNING run once something has looked at the store, no partial report left unmarked,
and the next `mlops-wb run` succeeds. The store is read with sqlite3, so observing it ends nothing."""
import json, os, signal, sqlite3, subprocess, time
from pathlib import Path

import pytest
from conftest import CLI, alive, clean_env, cli, free_port, kernel_children, mini_project

# step a: an output, a snapshot (its write can be made to kill the runner and the kernel mid-way);
# step slow: opens a tuning-trial-like nested run, then waits while the file `gate` exists, then ends the trial.
A_CELL = """
import os, signal
from pathlib import Path
import pandas as pd
from mlops_wb.step import StepIO
from mlops_wb.data import SnapshotStore
io = StepIO(step_dir, upstream)
store = SnapshotStore.for_project(project_root)
if Path(project_root, "die_in_snapshot").exists():   # kill -9 of the runner and this kernel during the upload
    def die(*a, **k):
        os.kill(os.getppid(), signal.SIGKILL); os.kill(os.getpid(), signal.SIGKILL)
    store.client.log_artifacts = die
io.save_snapshot("data", pd.DataFrame({"v": range(50 * n)}), store)
io.save("x", {"n": n})
"""
SLOW_CELLS = ["""
import time
from pathlib import Path
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
c = MlflowClient()
trial = c.create_run(c.get_run(run_id).info.experiment_id, run_name="trial-0",
                     tags={MLFLOW_PARENT_RUN_ID: run_id, "mlops_wb.kind": "trial"}).info.run_id
Path(project_root, "trial_open").write_text(trial)
""", """
while Path(project_root, "gate").exists(): time.sleep(0.2)
c.set_terminated(trial, "FINISHED")
"""]
_KERNELS = set()
STEPS = "  - {name: a, notebook: nbs/a.ipynb}\n  - {name: slow, notebook: nbs/slow.ipynb, depends_on: [a]}\n"


@pytest.fixture
def project(tmp_path):
    root = mini_project(tmp_path / "p", {"a": ("n = 1\n", [A_CELL]), "slow": ("", SLOW_CELLS)}, STEPS)
    yield root
    for p in alive(_KERNELS): os.kill(p, signal.SIGKILL)   # kernels a killed runner left behind
    _KERNELS.clear()


def _db(root: Path) -> Path: return root / "store" / "mlflow.db"


def _q(root: Path, sql: str, *args) -> list:
    con = sqlite3.connect(f"file:{_db(root)}?mode=ro", uri=True, timeout=10)
    try: return con.execute(sql, args).fetchall()
    finally: con.close()


def _runs(root: Path) -> list:
    "(name, status, kind, end reason) of every run in the store, every experiment."
    return _q(root, """select r.name, r.status,
                         (select value from tags t where t.run_uuid = r.run_uuid and t.key = 'mlops_wb.kind'),
                         (select value from tags t where t.run_uuid = r.run_uuid and t.key = 'mlops_wb.end_reason')
                       from runs r where r.lifecycle_stage = 'active' order by r.start_time""")


def _start(root: Path, *args) -> subprocess.Popen:
    "`mlops-wb run ARGS` in its own process group, as a terminal starts it."
    return subprocess.Popen([str(CLI), "--project", str(root), "run", *args], cwd=root, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _until(what: str, pred, proc=None, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred(): return
        if proc is not None and proc.poll() is not None: pytest.fail(f"{what}: the run ended first: {proc.communicate()}")
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout} s")


def _status_of(root: Path, name: str) -> list:
    return [s for n, s, *_ in _runs(root) if n == name] if _db(root).exists() else []


def _kill9(root: Path, proc: subprocess.Popen):
    _KERNELS.update(kernel_children(proc.pid))
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def _consistent(root: Path):
    "No RUNNING run in the workbench's experiment; every killed step's report is marked partial."
    left = [r for r in _runs(root) if r[1] == "RUNNING" and r[2] in ("pipeline", "step", "trial")]
    assert left == [], left
    for rid, step in _q(root, """select t.value, s.value from runs r join tags t on t.run_uuid = r.run_uuid
                                 and t.key = 'mlops_wb.pipeline' join tags s on s.run_uuid = r.run_uuid
                                 and s.key = 'mlops_wb.step' where r.status = 'KILLED'"""):
        nb = root / "reports" / rid / f"{step}.ipynb"
        if nb.exists():
            first = json.loads(nb.read_text())["cells"][0]
            assert "mlops_wb-partial" in first["metadata"].get("tags", []), nb


def _mount_tmpfs(path: Path, size="8m") -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


@pytest.fixture
def tmpfs_store(project):
    "The project's store on its own small tmpfs, which a test can turn read-only or fill (needs root: mount)."
    mnt = project / "store"
    if os.geteuid() != 0 or not _mount_tmpfs(mnt): pytest.skip("needs root to mount a tmpfs")
    yield project
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _read_only(folder: Path) -> bool:
    "Make `folder` read-only for everyone, root included: a read-only bind mount of it over itself."
    if os.geteuid() != 0: return False
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode: return False
    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
    return True


@pytest.fixture
def unmount():
    "Folders a test mounted over; unmounted at its end, passed or not."
    mounted = []
    yield mounted
    for m in mounted: subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_faults_in_a_row_leave_a_consistent_store_and_the_next_run_succeeds(project, unmount):
    """On one project, one fault after another: kill -9 during a step with a trial open, during a snapshot write,
    between steps; the store turned read-only mid-run; two runs at once. Each next look ends what the fault left."""
    root = project
    gate, opened = root / "gate", root / "trial_open"
    # 1. kill -9 during a step, with a trial open; `status` is the next look
    gate.write_text("")
    proc = _start(root)
    _until("the trial opened", opened.exists, proc)
    _kill9(root, proc)
    assert sorted(s for n, s, k, _ in _runs(root) if k in ("pipeline", "step", "trial") and n != "a") == ["RUNNING"] * 3
    st = cli(root, "status")
    assert st.returncode == 0 and "KILLED" in st.stdout and "slow:killed" in st.stdout, st.stdout + st.stderr
    _consistent(root)
    reasons = {n: why for n, s, k, why in _runs(root) if s == "KILLED"}
    assert {"slow", "trial-0"} < set(reasons) and len(reasons) == 3, reasons
    assert all("is gone" in why and f"pid {proc.pid}" in why for why in reasons.values()), reasons
    assert list((root / "reports").glob("*/slow.html")), "the killed step has no page saying so"
    # 2. kill -9 during a snapshot write: the runner and the step's kernel die in the upload
    (root / "die_in_snapshot").write_text("")
    proc = _start(root, "-p", "a.n=2")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert "RUNNING" in _status_of(root, "a")
    (root / "die_in_snapshot").unlink()
    # 3. kill -9 between steps: as soon as step a has ended (this run's start was the look that ended run 2)
    proc = _start(root, "-p", "a.n=3")
    _until("step a ended", lambda: _q(root, "select count(*) from runs r join params p on p.run_uuid = r.run_uuid "
                                             "and p.key = 'n' and p.value = '3' where r.status = 'FINISHED'")[0][0], proc)
    _kill9(root, proc)
    # 4. the store turns read-only while a step runs: one line, exit 2; a run on it refuses the same way
    opened.unlink()
    proc = _start(root, "-p", "a.n=2")
    _until("the trial opened", opened.exists, proc)
    mounted = _read_only(root / "store")
    if mounted: unmount.append(root / "store")
    gate.unlink()                                           # the step ends; nothing can be recorded now
    out, err = proc.communicate(timeout=120)
    if mounted:
        assert proc.returncode == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"tracking store sqlite:///{root}/store/mlflow.db" in lines[0], err
        assert "make it and its folder writable" in lines[0] and "Traceback" not in err + out, err
        ro = cli(root, "run")
        assert ro.returncode == 2 and "make it and its folder writable" in ro.stderr and "Traceback" not in ro.stderr
        subprocess.run(["umount", str(root / "store")], check=True)   # writable again
        unmount.clear()
    # 5. two runs at once: the second refuses naming the first; one with --wait starts when it ends
    gate.write_text(""); opened.unlink()
    first = _start(root)
    _until("the first run's slow step", opened.exists, first)
    second = cli(root, "run")
    assert second.returncode == 2, second.stdout + second.stderr
    assert "holds the run lock" in second.stderr and f"pid {first.pid} on" in second.stderr, second.stderr
    assert "--wait" in second.stderr and "Traceback" not in second.stderr
    waiter = _start(root, "--wait")
    _until("the waiter says it waits", lambda: _waiting(waiter), waiter, timeout=60)
    gate.unlink()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err                 # the next run after all those faults succeeds
    out, err = waiter.communicate(timeout=120)
    out = waiter._seen + out
    assert waiter.returncode == 0, out + err
    assert "↺ cached" in out and "✓ ran" not in out, out    # it started after the first ended: nothing done twice
    _consistent(root)
    assert [r for r in _runs(root) if r[1] == "RUNNING"] == []   # the abandoned snapshot write too
    finished = _q(root, "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid and t.key = 'mlops_wb.kind' "
                        "and t.value = 'snapshot' where r.status = 'FINISHED'")[0][0]
    assert finished == 3, _runs(root)   # n = 1, 3 and 2: the snapshot cut off mid-write was written whole later


def test_ctrl_c_with_a_trial_open_ends_every_run_in_one_line(tmp_path):
    root = mini_project(tmp_path / "p", {"slow": ("", SLOW_CELLS)}, "  - {name: slow, notebook: nbs/slow.ipynb}\n")
    (root / "gate").write_text("")
    proc = _start(root)
    _until("the trial opened", lambda: (root / "trial_open").exists(), proc)
    time.sleep(1)
    _KERNELS.update(kernel_children(proc.pid))
    os.killpg(proc.pid, signal.SIGINT)                     # Ctrl-C: the whole foreground group, kernels included
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err + out, err
    _consistent(root)                                       # no look needed: the run itself ended them
    assert {n: s for n, s, *_ in _runs(root) if n in ("slow", "trial-0")} == {"slow": "KILLED", "trial-0": "KILLED"}
    # and a store another process holds locked: one line naming it
    con = sqlite3.connect(_db(root), isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try: res = cli(root, "status")
    finally: con.execute("ROLLBACK"); con.close()
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "is locked by another process" in lines[0] and str(_db(root)) in lines[0], res.stderr


def _waiting(proc) -> bool:
    "True once the --wait run has printed its waiting line (read without blocking on the rest)."
    import selectors
    sel = selectors.DefaultSelector(); sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(0): return False
    line = proc.stdout.readline()
    proc._seen = getattr(proc, "_seen", "") + line
    return "waiting for the run lock" in proc._seen


def test_full_disk_is_one_line(tmpfs_store):
    root = tmpfs_store
    with open(root / "store" / "filler", "wb") as f:
        try:
            while True: f.write(b"\0" * (1 << 20))
        except OSError: pass
    res = cli(root, "run")
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "is full; free some space and retry" in lines[0] and "Traceback" not in res.stderr, res.stderr
    (root / "store" / "filler").unlink()
    st = cli(root, "status")                                # space again: the store works, nothing half-recorded
    assert st.returncode == 0 and "No pipeline runs yet" in st.stdout, st.stdout + st.stderr


def test_unreachable_tracking_server_is_one_line(project):
    env = clean_env() | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    res = cli(project, "run", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "the tracking server does not answer" in lines[0], res.stderr
    assert not (project / "reports").exists()


def test_explain_creates_no_store(project):
    missing = project / "nowhere" / "deeper"
    env = clean_env() | {"MLFLOW_TRACKING_URI": f"sqlite:///{missing}/mlflow.db"}
    res = cli(project, "run", "--explain", env=env)
    assert res.returncode == 0 and "would run" in res.stdout, res.stdout + res.stderr
    assert not (project / "nowhere").exists() and not (project / "store").exists()


def test_kill9_during_a_hot_swap_then_the_restarted_server_serves_the_champion(tmp_path):
    """kill -9 of `mlops-wb serve` while it loads the version @champion just moved to (its /admin/reload under way):
    the restarted server serves the registry's @champion, and scores with it."""
    import urllib.request
    from conftest import client_for, copy_project, start_http
    from mlops_wb.data import load_demo
    from mlops_wb.registry import register_model
    from mlops_wb.train import fit_model
    root = copy_project(tmp_path / "p")
    client, exp = client_for(root)
    df = load_demo("breast_cancer"); X = df.drop(columns="target")
    for C in (1.0, 0.05):
        register_model(fit_model(df, "target", family="linear", C=C, max_iter=2000), X.head(5),
                       client.create_run(exp).info.run_id, "mlops-wb-model")
    client.set_registered_model_alias("mlops-wb-model", "champion", "1")
    def serve():
        port = free_port(); base = f"http://127.0.0.1:{port}"
        return start_http([CLI, "--project", root, "serve", "--port", port, "--poll", "3600"], base + "/health",
                          cwd=root, what="mlops-wb serve"), base
    def ready(base): return json.loads(urllib.request.urlopen(base + "/ready", timeout=30).read())["versions"]
    proc, base = serve()
    assert ready(base)["champion"] == "1"
    client.set_registered_model_alias("mlops-wb-model", "champion", "2")
    req = urllib.request.Request(base + "/admin/reload", b"", method="POST")
    import threading
    threading.Thread(target=lambda: urllib.request.urlopen(req, timeout=60), daemon=True).start()
    time.sleep(0.3)                                          # the reload is loading version 2
    os.killpg(proc.pid, signal.SIGKILL); proc.wait(10)
    proc, base = serve()
    try:
        assert ready(base)["champion"] == "2"
        body = json.dumps({"dataframe_split": json.loads(X.head(3).to_json(orient="split", index=False))}).encode()
        r = urllib.request.urlopen(urllib.request.Request(base + "/invocations", body,
                                                          {"Content-Type": "application/json"}), timeout=30)
        out = json.loads(r.read())
        assert r.status == 200 and len(out["predictions"]) == 3 and out["model_version"] == "2", out
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(20)
