"""Cold vs fully cached pipeline runs, side by side, plus where a cold step's time goes.

Usage: .venv/bin/python bench/bench_cache.py [--repeat N]

In a temporary copy of the project, each repetition runs `mlops-wb run` on an empty store
(cold: every step executes) and then again with nothing changed (every step cached). It also
times the pieces a cold step pays for: the papermill CLI start-up (what one CLI call per step
would cost), the runner's in-process papermill import, and a fresh kernel executing one cell.
"""
import argparse, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import clean_env, copy_project  # noqa: E402


def timed(cmd, cwd):
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=clean_env())
    dt = time.perf_counter() - t
    if res.returncode != 0: sys.exit(f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}")
    return dt, res.stdout


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--repeat", type=int, default=3); a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlops-wb-bench-"))
    root = copy_project(tmp / "p", small=False)   # the default pipeline.yaml, its default tuning budget
    import yaml
    n_steps = len(yaml.safe_load((root / "pipeline.yaml").read_text())["steps"])
    cold, cached, tuning, trials = [], [], [], []
    for i in range(a.repeat):
        root = copy_project(tmp / f"p{i}", small=False)   # a fresh project and store each time (cold means cold)
        dt, out = timed([BIN / "mlops-wb", "--project", root, "run"], root); cold.append(dt)
        assert out.count("│ ran ") == n_steps, out
        tr = _train_metrics(root); tuning.append(tr["tuning_seconds"]); trials.append(int(tr["trials"]))
        dt, out = timed([BIN / "mlops-wb", "--project", root, "run"], root); cached.append(dt)
        assert out.count("│ cached ") == n_steps, out
        print(f"repetition {i+1}: cold {cold[-1]:.2f} s, cached {cached[-1]:.2f} s", flush=True)

    pm_cli = statistics.median(timed([BIN / "papermill", "--version"], tmp)[0] for _ in range(3))
    pm_imp = statistics.median(timed([sys.executable, "-c", "import sys; sys.modules['rfc3987_syntax']=None; import papermill"], tmp)[0] for _ in range(3))
    kern = statistics.median(timed([sys.executable, "-c", KERNEL], tmp)[0] for _ in range(3))
    shutil.rmtree(tmp, ignore_errors=True)

    c, k = statistics.median(cold), statistics.median(cached)
    print()
    print(f"{f'default pipeline ({n_steps} steps), median of {a.repeat}':<48} {'seconds':>8}")
    print(f"{'cold: every step executed':<48} {c:8.2f}")
    print(f"{'fully cached: nothing changed':<48} {k:8.2f}")
    print(f"{'cached / cold':<48} {k / c:8.1%}")
    print(f"{f'of cold: tuning in the train step ({trials[0]} trials)':<48} {statistics.median(tuning):8.2f}")
    print()
    print(f"{'per-step costs':<48} {'seconds':>8}")
    print(f"{'papermill CLI start-up (papermill --version)':<48} {pm_cli:8.2f}")
    print(f"{'papermill import in-process, grammar switched off':<48} {pm_imp:8.2f}")
    print(f"{'fresh kernel: start, run one cell, shut down':<48} {kern:8.2f}")


def _train_metrics(root):
    from mlops_wb.config import load_settings
    from mlops_wb.tracking import connect
    client, exp = connect(load_settings(root, env={}))
    run = client.search_runs([exp], "tags.`mlops_wb.step` = 'train' and tags.`mlops_wb.cached` = 'false'", max_results=1,
                             order_by=["attributes.start_time DESC"])[0]
    return run.data.metrics


KERNEL = """
import sys, time; sys.modules['rfc3987_syntax'] = None
import nbformat
from nbclient import NotebookClient
nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell('1+1')]
t = time.perf_counter(); NotebookClient(nb, kernel_name='python3').execute()
"""

if __name__ == "__main__": main()
