"""Data drift of this project against Evidently's DataDriftPreset, same generated data, same machine, same run.

Usage: .venv/bin/python bench/bench_drift.py [--sizes 10000,100000,1000000] [--repeat 1] [--keep]

For each size N it generates a reference and a current frame of N rows (20 numeric + 5 categorical columns;
5 numeric and 2 categorical columns shifted, the rest not) and writes them to Parquet in a temporary folder.
Each side then runs in its own child process, which reads both files (not timed) and:
- ours (.venv/bin/python): builds the reference profile (`reference_profile`, done once at training time in
  production) and computes the drift of the current frame against it (`dataset_drift`, what monitoring does),
  including the report dict as JSON; "ours drift s" is the second part, "ours profile+drift s" both;
- Evidently (.venv/evidently/bin/python tools/evidently_drift.py): `Report([DataDriftPreset()]).run(current,
  reference)` with its default methods and type inference, including building the result dict (Snapshot.dict()).
Both sides then pick the same methods here: reference > 1,000 rows, so Wasserstein distance / std for the
numeric columns and Jensen-Shannon distance for the categorical ones (ours from the profile's 1,000-point
quantile function of each numeric column, Evidently from all reference values).
With --repeat R each child repeats the timed part R times and reports the fastest. Peak memory is each child
process's ru_maxrss (its peak resident set, so it includes the interpreter, the libraries and both frames).
"ratio" is Evidently's time over ours (drift only). "same verdicts" says whether both flagged the same columns.
Needs Evidently's venv: `make .venv/evidently/.installed`.
"""
import argparse, json, shutil, subprocess, sys, tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OURS_PY = REPO / ".venv" / "bin" / "python"
EVIDENTLY_PY = REPO / ".venv" / "evidently" / "bin" / "python"
N_NUM, N_CAT = 20, 5
SHIFTED = [f"num_{i:02d}" for i in range(5)] + ["cat_0", "cat_1"]

OURS = r"""
import json, resource, sys, time
import pandas as pd
from mlops_wb.monitor import dataset_drift, reference_profile
ref, cur, repeat = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2]), int(sys.argv[3])
prof_s, drift_s = [], []
for _ in range(repeat):
    t = time.perf_counter(); prof = reference_profile(ref); prof_s.append(time.perf_counter() - t)
    t = time.perf_counter(); rep = dataset_drift(prof, cur); doc = json.dumps(rep.to_dict(), default=str); drift_s.append(time.perf_counter() - t)
print(json.dumps(dict(profile_s=min(prof_s), drift_s=min(drift_s), drifted=rep.drifted(),
                      tests=sorted({c["test"] for c in rep.columns}),
                      peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def make_frames(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cats = [list("abcde"), [f"k{i}" for i in range(12)], ["x", "y"], [f"c{i}" for i in range(30)], list("pqrs")]

    def frame(cur: bool):
        d = {}
        for i in range(N_NUM):
            x = rng.normal(0, 1, n) if i % 2 else rng.gamma(2.0, 1.0, n)       # symmetric and skewed columns
            if cur and i < 3: x = x + 0.5 * x.std()                              # location shift of half a std
            if cur and i in (3, 4): x = x.mean() + (x - x.mean()) * 1.6          # spread only
            d[f"num_{i:02d}"] = x
        for j, vals in enumerate(cats):
            p = np.linspace(2, 1, len(vals)); p /= p.sum()
            if cur and j < 2: p = p[::-1]
            d[f"cat_{j}"] = rng.choice(vals, n, p=p)
        return pd.DataFrame(d)
    return frame(False), frame(True)


def child(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if p.returncode: sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="rows of the reference and of the current frame")
    ap.add_argument("--repeat", type=int, default=1, help="timed repetitions in each child (the fastest is reported)")
    ap.add_argument("--keep", action="store_true", help="keep the generated Parquet files")
    a = ap.parse_args()
    if not EVIDENTLY_PY.exists(): sys.exit(f"{EVIDENTLY_PY} missing: run `make .venv/evidently/.installed`")
    tmp = Path(tempfile.mkdtemp(prefix="mlops-wb-bench-drift-"))
    rows = []
    try:
        for n in [int(s) for s in a.sizes.split(",")]:
            ref, cur = make_frames(n)
            rp, cp = tmp / f"ref-{n}.parquet", tmp / f"cur-{n}.parquet"
            ref.to_parquet(rp); cur.to_parquet(cp); del ref, cur
            ours = child([str(OURS_PY), "-c", OURS, str(rp), str(cp), str(a.repeat)])
            jobs = tmp / f"jobs-{n}.json"
            jobs.write_text(json.dumps([dict(reference=str(rp), current=str(cp))] * a.repeat))
            ev = child([str(EVIDENTLY_PY), str(REPO / "tools" / "evidently_drift.py"), "--jobs", str(jobs)])
            ev_run = min(j["run_s"] for j in ev["jobs"])
            ev_drifted = sorted(c["column"] for c in ev["jobs"][0]["columns"] if c["drifted"])
            ev_tests = sorted({c["stattest"] for c in ev["jobs"][0]["columns"]})
            rows.append(dict(n=n, ours=ours, ev_s=ev_run, ev_mib=ev["peak_rss_mib"], ev_drifted=ev_drifted, ev_tests=ev_tests,
                             version=ev["evidently"]))
            print(f"  {n:,} rows done: ours {ours['drift_s']:.2f} s, Evidently {ev_run:.2f} s", file=sys.stderr, flush=True)
    finally:
        if not a.keep: shutil.rmtree(tmp, ignore_errors=True)
    print(f"{N_NUM} numeric + {N_CAT} categorical columns, reference and current of the same size; "
          f"shifted: {', '.join(SHIFTED)}; Evidently {rows[0]['version']}; best of {a.repeat}; peak MiB = child ru_maxrss")
    head = f"{'rows':>10} {'ours drift s':>13} {'ours profile+drift s':>21} {'evidently s':>12} {'ratio':>7} {'ours peak MiB':>14} {'evidently peak MiB':>19}  same verdicts"
    print(head); print("-" * len(head))
    for r in rows:
        o = r["ours"]; same = sorted(o["drifted"]) == r["ev_drifted"]
        print(f"{r['n']:>10,} {o['drift_s']:>13.3f} {o['profile_s'] + o['drift_s']:>21.3f} {r['ev_s']:>12.3f} "
              f"{r['ev_s'] / o['drift_s']:>6.1f}x {o['peak_rss_mib']:>14.0f} {r['ev_mib']:>19.0f}  "
              + ("yes" if same else f"NO: ours {sorted(o['drifted'])}, Evidently {r['ev_drifted']}"))
    print("tests: ours " + ", ".join(rows[0]["ours"]["tests"]) + "; Evidently " + ", ".join(rows[0]["ev_tests"]))


if __name__ == "__main__": main()
