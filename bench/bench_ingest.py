"""Ingest and validate a generated 1,000,000-row, 30-column CSV: wall time and peak memory,
side by side with the floor of plain pandas (read_csv + to_parquet) on the same file.

Usage: .venv/bin/python bench/bench_ingest.py [--rows N]

Each measurement runs in a fresh Python process so its peak RSS (ru_maxrss) is its own.
The mlops-wb figure covers what the ingest and validate steps do: read with the structural
checks (empty, duplicate columns, UTF-8, mixed types), learn expectations from a reference
(here the file itself, so it passes), validate every row with pandera, and store the content-addressed
snapshot (digest, Parquet, logged to the embedded MLflow store).
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import pandas as pd

PHASES = r'''
import json, resource, sys, time
t = {}
t0 = time.perf_counter()
mode, path, root = sys.argv[1], sys.argv[2], sys.argv[3]
import pandas as pd
if mode == "pandas":
    s = time.perf_counter(); df = pd.read_csv(path, low_memory=False); t["read"] = time.perf_counter() - s
    s = time.perf_counter(); df.to_parquet(root + "/plain.parquet", index=False); t["write parquet"] = time.perf_counter() - s
else:
    s = time.perf_counter()
    from mlops_wb.config import load_settings
    from mlops_wb.data import read_source, SnapshotStore
    from mlops_wb.validate import Expectations
    import mlops_wb.tracking
    t["imports (mlflow, pandera)"] = time.perf_counter() - s
    s = time.perf_counter(); df = read_source(path, root); t["read + structural checks"] = time.perf_counter() - s
    s = time.perf_counter(); ex = Expectations(target="label").fit(df); t["learn expectations (whole file as reference)"] = time.perf_counter() - s
    s = time.perf_counter(); rep = ex.validate(df); t["validate (pandera)"] = time.perf_counter() - s
    assert rep.passed, rep.summary()
    store = SnapshotStore(load_settings(root, env={}))
    s = time.perf_counter(); ref = store.put(df, path); t["snapshot (digest, parquet, log)"] = time.perf_counter() - s
    s = time.perf_counter(); again = store.put(df, path); t["second put, same content (dedup)"] = time.perf_counter() - s
    assert again.run_id == ref.run_id
t["total"] = time.perf_counter() - t0
print(json.dumps(dict(times=t, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
'''


def make_csv(path: Path, rows: int):
    rng = np.random.default_rng(0)
    cols = {f"num{i}": rng.normal(100, 15, rows).round(3) for i in range(20)}
    cols.update({f"int{i}": rng.integers(0, 1000, rows) for i in range(4)})
    cols.update({f"cat{i}": rng.choice([f"v{j}" for j in range(8 + i)], rows) for i in range(5)})
    cols["label"] = rng.choice(["yes", "no"], rows)
    pd.DataFrame(cols).to_csv(path, index=False)


def measure(mode, path, root):
    out = subprocess.run([sys.executable, "-c", PHASES, mode, str(path), str(root)], capture_output=True, text=True, env={
        "PATH": "/usr/bin:/bin", "HOME": str(root), "MLFLOW_DISABLE_TELEMETRY": "true"})
    if out.returncode: sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--rows", type=int, default=1_000_000); a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-wb-ingest-") as d:
        root = Path(d); csv = root / "data.csv"
        make_csv(csv, a.rows)
        print(f"{a.rows:,} rows x 30 columns, {csv.stat().st_size / 1e6:.0f} MB CSV")
        base, ours = measure("pandas", csv, root), measure("mlops-wb", csv, root)
    print()
    print(f"{'':40} {'plain pandas':>13} {'mlops-wb':>10} {'ratio':>7}")
    print(f"{'wall time, s':40} {base['times']['total']:13.2f} {ours['times']['total']:10.2f} {ours['times']['total'] / base['times']['total']:7.2f}")
    print(f"{'peak memory (RSS), MB':40} {base['peak_mb']:13.0f} {ours['peak_mb']:10.0f} {ours['peak_mb'] / base['peak_mb']:7.2f}")
    print()
    print("mlops-wb phases, s")
    for k, v in ours["times"].items(): print(f"  {k:38} {v:8.2f}")


if __name__ == "__main__": main()
