"""Scale-out: how time and memory per process grow with rows, in-process vs a Dask LocalCluster of 1 and 2 workers.

Usage: .venv/bin/python bench/bench_scale.py [--sizes 1000000,10000000] [--workers 1,2] [--memory-limit 2GiB]
                                             [--skip ingest,profile,drift,score,evidently,pandas] [--keep DIR]

For each size N it generates N rows x 25 columns (20 numeric, 5 categorical; a binary target) as partitioned
Parquet (files of --rows-per-file rows) and, for the in-process paths, the same rows as one Parquet file. A model
is trained once by `mlops-wb run` on a 50,000-row sample of the same generator (linear family, one trial), so it
has a registered version with its reference profile. Then, each in a child process whose process tree (the
command, its step kernels and its Dask workers) is sampled with psutil every 0.1 s:

- ingest+validate: `mlops-wb run` of a pipeline with only the ingest and validate steps, source = the data;
- profile: the reference profile of the data (what the register step stores with a model version):
  `reference_profile` of the single file in-process, `partitioned_profile` of the partitioned folder on the cluster;
- drift: `mlops-wb monitor MODEL --data DATA --no-retrain` (reads, predicts, drift of every column, report);
- score: `mlops-wb score MODEL DATA OUT`;
- run: `mlops-wb run` of the whole pipeline (ingest, validate, split, eda, train, evaluate, register) on the data:
  the end-to-end figure (train on at most tuning.max_rows = 1M rows; off with --skip run);
- pandas: `pandas.read_parquet` + `predict` of the whole file in one process (where it fits);
- evidently: Evidently's `Report([DataDriftPreset()])` of the file against the training sample, in its own venv
  (where it fits; a child killed or over --evidently-timeout is reported as such).

"in-process" is the workbench with dask_scheduler empty (the single file); "dask N" is dask_scheduler = local with
N workers of --memory-limit each (the partitioned folder). Figures: wall seconds (CLI start-up included), the
largest peak RSS of any one process of the tree, and the number of processes. Rows per second for score.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
EVIDENTLY_PY = REPO / ".venv" / "evidently" / "bin" / "python"
N_NUM, N_CAT = 20, 5
CATS = [list("abcde"), [f"k{i}" for i in range(12)], ["x", "y"], [f"c{i}" for i in range(30)], list("pqrs")]

PIPELINE = """project: scale
dataset: {{source: "{source}", target: target, task: binary}}
seed: 0
steps:
{steps}
validation: {{reference: none}}
candidates: [{{family: linear}}]
tuning: {{trials: 1, cv: 2, prune: false}}
evaluation: {{slices: [], importance_repeats: 1}}
gate: {{thresholds: {{roc_auc: 0.5}}, tolerance: 1.0}}
drift: {{}}
retrain: {{}}
"""
ALL_STEPS = [("ingest", []), ("validate", ["ingest"]), ("split", ["validate"]), ("train", ["split"]),
             ("evaluate", ["train", "split"]), ("register", ["evaluate", "train", "split"])]
RUN_STEPS = ALL_STEPS[:3] + [("eda", ["split"])] + ALL_STEPS[3:]   # the whole pipeline, for the `run` task

PROFILE = r"""
import sys, time, json
t = time.perf_counter()
from mlops_wb.monitor import reference_profile, partitioned_profile
from mlops_wb.cluster import ClusterSpec, dask_cluster
path, workers, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if workers == 0:
    import pandas as pd
    X = pd.read_parquet(path).drop(columns="target")
    prof = reference_profile(X)
else:
    from mlops_wb.data import read_source_dd
    with dask_cluster(ClusterSpec("local", workers, limit), sys.argv[4], announce=lambda _: None):
        prof = partitioned_profile(read_source_dd(path, "/").drop(columns="target"))
