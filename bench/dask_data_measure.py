"""Digest + validation (fit, validate) of a 2M-row x 25-column partitioned Parquet source: wall time and peak RSS
per process, in-process (pandas) vs a LocalCluster of 2 workers. Usage: python bench/dask_data_measure.py MODE
(MODE: inprocess | dask); each mode in its own process so peak RSS is its own."""
import os, resource, sys, tempfile, threading, time
from pathlib import Path
import numpy as np, pandas as pd, psutil

ROWS, COLS, FILES = 2_000_000, 25, 40
DATA = Path(os.environ.get("DATA", "/tmp/dask-data/bench-2m"))

def make():
    if (DATA/"done").exists(): return
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = ROWS // FILES
    for i in range(FILES):
        pd.DataFrame(rng.normal(size=(n, COLS)), columns=[f"f{j:02d}" for j in range(COLS)]).to_parquet(
            DATA/f"part-{i:03d}.parquet", index=False)
    (DATA/"done").write_text("")

def main(mode):
    from mlops_wb.data import frame_digest, read_source, read_source_dd
    from mlops_wb.validate import Expectations
    if mode == "inprocess":
        t0 = time.time()
        df = read_source(str(DATA), "/")
        ex = Expectations(target="f01").fit(df); rep = ex.validate(df); d = frame_digest(df)
        took = time.time() - t0
        print(f"in-process: {took:.1f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MiB; "
              f"passed={rep.passed} digest={d[:12]}")
        return
    from mlops_wb.cluster import ClusterSpec, dask_cluster
    with tempfile.TemporaryDirectory() as root, dask_cluster(ClusterSpec("local", 2, "1GiB"), root, announce=print) as c:
        pids = list(c.run(os.getpid).values())
        peak = {p: 0 for p in pids}; stop = threading.Event()
        def sample():
            while not stop.is_set():
                for p in pids: peak[p] = max(peak[p], psutil.Process(p).memory_info().rss)
                time.sleep(0.05)
        th = threading.Thread(target=sample, daemon=True); th.start()
        t0 = time.time()
        ddf = read_source_dd(str(DATA), "/")
        ex = Expectations(target="f01").fit(ddf); rep = ex.validate(ddf); d = frame_digest(ddf)
        took = time.time() - t0
        stop.set(); th.join()
        print(f"LocalCluster 2 workers: {took:.1f} s; client peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MiB; "
              f"worker peak RSS " + ", ".join(f"{v/2**20:.0f} MiB" for v in peak.values()) + f"; passed={rep.passed} digest={d[:12]}")

if __name__ == "__main__":
    make()
    main(sys.argv[1])
