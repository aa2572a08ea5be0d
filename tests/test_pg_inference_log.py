"""Issue 13 point 5 against a real PostgreSQL (a throwaway cluster, no mocks): the inference log in a shared
database. The store gives the same frames as SQLite for the same input, in one transaction per batch; two
`mlops-wb serve` replicas with 8 concurrent clients each lose no row and log every request; `mlops-wb monitor`
reads both replicas' rows; the URL's password is never printed; a database restart loses nothing."""
import asyncio, json, os, secrets, shutil, signal, socket, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace as NS

import aiohttp
import numpy as np
import pandas as pd
import pytest
from conftest import CLI, clean_env, cli, client_for, copy_project, free_port, start_http

M = "mlops-wb-model"
CLIENTS, REQUESTS = 8, 30   # per replica; every 10th request of a client is refused (truncated JSON)


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL cluster on a free port for this module, stopped and removed at the end."""
    from mlops_wb.team import ServerConfig, init_cluster, stop_cluster
    folder = tempfile.mkdtemp(prefix="pglog-", dir="/tmp")
    os.chmod(folder, 0o755)   # the postgres user must get in (pytest's tmp_path is 0700)
    cfg = ServerConfig(folder=folder, host="127.0.0.1", port=0, pg_port=free_port(), pg_password=secrets.token_hex(12),
                       secret_key="unused", experiment="e", model_name=M)
    try:
        init_cluster(cfg)
        yield cfg
    finally:
        stop_cluster(cfg)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with one registered version (@champion) and its reference profile: what serve and monitor need."""
    from mlops_wb.data import load_demo
    from mlops_wb.monitor import reference_profile
    from mlops_wb.registry import register_model
    from mlops_wb.train import fit_model
    root = copy_project(tmp_path_factory.mktemp("pglog") / "p")
    client, exp = client_for(root)
    df = load_demo("breast_cancer"); X = df.drop(columns="target")
    model = fit_model(df, "target", family="linear", max_iter=2000)
    run_id = client.create_run(exp).info.run_id
    register_model(model, X.head(5), run_id, M, alias="champion")
    prof = root / "reference_profile.json"
    prof.write_text(json.dumps(reference_profile(X, model.predict(X))))
    client.log_artifact(run_id, str(prof), "monitoring")
    return dict(root=root, X=X)


