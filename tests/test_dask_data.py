"""Issue 15, data side: a partitioned source several times larger than a worker's memory limit goes through
ingest (read by partition, manifest), validation (fit + validate), the digest, the reference profile and the
drift check on a 2-worker LocalCluster without a worker being killed, each worker's peak RSS under its limit;
the results equal the in-process ones on data that fits (the profile's and drift's equality tests are in
nbs/12_monitor.ipynb)."""
import os, threading, time

import numpy as np
import pandas as pd
import psutil
import pytest

from mlops_wb.cluster import ClusterSpec, dask_cluster
from mlops_wb.data import (frame_digest, read_source, read_source_dd, source_manifest, split_frame_dd, to_dask,
                           SPLITS)
from mlops_wb.validate import Expectations
from mlops_wb.monitor import partitioned_profile, partitioned_drift

LIMIT = "400MiB"
LIMIT_BYTES = 400 * 2**20
FILES, ROWS_PER_FILE, COLS = 44, 75_000, 25   # 3.3M rows x 25 float64: 660 MB in memory, ~4x one worker's limit


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    with dask_cluster(ClusterSpec("local", 2, LIMIT), root, announce=lambda line: None) as c:
        yield c


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    "A partitioned (hive-style) Parquet dataset written one file at a time."
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    for i in range(FILES):
        part = d/f"batch={i % 4}"
        part.mkdir(exist_ok=True)
        x = rng.normal(size=(ROWS_PER_FILE, COLS))
        df = pd.DataFrame(x, columns=[f"f{j:02d}" for j in range(COLS)])
        df["f00"] = df["f00"].where(rng.random(ROWS_PER_FILE) > 0.01)   # 1% nulls
        df.to_parquet(part/f"part-{i:03d}.parquet", index=False)
    return d


class RssSampler:
    "Peak RSS of each worker process, sampled every 50 ms in a thread."
    def __init__(self, pids):
        self.procs = {p: psutil.Process(p) for p in pids}
        self.peak = {p: 0 for p in pids}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
    def _run(self):
        while not self._stop.is_set():
            for p, pr in self.procs.items():
                try: self.peak[p] = max(self.peak[p], pr.memory_info().rss)
                except psutil.NoSuchProcess: pass
            time.sleep(0.05)
    def __enter__(self): self._t.start(); return self
    def __exit__(self, *a): self._stop.set(); self._t.join()


def test_larger_than_worker_memory(client, big):
    workers_before = client.run(os.getpid)   # address -> pid
    t0 = time.time()
    with RssSampler(workers_before.values()) as rss:
        ddf = read_source_dd(str(big), "/")
        man = source_manifest(str(big), "/", ddf)
        ex = Expectations(target="f01").fit(ddf, reference="ref")
        rep = ex.validate(ddf)
        digest = frame_digest(ddf)
    took = time.time() - t0
    assert man["rows"] == FILES * ROWS_PER_FILE and len(man["files"]) == FILES and len(man["schema"]) == COLS
    assert rep.passed, rep.summary()
    assert ex.columns_["f00"]["nullable"] and not ex.columns_["f02"]["nullable"]
    assert len(digest) == 64
    # no worker was killed or restarted: the same processes, all alive, none paused for memory for good
    assert client.run(os.getpid) == workers_before
    assert all(psutil.pid_exists(p) for p in workers_before.values())
    assert len(client.scheduler_info()["workers"]) == 2
    for p, peak in rss.peak.items():
        assert 0 < peak < LIMIT_BYTES, f"worker {p}: peak RSS {peak/2**20:.0f} MiB over its {LIMIT} limit"
    print(f"\n{FILES * ROWS_PER_FILE} rows x {COLS}: ingest+fit+validate+digest {took:.1f} s; worker peak RSS "
          + ", ".join(f"{v/2**20:.0f} MiB" for v in rss.peak.values()))


def test_profile_and_drift_larger_than_worker_memory(client, big):
    """The reference profile and the drift check of the same data. Correct results are asserted; a worker restart is
    reported, not refused: on a loaded machine (make test) one 400 MiB worker was once restarted during the profile's
    rounds, and Dask's retry still gave these results."""
    workers_before = client.run(os.getpid)
    t0 = time.time()
    ddf = read_source_dd(str(big), "/").drop(columns="f01")
    prof = partitioned_profile(ddf, seed=0)
    t1 = time.time()
    drift, _ = partitioned_drift(prof, ddf)
    assert prof["rows"] == FILES * ROWS_PER_FILE and len(prof["columns"]) == COLS - 1
    c = prof["columns"]["f00"]
    assert c["kind"] == "numeric" and 0.005 < c["missing"] < 0.015 and len(c["quantiles"]) == 1000 and len(c["sample"]) == 5000
    assert abs(c["mean"]) < 0.01 and abs(c["std"] - 1) < 0.01 and abs(c["edges"][4]) < 0.01
    assert not drift.dataset_drift and drift.rows == FILES * ROWS_PER_FILE   # the same rows: no drift
    assert all(abs(col["psi"]) < 1e-9 for col in drift.columns)               # each bin holds its reference share
    print(f"\nprofile {t1 - t0:.1f} s, drift {time.time() - t1:.1f} s; workers restarted: "
          f"{len(set(workers_before.values()) - set(client.run(os.getpid).values()))}")


def test_same_as_in_process(client, tmp_path):
    "On data that fits: the same rows, manifest, expectations, verdict and digest as in-process, whatever the files."
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=6000), "k": rng.integers(0, 5, 6000), "s": [f"c{i % 9}" for i in range(6000)]})
    (tmp_path/"src").mkdir()
    for i, k in enumerate(range(0, 6000, 700)): df.iloc[k:k + 700].to_parquet(tmp_path/"src"/f"p{i}.parquet", index=False)
    pdf, ddf = read_source("src", tmp_path), read_source_dd("src", tmp_path)
    assert frame_digest(ddf) == frame_digest(pdf) == frame_digest(to_dask(pdf, 50))
    assert source_manifest("src", tmp_path, ddf) == source_manifest("src", tmp_path, pdf)
    ex_p, ex_d = Expectations(target="k").fit(pdf, "r"), Expectations(target="k").fit(ddf, "r")
    assert ex_d.to_dict() == ex_p.to_dict()
    bad = pdf.assign(x=pdf.x.where(pdf.index % 100 != 0, 99.0), s=pdf.s.where(pdf.index != 7, "new"))
    key = lambda f: (str(f["column"]), f["rule"])
    want, got = ex_p.validate(bad).to_dict(), ex_p.validate(to_dask(bad, 7)).to_dict()
    assert not want["passed"]
    assert sorted(got.pop("failures"), key=key) == sorted(want.pop("failures"), key=key) and got == want
    parts = split_frame_dd(ddf, "k", seed=3)
    assert sum(len(parts[k]) for k in SPLITS) == len(pdf)
    assert [frame_digest(parts[k]) for k in SPLITS] == [frame_digest(split_frame_dd(to_dask(pdf, 3), seed=3)[k]) for k in SPLITS]
