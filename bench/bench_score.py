"""Batch scoring of a generated 1,000,000-row file: wall time and peak memory of `mlops-wb score`.

Usage: .venv/bin/python bench/bench_score.py [--rows 1000000] [--format csv|parquet]

Generates rows shaped like the bundled breast-cancer data (30 numeric columns), registers a model
in a temporary project, and runs `mlops-wb score NAME/1 IN OUT` as a child process, sampling its
resident memory (psutil) every 50 ms. For comparison it runs the naive approach in a child too:
pandas reads the whole file, the pyfunc model scores it at once, pandas writes the result.
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

BIN = Path(sys.executable).parent
NAIVE = """
import sys, mlflow, pandas as pd
df = pd.read_csv(sys.argv[1]) if sys.argv[1].endswith('.csv') else pd.read_parquet(sys.argv[1])
m = mlflow.pyfunc.load_model(sys.argv[2])
df.assign(prediction=m.predict(df)).to_parquet(sys.argv[3])
"""


def peak(cmd, env, cwd):
    t = time.perf_counter()
    p = psutil.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    top = 0
    while p.poll() is None:
        try: top = max(top, sum(x.memory_info().rss for x in [p] + p.children(recursive=True)))
        except psutil.Error: pass
        time.sleep(0.05)
    out, err = p.communicate()
    if p.returncode: sys.exit(f"{cmd} failed: {err.decode()[-2000:]}")
    return time.perf_counter() - t, top


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--rows", type=int, default=1_000_000); ap.add_argument("--format", default="csv")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlops-wb-bench-score-"))
    (root / "pipeline.yaml").write_text((Path(__file__).resolve().parents[1] / "pipeline.yaml").read_text())
    from mlops_wb.config import load_settings
    from mlops_wb.data import load_demo
    from mlops_wb.registry import register_model
    from mlops_wb.tracking import connect
    from mlops_wb.train import fit_model
    client, eid = connect(load_settings(root, env={}))
    df = load_demo("breast_cancer"); X = df.drop(columns="target")
    register_model(fit_model(df, "target", max_iter=2000), X.head(5), client.create_run(eid).info.run_id, "bench")
    rng = np.random.default_rng(0)
    big = pd.DataFrame(X.to_numpy()[rng.integers(0, len(X), a.rows)] * rng.normal(1, 0.05, (a.rows, X.shape[1])), columns=X.columns)
    inp = root / f"in.{a.format}"
    big.to_csv(inp, index=False) if a.format == "csv" else big.to_parquet(inp)
    size = inp.stat().st_size; del big
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_WB_", "MLFLOW_"))}
    t1, m1 = peak([str(BIN / "mlops-wb"), "--project", str(root), "score", "bench/1", str(inp), str(root / "out.parquet")], env, root)
    env2 = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/store/mlflow.db"}
    t2, m2 = peak([sys.executable, "-c", NAIVE, str(inp), "models:/bench/1", str(root / "naive.parquet")], env2, root)
    n = len(pd.read_parquet(root / "out.parquet", columns=["model_version"]))
    assert n == a.rows, n
    print(f"{a.rows:,} rows x {X.shape[1]} columns, {a.format} {size / 2**20:.0f} MiB")
    print(f"{'':<34} {'seconds':>8} {'peak MiB':>9}")
    print(f"{'mlops-wb score (chunks of 50,000)':<34} {t1:8.1f} {m1 / 2**20:9.0f}")
    print(f"{'pandas + pyfunc, whole file':<34} {t2:8.1f} {m2 / 2**20:9.0f}")
    print(f"{'ratio (mlops-wb / naive)':<34} {t1 / t2:8.2f} {m1 / m2:9.2f}")


if __name__ == "__main__": main()
