"""Time to first full render of each dashboard as the store grows: 50 against 500 pipeline runs.

Usage: .venv/bin/python bench/bench_dashboards.py [--runs 50,500] [--repeat 3]

One real pipeline run (small tuning budget) registers a version, a second run registers the
challenger, and `mlops-wb monitor` records a drift window; the store is then copied once per
size and filled with synthetic pipeline runs shaped like the runner's (a parent run, 7 step
runs with params and metrics, 4 trials under train) up to the wanted count. For each size,
`mlops-wb dashboard` serves the copy and Debian's chromium (Playwright) opens each dashboard
`--repeat` times; the time runs from navigation until the page's content is on screen
(experiments: the runs table; promotion: the side-by-side table and its ROC plot; drift: the
drift table and its plots). Fastest of the repeats is printed, with the ratio between sizes:
a paged view should not grow with the number of runs.
"""
import argparse, json, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import clean_env, copy_project  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PAGES = {"experiments": ["table.runs-table"], "promotion": ["table.compare-table", ".js-plotly-plot"],
         "drift": ["table.drift-table", ".js-plotly-plot"]}


def env():
    e = clean_env(); e["MLOPS_WB_USER"] = e["MLOPS_WB_APPROVERS"] = "bench"; return e


def cli(root, *args):
    res = subprocess.run([str(BIN / "mlops-wb"), "--project", str(root), *args], cwd=root, capture_output=True, text=True, env=env())
    if res.returncode != 0: sys.exit(f"mlops-wb {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")


def seed(root):
    from mlops_wb.data import load_demo
    cli(root, "run"); cli(root, "promote", "mlops-wb-model", "1", "--reason", "bench"); cli(root, "run", "-p", "train.seed=7")
    X = load_demo("breast_cancer").drop(columns="target").sample(300, random_state=1)
    X[list(X.columns[:20])] *= 1.6
    X.to_csv(root / "shifted.csv", index=False)
    cli(root, "monitor", "mlops-wb-model/1", "--data", "shifted.csv")


def fill(root, n_total):
    """Synthetic pipeline runs up to n_total, written straight to the store with log_batch."""
    from mlflow.entities import Metric, Param
    from mlops_wb.config import load_settings
    from mlops_wb.tracking import connect
    client, exp = connect(load_settings(root, env={}))
    have = len(client.search_runs([exp], "tags.`mlops_wb.kind` = 'pipeline'", max_results=1000))
    steps = ["ingest", "validate", "split", "eda", "train", "evaluate", "register"]
    for i in range(n_total - have):
        p = client.create_run(exp, run_name=f"synthetic-{i}", tags={"mlops_wb.kind": "pipeline", "mlops_wb.duration": "30.0",
                              "mlops_wb.summary": json.dumps([{"step": s, "status": "cached" if s != "train" else "ran"} for s in steps])})
        for s in steps:
            r = client.create_run(exp, run_name=s, tags={"mlops_wb.kind": "step", "mlops_wb.step": s, "mlflow.parentRunId": p.info.run_id})
            client.log_batch(r.info.run_id, metrics=[Metric("score", 0.9 + (i % 7) / 100, 0, 0)],
                             params=[Param("seed", str(i)), Param("family", ["linear", "random_forest"][i % 2])])
            if s == "train":
                for k in range(4):
                    t = client.create_run(exp, run_name=f"trial-{k}", tags={"mlflow.parentRunId": r.info.run_id})
                    client.log_batch(t.info.run_id, metrics=[Metric("cv_score", 0.9 + k / 100, 0, 0)], params=[Param("C", str(k + 1))])
                    client.set_terminated(t.info.run_id)
            client.set_terminated(r.info.run_id)
        client.set_terminated(p.info.run_id)


def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def render_times(root, repeat):
    from playwright.sync_api import sync_playwright
    port = free_port()
    proc = subprocess.Popen([str(BIN / "mlops-wb"), "--project", str(root), "dashboard", "--port", str(port)], cwd=root, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try: urllib.request.urlopen(base + "/voila/tree", timeout=2); break
        except OSError: time.sleep(0.5)
    out = {}
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            for name, sels in PAGES.items():
                ts = []
                for _ in range(repeat):
                    page = b.new_page(viewport={"width": 1400, "height": 2400}); page.set_default_timeout(180_000)
                    t = time.perf_counter()
                    page.goto(f"{base}/voila/render/nbs/dashboards/{name}.ipynb", wait_until="commit")
                    for s in sels: page.wait_for_selector(s)
                    ts.append(time.perf_counter() - t)
                    page.close()
                out[name] = min(ts)
            b.close()
    finally:
        proc.terminate(); proc.wait(30)
    return out


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--runs", default="50,500"); ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    sizes = [int(x) for x in a.runs.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="mlops-wb-bench-dash-"))
    base = copy_project(tmp / "seed", gate={"thresholds": {"roc_auc": 0.8}, "tolerance": 0.5})   # v2 passes against v1
    t = time.perf_counter(); seed(base); print(f"seeded 2 real pipeline runs and a monitoring run in {time.perf_counter() - t:.0f} s", flush=True)
    res = {}
    for n in sizes:
        root = tmp / f"p{n}"; shutil.copytree(base, root)
        t = time.perf_counter(); fill(root, n); print(f"{n} pipeline runs in the store (filled in {time.perf_counter() - t:.0f} s)", flush=True)
        res[n] = render_times(root, a.repeat)
    print(f"\ntime to first full render, fastest of {a.repeat} (seconds; Voila starts a kernel per page view)")
    print(f"{'dashboard':<12}" + "".join(f"{str(n) + ' runs':>12}" for n in sizes) + f"{'ratio':>9}")
    for name in PAGES:
        r = [res[n][name] for n in sizes]
        print(f"{name:<12}" + "".join(f"{v:>12.2f}" for v in r) + f"{r[-1] / r[0]:>8.2f}x")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
