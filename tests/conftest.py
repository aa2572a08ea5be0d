"""Shared fixtures: temporary copies of the project, the CLI as a subprocess, the tracking store."""
import json, os, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "mlops-wb"
PROJECT_FILES = ["pipeline.yaml", "settings.ini", "nbs/pipeline", "nbs/dashboards"]


# Tests keep the default pipeline's shape (every candidate family, tuning, importance, slices)
# on a small budget; the default budget is measured by bench/ and `make run`.
SMALL_BUDGET = {
    "candidates": [{"family": "linear"}, {"family": "random_forest", "params": {"n_estimators": {"low": 10, "high": 30}}},
                   {"family": "gradient_boosting", "params": {"max_iter": {"low": 20, "high": 50}}}],
    "tuning": {"trials": 2, "cv": 3},
    "evaluation": {"slices": [], "importance_repeats": 2},
}


# One candidate family for tests about what happens around a run (reports, CI files, bundles), not about tuning:
# a run takes about two thirds of the time of SMALL_BUDGET's.
ONE_FAMILY = {"candidates": [{"family": "linear"}], "evaluation": {"slices": [], "importance_repeats": 1}}


def copy_project(dst: Path, small: bool = True, **spec_changes) -> Path:
    """A copy of the project's pipeline (pipeline.yaml, settings.ini, step notebooks) in its own git repo;
    `small` puts tuning on a small budget, `spec_changes` replace top-level sections of pipeline.yaml."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in PROJECT_FILES:
        src = REPO / f
        if src.is_dir(): shutil.copytree(src, dst / f)
        else: shutil.copy2(src, dst / f)
    if small or spec_changes:
        spec = yaml.safe_load((dst / "pipeline.yaml").read_text())
        spec.update({**(SMALL_BUDGET if small else {}), **spec_changes})
        (dst / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=test"]
    subprocess.run(git + ["init", "-q"], cwd=dst, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dst, check=True)
    subprocess.run(git + ["commit", "-qm", "project"], cwd=dst, check=True)
    return dst


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_WB_", "MLFLOW_"))}
    env["NO_COLOR"] = "1"
    return env


def cli(project: Path, *args, cwd=None, timeout=600, env=None):
    """Run `mlops-wb --project PROJECT ARGS` and return the CompletedProcess."""
    cmd = [str(CLI), "--project", str(project), *args] if project else [str(CLI), *args]
    return subprocess.run(cmd, cwd=cwd or project, capture_output=True, text=True, timeout=timeout, env=env or clean_env())


def client_for(project: Path):
    """An MlflowClient on the project's embedded store, and the experiment id."""
    from mlops_wb.config import load_settings
    from mlops_wb.tracking import connect
    return connect(load_settings(project, env={}))


def write_notebook(path: Path, params: str, *cells: str):
    """A step notebook with a `parameters` cell and the given code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(params); p.metadata["tags"] = ["parameters"]
    nb.cells = [p] + [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


INJECTED = 'run_id = ""\npipeline_run_id = ""\nstep_dir = "step"\nupstream = {}\nproject_root = "."\n'


def mini_project(dst: Path, steps: dict, yaml_steps: str) -> Path:
    """A small project: notebooks {name: (params, [cells])} and the steps section of pipeline.yaml."""
    dst.mkdir(parents=True, exist_ok=True)
    for name, (params, cells) in steps.items():
        write_notebook(dst / f"nbs/{name}.ipynb", params + INJECTED, *cells)
    (dst / "pipeline.yaml").write_text(
        'project: mini\ndataset: {source: "demo:iris", target: target}\nsteps:\n' + yaml_steps)
    return dst


def kernel_children(pid: int) -> set:
    """Pids of the Jupyter kernels started by process `pid` (tests run in parallel: never look at other tests' kernels)."""
    import psutil
    try: kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error: return set()
    out = set()
    for k in kids:
        try:
            if "ipykernel_launcher" in " ".join(k.cmdline()): out.add(k.pid)
        except psutil.Error: pass
    return out


def alive(pids: set) -> set:
    import psutil
    return {p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}


def gate_copy(root: Path, data: Path, target="label", extra=None) -> Path:
    """A copy of the project running only ingest and validate on `data`."""
    copy_project(root)
    spec = yaml.safe_load((root / "pipeline.yaml").read_text())
    spec["project"] = "gate"
    spec["dataset"] = {"source": str(data.relative_to(root)), "target": target, "task": "auto"}
    spec["steps"] = spec["steps"][:2]
    spec.update(extra or {})
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return root


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nothing listens on right now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def start_http(cmd: list, url: str, cwd=None, env=None, timeout: float = 90, what: str = "server") -> subprocess.Popen:
    """Start `cmd` (stdout and stderr piped) and wait until `url` answers; if the process dies first or
    `timeout` seconds pass, the test fails with its output."""
    # Its own process group: on a timeout the whole group is killed, so a child it started (the `mlflow ui` behind
    # `mlops-wb ui`) cannot keep the output pipe open and turn a failed start into a hung test.
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env or clean_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout
    while True:
        try: urllib.request.urlopen(url, timeout=2); return proc
        except OSError:
            if proc.poll() is not None: raise AssertionError(f"{what} exited with {proc.returncode}:\n{proc.stdout.read()}")
            if time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"{what} did not answer {url} within {timeout:.0f} s:\n{proc.stdout.read()}")
            time.sleep(0.3)
