"""Batch scoring on a real Dask cluster (distributed.LocalCluster, 2 worker processes): the predictions equal the
in-process `score`, a worker killed in the middle is survived, and a failure leaves no output behind."""
import os, threading, time

import numpy as np
import pandas as pd
import pytest

from mlops_wb.cluster import ClusterSpec, dask_cluster
from mlops_wb.config import load_settings
from mlops_wb.data import load_demo
from mlops_wb.errors import ConfigError
from mlops_wb.registry import register_model
from mlops_wb.serve import score_file, score_partitioned
from mlops_wb.tracking import connect
from mlops_wb.train import fit_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask-score")
    client, eid = connect(load_settings(root, env={}))
    df = load_demo("breast_cancer"); X = df.drop(columns="target")
    register_model(fit_model(df, "target", max_iter=2000), X.head(5), client.create_run(eid).info.run_id, "m")
    rng = np.random.default_rng(0)
    n = 200_000
    big = pd.DataFrame(X.to_numpy()[rng.integers(0, len(X), n)] * rng.normal(1, 0.05, (n, X.shape[1])), columns=X.columns)
    parts = root / "parts"; parts.mkdir()
    for i, idx in enumerate(np.array_split(np.arange(n), 8)): big.iloc[idx].to_parquet(parts / f"p{i}.parquet", index=False)
    big.to_parquet(root / "all.parquet", index=False)
    with dask_cluster(ClusterSpec("local", 2, "1GiB"), root, announce=lambda _: None) as dc:
        yield root, client, dc, n


def test_same_predictions_as_in_process(setup):
    root, client, dc, n = setup
    r = score_partitioned(client, "m/1", root / "parts", root / "out", dc, progress=False)
    score_file(client, "m/1", root / "all.parquet", root / "one.parquet", progress=False)
    got, want = pd.read_parquet(root / "out"), pd.read_parquet(root / "one.parquet")
    assert r.rows == n == len(got)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    assert sorted(p.name for p in (root / "out").iterdir()) == [f"part-{i:05d}.parquet" for i in range(8)]


def test_a_worker_killed_mid_score_is_survived(setup):
    root, client, dc, n = setup
    pids = list(dc.run(os.getpid).values())
    def kill():   # as soon as the first partition is being scored, one worker dies
        deadline = time.time() + 30
        while time.time() < deadline and not any(dc.processing().values()): time.sleep(0.01)
        os.kill(pids[0], 9)
    t = threading.Thread(target=kill); t.start()
    r = score_partitioned(client, "m/1", root / "parts", root / "out2", dc, progress=False)
    t.join()
    assert r.rows == n
    got = pd.read_parquet(root / "out2").reset_index(drop=True)
    score_file(client, "m/1", root / "all.parquet", root / "want.parquet", progress=False)
    pd.testing.assert_frame_equal(got, pd.read_parquet(root / "want.parquet"))
    assert pids[0] not in dc.run(os.getpid).values()   # the worker really died (its nanny started another)
    dc.wait_for_workers(2, timeout=60)


def test_a_failure_leaves_nothing(setup):
    root, client, dc, n = setup
    bad = root / "bad"; bad.mkdir()
    for p in sorted((root / "parts").iterdir())[:3]: (bad / p.name).write_bytes(p.read_bytes())
    pd.read_parquet(bad / "p0.parquet").drop(columns="mean_radius").to_parquet(bad / "p9.parquet", index=False)
    with pytest.raises(Exception, match="columns differ"):
        score_partitioned(client, "m/1", bad, root / "never", dc, progress=False)
    (bad / "p9.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(Exception):
        score_partitioned(client, "m/1", bad, root / "never", dc, progress=False)
    assert not [p.name for p in root.iterdir() if "never" in p.name]   # no OUT, no temporary folder
