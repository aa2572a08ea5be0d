"""Evidently's data drift (Report with DataDriftPreset) on a reference and a current file; prints JSON.

Run it with Evidently's own venv (Evidently 0.7 does not import with pandas 3; `make .venv/evidently/.installed`):

    .venv/evidently/bin/python tools/evidently_drift.py REFERENCE CURRENT [options]
    .venv/evidently/bin/python tools/evidently_drift.py --jobs JOBS.json

REFERENCE and CURRENT are Parquet (or .csv) files. Options (JSON on the command line):
  --numerical '["a","b"]' --categorical '["c"]'   column types (both given: exactly these columns; default:
                                                  Evidently infers the types itself, per frame)
  --methods '{"c":"chisquare"}'                  per-column stattest (DataDriftPreset per_column_method)
  --thresholds '{"c":0.01}'                      per-column threshold (per_column_threshold)
  --method ks / --num-method / --cat-method      one stattest for all / numerical / categorical columns
  --drift-share 0.5                              share of drifted columns for dataset drift
--jobs FILE runs several comparisons in one process (Evidently's import takes seconds): a JSON list of objects
with keys reference, current and the options above spelled with underscores (numerical, categorical, methods,
thresholds, method, num_method, cat_method, drift_share). The output is then {"jobs": [...], ...}.

Besides Evidently's stattests this registers one more, "chi2_contingency": the chi-square test of independence
of the 2 x k table of reference and current category counts (scipy.stats.chi2_contingency, no continuity
correction), which is what mlops_wb.monitor uses; Evidently's own "chisquare" is a goodness-of-fit test of the
current counts against expected counts taken from the reference as if it were the population.

Per column the output gives the stattest (registry name and Evidently's display name), the score (a p-value for
ks/chisquare/z/chi2_contingency, a distance for wasserstein/jensenshannon), the threshold and Evidently's own
verdict (the status of the preset's per-column "Value Drift" test). Timings: read_s (reading the files, not
part of run_s), run_s (Report.run with DataDriftPreset plus building the result dict with Snapshot.dict()),
import_s (importing Evidently); peak_rss_mib is this process's peak resident memory (ru_maxrss).
Telemetry is switched off before Evidently is imported (DO_NOT_TRACK, ITERATIVE_DO_NOT_TRACK,
EVIDENTLY_DISABLE_TELEMETRY); a Report run sends nothing anyway.
"""
import os

for _k, _v in {"DO_NOT_TRACK": "1", "ITERATIVE_DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}.items():
    os.environ[_k] = _v

import argparse, json, resource, sys, time, warnings

T0 = time.perf_counter()
import numpy as np
import pandas as pd
import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest, _registered_stat_tests
from evidently.legacy.core import ColumnType
from scipy import stats as _st

IMPORT_S = time.perf_counter() - T0


def _chi2_contingency(reference: pd.Series, current: pd.Series, feature_type, threshold):
    "Chi-square test of independence of the 2 x k table of category counts (no continuity correction)."
    keys = sorted(set(reference.unique()) | set(current.unique()), key=str)
    rc, cc = reference.value_counts(), current.value_counts()
    table = np.array([[rc.get(k, 0) for k in keys], [cc.get(k, 0) for k in keys]], dtype=float)
    if table.shape[1] < 2: return 1.0, False
    p = float(_st.chi2_contingency(table, correction=False)[1])
    return p, p < threshold


register_stattest(StatTest(name="chi2_contingency", display_name="chi-square contingency p_value",
                           allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical], default_threshold=0.05),
                  _chi2_contingency)


def _stattest_names():
    "Evidently's display name of each registered stattest -> its registry name ('K-S p_value' -> 'ks')."
    return {t.display_name: name for name, by_type in _registered_stat_tests.items() for t in by_type.values()}


def read(path):
    return pd.read_csv(path) if str(path).endswith(".csv") else pd.read_parquet(path)


