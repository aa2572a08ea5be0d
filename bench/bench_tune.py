"""Wall time of tuning with tuning.parallel 1 vs 2 on a LocalCluster of 2 workers.

    .venv/bin/python bench/bench_tune.py [rows] [trials] [prune|noprune]

random_forest on a generated binary data set (20 numeric columns), 3-fold CV; pruning on unless the third argument is noprune.
Prints the seconds of each setting and the speed-up; not a timed assertion.
"""
import sys, time, tempfile
import pandas as pd
from sklearn.datasets import make_classification
from mlops_wb.cluster import dask_cluster, ClusterSpec
from mlops_wb.train import tune

def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    prune = (sys.argv[3] if len(sys.argv) > 3 else "prune") == "prune"   # "noprune": every trial runs all folds
    X, y = make_classification(rows, 20, n_informative=10, random_state=0)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)]).assign(target=y)
    cands = [{"family": "random_forest", "params": {"n_estimators": {"low": 20, "high": 60}}}]
    out = {}
    with dask_cluster(ClusterSpec("local", 2, "1GiB"), tempfile.mkdtemp()) as client:
        for parallel in (1, 2):
            t0 = time.time()
            r = tune(df, "target", "binary", cands, trials=trials, cv=3, prune=prune, parallel=parallel, client=client)
            out[parallel] = time.time() - t0
            print(f"parallel {parallel}: {out[parallel]:6.1f} s  ({len(r.trials)} trials, "
                  f"cv roc_auc {r.cv_score:.4f}, {r.best['random_forest']['pruned']} pruned)", flush=True)
    print(f"speed-up: {out[1] / out[2]:.2f}x  ({rows} rows, {trials} trials, 2 workers)")

if __name__ == "__main__": main()