print(json.dumps(dict(rows=prof["rows"], seconds=time.perf_counter() - t)))
"""

PANDAS = r"""
import sys, time, mlflow, pandas as pd
from mlops_wb.models import load_model
mlflow.set_tracking_uri(sys.argv[3])
t = time.perf_counter()
df = pd.read_parquet(sys.argv[1])
m = load_model(sys.argv[2])
p = m.predict(df.drop(columns="target"))
print(len(p), time.perf_counter() - t)
"""


def gen_part(n, seed, shifted):
    "n rows of the generator; `shifted` moves 5 numeric and 2 categorical columns (the drift the check should find)."
    rng = np.random.default_rng(seed)
    d = {}
    for i in range(N_NUM):
        x = rng.normal(0, 1, n) if i % 2 else rng.gamma(2.0, 1.0, n)
        if shifted and i < 3: x = x + 0.5
        if shifted and i in (3, 4): x = x * 1.6
        d[f"num_{i:02d}"] = x
    for j, vals in enumerate(CATS):
        p = np.linspace(2, 1, len(vals)); p /= p.sum()
        if shifted and j < 2: p = p[::-1]
        d[f"cat_{j}"] = rng.choice(vals, n, p=p)
    df = pd.DataFrame(d)
    z = df["num_01"] + 0.5 * df["num_03"] - 0.3 * df["num_00"] + (df["cat_0"] == "a") * 0.8
    df["target"] = (z + rng.normal(0, 1, n) > z.mean()).astype("int64")
    return df


def write_data(folder: Path, rows: int, per_file: int, shifted: bool):
    "The partitioned folder and the single file of the same rows, written a file at a time (bounded memory)."
    part = folder / "parts"; part.mkdir(parents=True)
    writer = None
    for k, start in enumerate(range(0, rows, per_file)):
        df = gen_part(min(per_file, rows - start), 1000 + k, shifted)
        t = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(t, part / f"part-{k:05d}.parquet")
        writer = writer or pq.ParquetWriter(folder / "single.parquet", t.schema)
        writer.write_table(t)
    writer.close()
    return part, folder / "single.parquet"


def measure(cmd, env, cwd, timeout=None):
    "Wall seconds, the largest peak RSS of one process of the tree (MiB), processes seen, return code, stdout."
    t = time.perf_counter()
    log = open(Path(cwd) / "bench-child.log", "ab")
    p = psutil.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=log)
    peaks = {}
    import threading
    out = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True); reader.start()
    while p.poll() is None:
        try: procs = [p] + p.children(recursive=True)
        except psutil.Error: procs = [p]
        for x in procs:
            try: peaks[x.pid] = max(peaks.get(x.pid, 0), x.memory_info().rss)
            except psutil.Error: pass
        if timeout and time.perf_counter() - t > timeout:
            for x in procs:
                try: x.kill()
                except psutil.Error: pass
        time.sleep(0.1)
    reader.join(10)
    return dict(s=time.perf_counter() - t, peak_mib=max(peaks.values(), default=0) / 2**20, procs=len(peaks),
                rc=p.returncode, out=(out[0] if out else b"").decode(errors="replace"))


def project(root: Path, source: str, steps):
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "nbs" / "pipeline", root / "nbs" / "pipeline", dirs_exist_ok=True)
    lines = "\n".join(f"  - name: {n}\n    notebook: nbs/pipeline/{n}.ipynb" + (f"\n    depends_on: [{', '.join(d)}]" if d else "")
                      for n, d in steps)
    (root / "pipeline.yaml").write_text(PIPELINE.format(source=source, steps=lines))
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--workers", default="1,2", help="LocalCluster sizes to run (0 = skip the cluster)")
    ap.add_argument("--memory-limit", default="2GiB", help="per worker")
    ap.add_argument("--rows-per-file", type=int, default=250_000)
    ap.add_argument("--skip", default="", help="comma-separated: ingest, profile, drift, score, run, pandas, evidently")
    ap.add_argument("--in-process-max", type=int, default=10_000_000, help="largest size run in-process / pandas")
    ap.add_argument("--evidently-timeout", type=float, default=900)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="mlops-wb-bench-scale-")); tmp.mkdir(parents=True, exist_ok=True)
    env0 = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_WB_", "MLFLOW_"))}
    mlops = str(BIN / "mlops-wb")
    # the model: trained by the pipeline on a sample of the unshifted generator
    train = tmp / "train"; train.mkdir(exist_ok=True)
    gen_part(50_000, 1, False).to_parquet(train / "sample.parquet", index=False)
    mp = project(tmp / "model-project", str(train / "sample.parquet"), ALL_STEPS)
    r = measure([mlops, "--project", str(mp), "run"], env0, mp)
    if r["rc"]: sys.exit(f"training the bench model failed (see {mp}/bench-child.log)")
    model = "mlops-wb-model@challenger"
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        d = tmp / f"data-{n}"
        if not (d / "single.parquet").exists():
            shutil.rmtree(d, ignore_errors=True)
            t = time.perf_counter(); write_data(d, n, a.rows_per_file, True)
            print(f"  {n:,} rows generated in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        part, single = d / "parts", d / "single.parquet"
        modes = ([("in-process", 0)] if n <= a.in_process_max else []) + \
                [(f"dask {w}", w) for w in map(int, a.workers.split(",")) if w]
        for label, w in modes:
            env = dict(env0, **({"MLOPS_WB_DASK_SCHEDULER": "local", "MLOPS_WB_DASK_WORKERS": str(w),
                                 "MLOPS_WB_DASK_MEMORY_LIMIT": a.memory_limit} if w else {}))
            data = str(part if w else single)
            res = dict(rows=n, mode=label)
            if "ingest" not in skip:
                ip = project(tmp / f"ingest-{n}-{w}", data, ALL_STEPS[:2])
                res["ingest"] = measure([mlops, "--project", str(ip), "run", "--no-cache"], env, ip)
            if "profile" not in skip:
                res["profile"] = measure([str(BIN / "python"), "-c", PROFILE, data, str(w), a.memory_limit, str(tmp)], env0, tmp)
            if "drift" not in skip:
                res["drift"] = measure([mlops, "--project", str(mp), "monitor", model, "--data", data, "--no-retrain"], env, mp)
            if "score" not in skip:
                out = tmp / f"scored-{n}-{w}" / ("out" if w else "out.parquet")
                shutil.rmtree(out.parent, ignore_errors=True); out.parent.mkdir()
                res["score"] = measure([mlops, "--project", str(mp), "score", model, data, str(out)], env, mp)
                shutil.rmtree(out.parent, ignore_errors=True)
            if "run" not in skip:
                rp = project(tmp / f"run-{n}-{w}", data, RUN_STEPS)
                res["run"] = measure([mlops, "--project", str(rp), "run", "--no-cache"], env, rp)
            rows.append(res)
            print(f"  {n:,} {label}: " + ", ".join(f"{k} {v['s']:.1f}s/{v['peak_mib']:.0f}MiB" + ("" if v["rc"] == 0 else f" rc={v['rc']}")
                                                  for k, v in res.items() if isinstance(v, dict)), file=sys.stderr, flush=True)
        if n <= a.in_process_max:
            res = dict(rows=n, mode="baselines")
            if "pandas" not in skip:
                res["pandas"] = measure([str(BIN / "python"), "-c", PANDAS, str(single), f"models:/{model}",
                                         f"sqlite:///{mp}/store/mlflow.db"], env0, mp)
            if "evidently" not in skip and EVIDENTLY_PY.exists():
                res["evidently"] = measure([str(EVIDENTLY_PY), str(REPO / "tools" / "evidently_drift.py"),
                                            str(train / "sample.parquet"), str(single)], env0, tmp, a.evidently_timeout)
            rows.append(res)
    print(f"\n{N_NUM} numeric + {N_CAT} categorical columns (+ target); partitioned in files of {a.rows_per_file:,} rows; "
          f"dask N = LocalCluster of N workers x 1 thread, {a.memory_limit} each; 2-core machine; seconds include "
          f"CLI start-up; peak = largest peak RSS of one process (MiB); procs = processes in the tree")
    head = f"{'rows':>11} {'mode':>11} {'task':>16} {'seconds':>9} {'rows/s':>11} {'peak MiB':>9} {'procs':>6}  note"
    print(head); print("-" * len(head))
    names = dict(ingest="ingest+validate", profile="profile", drift="drift (monitor)", score="score", run="run (pipeline)",
                 pandas="pandas+predict", evidently="Evidently drift")
    for r in rows:
        for k, v in r.items():
            if not isinstance(v, dict): continue
            note = "" if v["rc"] == 0 else ("killed (timeout or out of memory)" if v["rc"] and v["rc"] < 0 else f"failed (exit {v['rc']})")
            print(f"{r['rows']:>11,} {r['mode']:>11} {names[k]:>16} {v['s']:>9.1f} {r['rows'] / v['s']:>11,.0f} "
                  f"{v['peak_mib']:>9.0f} {v['procs']:>6}  {note}")
    if not a.keep: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__": main()