def _database(cfg, name: str) -> str:
    """A new, empty database in the cluster; its postgresql:// URL."""
    import psycopg
    with psycopg.connect(_plain(cfg.db_uri("postgres")), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return _plain(cfg.db_uri(name))


def _plain(url: str) -> str: return url.replace("postgresql+psycopg://", "postgresql://")


def _query(url: str, sql: str) -> list:
    import psycopg
    with psycopg.connect(_plain(url)) as con: return con.execute(sql).fetchall()


def _batches(seed: int = 0) -> list:
    """Flushes of appended rows and requests: two versions, NaN and None features, refused requests."""
    rng, out, t = np.random.default_rng(seed), [], 1000.0
    for b in range(4):
        items = []
        for i in range(6):
            t += 1.0
            rid, n, ver = f"b{b}r{i}", int(rng.integers(1, 4)), "3" if i % 3 else "4"
            a = rng.normal(size=n); a[0] = np.nan if i == 2 else a[0]
            cols = {"a": a, "b": [None if (i + j) % 4 == 0 else f"k{j}" for j in range(n)], "c": rng.normal(size=n)}
            pred = rng.integers(0, 2, size=n) if ver == "3" else rng.random(n)
            items.append(("append", rid, t, ver, "champion" if ver == "3" else "challenger", ["a", "b", "c"],
                          f"key{i}" if i % 2 else None, cols, n, pred, float(rng.random() * 5)))
            items.append(("request", rid, t, ver, 200, n, float(rng.random() * 5)))
        items.append(("request", f"b{b}bad", t + 0.5, None, 400, 0, 0.2, "BAD_JSON"))
        out.append(items)
    return out


def _write(location, batches):
    from mlops_wb.inference_log import InferenceLog
    log = InferenceLog(location, "m", flush_interval=3600)   # flushed by hand: one batch per flush
    for items in batches:
        for kind, *args in items: getattr(log, kind)(*args)
        log.flush()
    log.close()


def test_store_round_trip_matches_sqlite(pg, tmp_path):
    from mlops_wb.inference_log import log_exists, open_store, read_inference_log, read_service_log
    url, db = _database(pg, "roundtrip"), tmp_path / "inference.db"
    assert not log_exists(url)                                   # a database without the tables: no log yet
    assert open_store(url, readonly=True).select("SELECT count(*) FROM requests") == []
    for location in (db, url): _write(location, _batches())
    assert log_exists(url)
    for kw in ({}, {"version": "3"}, {"version": "4", "since": 1005.0}, {"since": 1004.0, "until": 1011.0},
               {"since": 5000.0}):
        pg_df, sq_df = read_inference_log(url, **kw), read_inference_log(db, **kw)
        pd.testing.assert_frame_equal(pg_df, sq_df)
    assert len(read_inference_log(url)) == sum(i[8] for b in _batches() for i in b if i[0] == "append")
    for kw in ({}, {"since": 1010.0}, {"until": 1003.0}):
        assert read_service_log(url, **kw) == read_service_log(db, **kw)
    # one transaction per batch: the rows and requests of one flush share one transaction id, four flushes four ids
    rows_tx = {x for (x,) in _query(url, "SELECT DISTINCT xmin::text FROM inference")}
    req_tx = {x for (x,) in _query(url, "SELECT DISTINCT xmin::text FROM requests")}
    assert len(rows_tx) == 4 and req_tx == rows_tx
    import psycopg
    ro = open_store(url, readonly=True)   # what monitoring opens cannot write
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        ro.write([], [("r", 1.0, "3", 200, 1, 1.0, None)], {})
    ro.close()


def test_the_password_is_never_shown(pg, project):
    from mlops_wb.inference_log import InferenceLogError, open_store
    from mlops_wb.monitor import MonitorError, log_window
    url, pw = _database(pg, "empty"), pg.pg_password
    masked = url.replace(pw, "***")
    with pytest.raises(MonitorError) as e:   # a database nothing wrote to: no log, and the message hides the password
        log_window(project["root"], NS(inference_log=url), NS(name=M, version="1"), None, "target")
    assert str(e.value).startswith(f"no inference log at {masked};") and pw not in str(e.value)
    wrong = secrets.token_hex(8)
    with pytest.raises(InferenceLogError) as e:
        open_store(url.replace(pw, wrong))
    assert "password authentication failed" in str(e.value) and wrong not in str(e.value) and "mlops:***@" in str(e.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); closed = s.getsockname()[1]
    env = clean_env(); env["MLOPS_WB_INFERENCE_LOG"] = f"postgresql+psycopg://mlops:{pw}@127.0.0.1:{closed}/x"
    res = cli(project["root"], "serve", "--port", str(free_port()), env=env, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 1 and f"postgresql+psycopg://mlops:***@127.0.0.1:{closed}/x: cannot connect" in out, out
    assert pw not in out and "Traceback" not in out, out


def _bodies(X, seed: int) -> list:
    """A client's requests: (body, rows scored); every 10th is truncated JSON (a 400, no rows)."""
    rng, out = np.random.default_rng(seed), []
    for i in range(REQUESTS):
        n = int(rng.integers(1, 5))
        body = json.dumps({"dataframe_split": json.loads(X.sample(n, random_state=seed * 100 + i).to_json(
            orient="split", index=False))}).encode()
        out.append((body[:-7], 0) if i % 10 == 9 else (body, n))
    return out


async def _clients(base: str, X, first_seed: int) -> list:
    """CLIENTS concurrent clients, each sending its requests one after the other; (request id, status, rows) each."""
    async def one(session, seed):
        got = []
        for body, n in _bodies(X, seed):
            async with session.post(base + "/invocations", data=body, headers={"Content-Type": "application/json",
                                                                                "X-Client-Key": f"c{seed}"}) as r:
                await r.read()
                got.append((r.headers["X-Request-Id"], r.status, n))
        return got
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        res = await asyncio.gather(*(one(session, first_seed + k) for k in range(CLIENTS)))
    return [x for r in res for x in r]


def _serve(root, env):
    port = free_port()
    proc = start_http([CLI, "--project", root, "serve", "--port", port, "--flush-interval", "0.2"],
                      f"http://127.0.0.1:{port}/ready", cwd=root, env=env, what="mlops-wb serve")
    return proc, f"http://127.0.0.1:{port}"


def test_two_replicas_lose_no_row_and_monitor_reads_both(pg, project):
    root, X, pw = project["root"], project["X"], pg.pg_password
    url = _database(pg, "replicas").replace("postgresql://", "postgresql+psycopg://")   # the SQLAlchemy form
    env = clean_env(); env["MLOPS_WB_INFERENCE_LOG"] = url
    t0 = time.time()
    with ThreadPoolExecutor(2) as ex: servers = list(ex.map(lambda _: _serve(root, env), range(2)))
    try:
        t1 = time.time()
        async def both(): return await asyncio.gather(*(_clients(b, X, 1 + 1000 * i) for i, (_, b) in enumerate(servers)))
        sent = asyncio.run(both())
        t2 = time.time()
    finally:
        for (proc, _), sig in zip(servers, (signal.SIGTERM, signal.SIGINT)):   # clean stops: the logs flush
            if proc.poll() is None: proc.send_signal(sig)
        outs = [proc.communicate(timeout=30)[0] for proc, _ in servers]
    t3 = time.time()
    # uvicorn shuts down (lifespan: the log is flushed), then re-raises the signal: SIGTERM ends the process by that
    # signal, SIGINT is the CLI's "interrupted" (130)
    assert [p.returncode for p, _ in servers] == [-signal.SIGTERM, 130], outs
    assert all(f"inference log: {url.replace(pw, '***')}" in o and pw not in o for o in outs), outs
    everything = sent[0] + sent[1]
    assert len(everything) == 2 * CLIENTS * REQUESTS and {s for _, s, _ in everything} == {200, 400}
    rows_sent = sum(n for _, s, n in everything if s == 200)

    n, distinct = _query(url, "SELECT count(*), count(DISTINCT (request_id, row)) FROM inference")[0]
    assert (n, distinct) == (rows_sent, rows_sent)                        # not one row lost, none twice
    logged = sorted(_query(url, "SELECT request_id, status, rows FROM requests"))
    assert logged == sorted(everything)                                   # one row per request, answered or refused
    by_replica = [{r for r, s, _ in part if s == 200} for part in sent]
    rids = {r for (r,) in _query(url, "SELECT DISTINCT request_id FROM inference")}
    assert by_replica[0] <= rids and by_replica[1] <= rids and not by_replica[0] & by_replica[1]
    # batched: while clients send, each replica commits at most once per flush interval (0.2 s), once more on the way out
    tx = _query(url, "SELECT count(DISTINCT xmin::text) FROM inference")[0][0]
    assert tx <= 2 * ((t3 - t1) / 0.2 + 2) and tx < len(everything) / 2, (tx, t3 - t1)

    res = cli(root, "monitor", "--since", "1h", "--no-retrain", "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads(res.stdout)
    assert r["rows"] == rows_sent and r["service"]["requests"] == len(everything), (r["rows"], r["service"])
    assert r["source"] == f"inference log {url.replace(pw, '***')}" and pw not in res.stdout + res.stderr
    print(f"\nreplicas: {len(everything)} requests ({rows_sent} rows) sent in {t2 - t1:.1f} s by {2 * CLIENTS} clients; "
          f"logged {n} rows, {len(logged)} requests in {tx} transactions; servers up {t1 - t0:.1f} s, "
          f"stopped in {t3 - t2:.1f} s; monitor read {r['rows']} rows")


def test_a_database_restart_loses_no_row(pg):
    from mlops_wb.inference_log import InferenceLog
    from mlops_wb.team import start_cluster, stop_cluster
    url = _database(pg, "restart")
    log = InferenceLog(url, "m", flush_interval=3600)
    item = lambda rid: (rid, time.time(), "1", "champion", ["a"], None, {"a": np.array([1.0, 2.0])}, 2, np.array([0, 1]), 1.0)
    log.append(*item("before")); log.request("before", time.time(), "1", 200, 2, 1.0)
    assert log.flush() == 2
    stop_cluster(pg)
    try:
        log.append(*item("during")); log.request("during", time.time(), "1", 200, 2, 1.0)
        assert log.flush() == 0 and log.failures == 1 and len(log.unsent[0]) == 2   # kept in memory
        assert log.flush() == 0 and log.failures == 2                               # still down: still kept
    finally:
        start_cluster(pg)
    log.append(*item("after")); log.request("after", time.time(), "1", 200, 2, 1.0)
    assert log.flush() == 4          # connected again; the kept batch went with the new one
    log.close()
    assert sorted(_query(url, "SELECT request_id, count(*) FROM inference GROUP BY 1")) == \
        [("after", 2), ("before", 2), ("during", 2)]
    assert _query(url, "SELECT count(*) FROM requests")[0][0] == 3