def run_job(job: dict) -> dict:
    t = time.perf_counter()
    ref, cur = read(job["reference"]), read(job["current"])
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    num, cat = job.get("numerical"), job.get("categorical")
    given = num is not None or cat is not None      # else Evidently's own type inference, as Report.run does for a DataFrame
    def definition(): return DataDefinition(numerical_columns=list(num or []), categorical_columns=list(cat or [])) if given else None
    cur_in, ref_in = Dataset.from_pandas(cur, data_definition=definition()), Dataset.from_pandas(ref, data_definition=definition())
    preset = DataDriftPreset(drift_share=job.get("drift_share", 0.5), method=job.get("method"),
                             num_method=job.get("num_method"), cat_method=job.get("cat_method"),
                             per_column_method=job.get("methods") or None, per_column_threshold=job.get("thresholds") or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = Report([preset], include_tests=True).run(cur_in, ref_in)
        doc = snap.dict()
    run_s = time.perf_counter() - t
    names = _stattest_names()
    verdict = {tr["metric_config"]["metric_id"]: tr["status"] for tr in doc["tests"] if tr.get("id") == "drift"}
    cols, share = [], None
    for m in doc["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith(":DriftedColumnsCount"): share = float(m["value"]["share"]); continue
        if not cfg["type"].endswith(":ValueDrift"): continue
        status = verdict.get(m["id"])
        cols.append(dict(column=cfg["column"], stattest=names.get(cfg["method"], cfg["method"]), method=cfg["method"],
                         score=None if m["value"] is None else float(m["value"]), threshold=cfg.get("threshold"),
                         drifted=None if status is None else status == "FAIL"))
    types = {}
    for c in cur.columns:
        try: types[c] = cur_in.data_definition.get_column_type(c).value
        except Exception: types[c] = None
    for c in cols: c["type"] = types.get(c["column"])
    share = share if share is not None else (sum(bool(c["drifted"]) for c in cols) / len(cols) if cols else 0.0)
    return dict(columns=cols, share_drifted=share, dataset_drift=share >= job.get("drift_share", 0.5),
                rows=dict(reference=int(len(ref)), current=int(len(cur))), read_s=read_s, run_s=run_s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference", nargs="?"); ap.add_argument("current", nargs="?")
    ap.add_argument("--jobs", help="a JSON file: a list of jobs (see the module docstring)")
    ap.add_argument("--numerical", type=json.loads); ap.add_argument("--categorical", type=json.loads)
    ap.add_argument("--methods", type=json.loads, help='per-column stattest, e.g. {"c": "chisquare"}')
    ap.add_argument("--thresholds", type=json.loads, help='per-column threshold, e.g. {"c": 0.01}')
    ap.add_argument("--method"); ap.add_argument("--num-method"); ap.add_argument("--cat-method")
    ap.add_argument("--drift-share", type=float, default=0.5)
    ap.add_argument("--out", help="write the JSON here instead of standard output")
    a = ap.parse_args(argv)
    if a.jobs:
        jobs = json.loads(open(a.jobs).read())
    elif a.reference and a.current:
        jobs = [dict(reference=a.reference, current=a.current, numerical=a.numerical, categorical=a.categorical,
                     methods=a.methods, thresholds=a.thresholds, method=a.method, num_method=a.num_method,
                     cat_method=a.cat_method, drift_share=a.drift_share)]
    else:
        ap.error("give REFERENCE and CURRENT, or --jobs FILE")
    results = [run_job(j) for j in jobs]
    meta = dict(evidently=evidently.__version__, pandas=pd.__version__, import_s=IMPORT_S,
                elapsed_s=time.perf_counter() - T0,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)   # Linux: KiB
    out = {"jobs": results, **meta} if a.jobs else {**results[0], **meta}
    text = json.dumps(out, indent=1)
    if a.out: open(a.out, "w").write(text)
    else: sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
