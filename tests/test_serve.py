"""Issue 5 over real HTTP: bad requests get a 4xx and the server goes on; a hypothesis fuzz run;
the canary share; 16 clients while @champion moves twice; exactly one inference-log row per
scored row; the token; /ready, /metrics, OpenAPI; batch scoring; a killed server keeps what it flushed."""
import asyncio, itertools, json, signal, sqlite3, time, urllib.request
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from conftest import CLI, clean_env, cli, client_for, copy_project, free_port, start_http

M, TOKEN = "mlops-wb-model", "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _register(root):
    """v1 logistic (@champion), v2 a small forest (@challenger), v3 logistic with other params: real registry, no pipeline run."""
    from mlops_wb.data import load_demo
    from mlops_wb.registry import register_model
    from mlops_wb.train import fit_model
    client, exp = client_for(root)
    df = load_demo("breast_cancer"); X = df.drop(columns="target")
    for fam, kw, alias in (("linear", {"max_iter": 2000}, "champion"), ("random_forest", {"n_estimators": 10}, "challenger"),
                           ("linear", {"C": 0.05, "max_iter": 2000}, None)):
        register_model(fit_model(df, "target", family=fam, **kw), X.head(5), client.create_run(exp).info.run_id, M, alias=alias)
    client.set_registered_model_alias(M, "champion", "1")
    return client, X


def _start(root, *args, env=None):
    port = free_port(); base = f"http://127.0.0.1:{port}"
    proc = start_http([CLI, "--project", root, "serve", "--port", port, *args], base + "/health", cwd=root, env=env, what="mlops-wb serve")
    return proc, base


def _post(base, body, headers=AUTH, path="/invocations"):
    req = urllib.request.Request(base + path, body if isinstance(body, bytes) else json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _split(X):
    return {"dataframe_split": json.loads(X.to_json(orient="split", index=False))}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("serve") / "p")
    client, X = _register(root)
    env = clean_env(); env["MLOPS_WB_SERVE_TOKEN"] = TOKEN
    proc, base = _start(root, "--canary", "0.1", "--poll", "0.5", "--flush-interval", "0.2", "--max-rows", "2000",
                        "--max-bytes", "1000000", env=env)
    yield dict(root=root, client=client, X=X, base=base, proc=proc, log=root / "store" / "inference.db")
    if proc.poll() is None: proc.terminate(); proc.wait(20)


def _ok(s, X):
    status, body = _post(s["base"], _split(X.head(2)))
    assert status == 200 and len(body["predictions"]) == 2, body


def test_bad_requests_get_4xx_and_the_server_goes_on(server):
    s, X = server, server["X"]
    row = json.loads(X.head(1).to_json(orient="records"))[0]
    cases = {
        "missing column": ({"dataframe_records": [{k: v for k, v in row.items() if k != "mean_radius"}]}, 422, "mean_radius"),
        "wrong type": ({"dataframe_records": [{**row, "mean_radius": [1, 2]}]}, 422, "mean_radius"),
        "numeric string": ({"dataframe_records": [{**row, "mean_area": "1.5"}]}, 422, "mean_area"),
        "boolean": ({"dataframe_records": [{**row, "mean_area": True}]}, 422, "mean_area"),
        "infinity": (json.dumps({"dataframe_records": [row]}).replace(str(row["mean_area"]), "1e999", 1).encode(), 400, None),
        "NaN literal": (json.dumps({"dataframe_records": [{**row, "mean_area": float("nan")}]}).encode(), 400, None),
        "empty batch": ({"dataframe_split": {"columns": list(X.columns), "data": []}}, 422, "dataframe_split"),
        "truncated JSON": (json.dumps(_split(X.head(3))).encode()[:-25], 400, None),
        "not an object": (b"[1, 2, 3]", 422, None),
        "two formats": ({**_split(X.head(1)), "instances": [row]}, 422, None),
        "ragged rows": ({"dataframe_split": {"columns": list(X.columns), "data": [[1.0, 2.0]]}}, 422, "data[0]"),
        "too many rows": (_split(X.sample(2001, replace=True, random_state=0)), 413, "dataframe_split"),
        "body too large": (b'{"inputs": "' + b"x" * 1_200_000 + b'"}', 413, "body"),
    }
    for name, (body, status, field) in cases.items():
        got, text = _post(s["base"], body)
        assert got == status, (name, got, text)
        err = json.loads(text)
        assert err["error_code"] and err["message"] and "Traceback" not in text, (name, text)
        if field: assert err["field"] == field, (name, err)
        _ok(s, X)   # the next request is served normally
    got, text = _post(s["base"], json.dumps(_split(X.head(1))).encode(), {**AUTH, "Content-Type": "text/csv"})
    assert got == 415 and "application/json" in text
    got, text = _post(s["base"], _split(X.head(1)), {"Content-Type": "application/json"})
    assert got == 401 and json.loads(text)["error_code"] == "UNAUTHORIZED"
    got, _ = _post(s["base"], _split(X.head(1)), {"Content-Type": "application/json", "Authorization": "Bearer nope"})
    assert got == 401
    # policy: extra columns are ignored and named; null is a missing value the model imputes
    status, body = _post(s["base"], {"dataframe_records": [{**row, "extra": 1, "mean_area": None}], "params": {"probabilities": True}})
    assert status == 200 and body["ignored_columns"] == ["extra"] and len(body["probabilities"][0]) == 2 and body["classes"] == [0, 1]
    # every MLflow input format
    for body in (_split(X.head(2)), {"dataframe_records": json.loads(X.head(2).to_json(orient="records"))},
                 {"instances": json.loads(X.head(2).to_json(orient="records"))}, {"inputs": {c: X[c].head(2).tolist() for c in X.columns}}):
        status, res = _post(s["base"], body)
        assert status == 200 and len(res["predictions"]) == 2 and res["request_id"] and res["model_version"] in ("1", "2")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)


def _bodies(columns):
    col = st.sampled_from(columns + ["extra", ""])
    record = st.dictionaries(col, json_values, max_size=6)
    return st.one_of(
        json_values,
        st.fixed_dictionaries({"dataframe_records": st.lists(record, max_size=3)}),
        st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries({"columns": st.lists(col, max_size=4), "data": json_values})}),
        st.fixed_dictionaries({"instances": json_values}),
        st.fixed_dictionaries({"inputs": st.dictionaries(col, json_values, max_size=4)}),
        st.binary(max_size=64))


def test_fuzzed_bodies_never_get_a_5xx(server):
    s = server
    statuses = []
    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(_bodies(list(s["X"].columns)))
    def check(body):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, text = _post(s["base"], raw)
        statuses.append(status)
        assert 400 <= status < 500 or status == 200, (status, text)
        if status != 200: assert "Traceback" not in text and json.loads(text)["error_code"]
    check()
    assert len(statuses) == 200 and statuses.count(200) < 200
    _ok(s, s["X"])
    spec = json.loads(urllib.request.urlopen(s["base"] + "/openapi.json").read())
    assert "dataframe_split" in json.dumps(spec["paths"]["/invocations"]["post"]["requestBody"])


async def _load(base, bodies, clients, total, key=None, stop=None):
    """`total` requests (or as many as fit until the asyncio.Event `stop` is set) from `clients` concurrent
    clients; returns the (status, version) of each."""
    out, it = [], iter(range(total)) if stop is None else itertools.count()
    async with aiohttp.ClientSession() as sess:
        async def worker(w):
            for i in it:
                if stop is not None and stop.is_set(): break
                h = {**AUTH, **({"X-Client-Key": key(i)} if key else {})}
                async with sess.post(base + "/invocations", data=bodies[i % len(bodies)], headers=h) as r:
                    b = await r.read()
                    out.append((r.status, json.loads(b).get("model_version") if r.status == 200 else b.decode()))
        await asyncio.gather(*(worker(w) for w in range(clients)))
    return out


def _bodies_for(X, n=50):
    return [json.dumps(_split(X.iloc[[i % len(X)]])).encode() for i in range(n)]


def test_canary_share_and_stickiness(server):
    s = server
    res = asyncio.run(_load(s["base"], _bodies_for(s["X"]), 16, 5000))
    assert all(st_ == 200 for st_, _ in res)
    share = sum(v == "2" for _, v in res) / len(res)
    assert abs(share - 0.10) <= 0.02, share
    # with a client key the choice is sticky: every request of one key is answered by one version
    seen = set()
    for k in range(40):
        vs = asyncio.run(_load(s["base"], _bodies_for(s["X"], 5), 2, 8, key=lambda i, k=k: f"client-{k}"))
        assert len({v for _, v in vs}) == 1, (k, vs)
        seen |= {v for _, v in vs}
    assert seen == {"1", "2"}   # 40 keys at 10%: both sides occur (fixed keys, so this is deterministic)


def test_hot_swap_under_load_drops_nothing(server):
    s, client = server, server["client"]
    async def run():
        loop, stop = asyncio.get_running_loop(), asyncio.Event()
        def champion():
            return json.loads(urllib.request.urlopen(s["base"] + "/ready", timeout=10).read())["versions"]["champion"]
        async def served(version):      # the server has swapped (it polls every 0.5 s; loading takes a moment)
            for _ in range(240):
                if await loop.run_in_executor(None, champion) == version: return
                await asyncio.sleep(0.25)
            raise AssertionError(f"version {version} never became the served champion")
        async def mover():
            try:
                await asyncio.sleep(1.0)
                for v in ("3", "1"):
                    await loop.run_in_executor(None, client.set_registered_model_alias, M, "champion", v)
                    await served(v); await asyncio.sleep(1.0)   # requests keep coming while each version serves
            finally: stop.set()
        load = asyncio.ensure_future(_load(s["base"], _bodies_for(s["X"]), 16, None, key=lambda i: f"swap-{i}", stop=stop))
        await mover()
        return await load
    res = asyncio.run(run())
    assert [r for r in res if r[0] != 200] == []                     # zero failed requests
    versions = {v for _, v in res}
    assert {"1", "3"} <= versions, versions                           # both champions answered during the run
    time.sleep(0.6)
    con = sqlite3.connect(s["log"])
    logged = {v for (v,) in con.execute("SELECT DISTINCT model_version FROM inference WHERE client_key LIKE 'swap-%'")}
    assert {"1", "3"} <= logged
    m = urllib.request.urlopen(s["base"] + "/metrics").read().decode()
    swaps = float(next(l.split()[-1] for l in m.splitlines() if l.startswith("mlops_wb_model_swaps_total")))
    assert swaps >= 4, m   # champion + challenger at start, then the two moves


def test_every_scored_row_is_logged_exactly_once(server):
    s = server
    res = asyncio.run(_load(s["base"], _bodies_for(s["X"]), 16, 10_000, key=lambda i: f"count-{i}"))
    assert sum(st_ == 200 for st_, _ in res) == 10_000
    time.sleep(1.0)   # > flush interval
    con = sqlite3.connect(s["log"])
    n, distinct = con.execute("SELECT count(*), count(DISTINCT request_id) FROM inference WHERE client_key LIKE 'count-%'").fetchone()
    assert n == 10_000 and distinct == 10_000
    from mlops_wb.inference_log import read_inference_log
    df = read_inference_log(s["log"])
    assert {"mean_radius", "prediction", "model_version", "latency_ms"} <= set(df.columns)


def test_health_ready_metrics(server):
    s = server
    assert json.loads(urllib.request.urlopen(s["base"] + "/ready").read())["versions"]["champion"] == "1"
    m = urllib.request.urlopen(s["base"] + "/metrics").read().decode()
    assert 'mlops_wb_requests_total{status="200",version="1"}' in m and 'mlops_wb_request_latency_seconds_bucket' in m
    assert 'mlops_wb_requests_total{status="422"' in m


def test_no_champion_is_not_ready(tmp_path):
    root = copy_project(tmp_path / "p")
    proc, base = _start(root)
    try:
        try: urllib.request.urlopen(base + "/ready"); code = 200
        except urllib.error.HTTPError as e: code = e.code
        assert code == 503
        status, text = _post(base, {"inputs": {"a": [1]}}, {"Content-Type": "application/json"})
        assert status == 503 and "mlops-wb promote" in text
    finally:
        proc.terminate(); proc.wait(20)


def test_batch_score_file(server):
    s = server
    big = s["X"].sample(5000, replace=True, random_state=1)
    big.to_csv(s["root"] / "in.csv", index=False)
    res = cli(s["root"], "score", f"{M}@champion", "in.csv", "out.parquet", "--chunk-rows", "1000")
    assert res.returncode == 0, res.stderr
    out = pd.read_parquet(s["root"] / "out.parquet")
    assert len(out) == 5000 and set(out.model_version) == {"1"} and "prediction" in out
    big.drop(columns="mean_area").to_csv(s["root"] / "bad.csv", index=False)
    res = cli(s["root"], "score", f"{M}/1", "bad.csv", "bad.parquet")
    assert res.returncode == 2 and "missing column 'mean_area'" in res.stderr
    assert not list(s["root"].glob("*bad.parquet*"))
    big.iloc[:0].to_csv(s["root"] / "header.csv", index=False)          # a header without rows
    (s["root"] / "empty.csv").write_text("")
    (s["root"] / "ragged.csv").write_text(",".join(big.columns) + "\n1,2\n" + ",".join(["1"] * (len(big.columns) + 3)) + "\n")
    for name, why in (("header.csv", "no rows to score"), ("empty.csv", "empty file"), ("ragged.csv", "not a readable CSV file")):
        res = cli(s["root"], "score", f"{M}/1", name, "none.csv")
        assert res.returncode == 2 and why in res.stderr and "internal error" not in res.stderr, (name, res.stderr)
        assert not list(s["root"].glob("*none.csv*"))


# Issue 14: the HTTP contract at the edges, over real HTTP and raw sockets.

def test_a_clients_mistake_is_a_4xx_naming_it(server):
    s, X = server, server["X"]
    row = json.loads(X.head(1).to_json(orient="records"))[0]
    cols = list(X.columns)
    from mlops_wb.serve import canary_pick
    key = next(k for k in (f"edge-{i}" for i in range(100)) if not canary_pick(0.1, k))   # @champion (logistic) answers
    H = {**AUTH, "X-Client-Key": key}
    cases = {   # name: (body, headers, status, error_code, field, words in the message)
        "finite but too large": ({"dataframe_records": [row, {**row, "mean_smoothness": 1e308}]}, H, 422, "OUT_OF_RANGE",
                                 "mean_smoothness", "row 1: column 'mean_smoothness' = 1e+308 is too large"),
        "second record lacks 29 of 30": ({"dataframe_records": [row, {cols[0]: row[cols[0]]}]}, H, 422, "MISSING_VALUE",
                                         cols[1], "dataframe_records[1] leaves out 29 of the 30 columns"),
        "application/jsonxyz": ({"dataframe_records": [row]}, {**H, "Content-Type": "application/jsonxyz"}, 415,
                                "UNSUPPORTED_MEDIA_TYPE", "Content-Type", "send application/json"),
        "another charset": ({"dataframe_records": [row]}, {**H, "Content-Type": "application/json; charset=latin-1"}, 415,
                            "UNSUPPORTED_MEDIA_TYPE", "Content-Type", "send UTF-8 JSON"),
        "probabilities not a boolean": ({"dataframe_records": [row], "params": {"probabilities": "yes"}}, H, 422,
                                        "BAD_FORMAT", "params.probabilities", "true or false"),
        "column names not strings": ({"dataframe_split": {"columns": [[1]], "data": [[1]]}}, H, 422, "BAD_FORMAT",
                                     "columns", "column names must be strings"),
        "records not a list": ({"dataframe_records": row}, H, 422, "BAD_FORMAT", "dataframe_records", "a list of records"),
    }
    for name, (body, headers, status, code, field, says) in cases.items():
        got, text = _post(s["base"], body, headers)
        err = json.loads(text)
        assert (got, err["error_code"], err["field"]) == (status, code, field), (name, got, text)
        assert says in err["message"], (name, err)
    # every feature at +-1e308, one at a time: a 422 or an answer, never a 500
    for c in cols:
        for v in (1e308, -1e308):
            got, text = _post(s["base"], {"dataframe_records": [{**row, c: v}]}, H)
            assert got in (200, 422), (c, v, got, text)
            if got == 422: assert json.loads(text)["field"] == c, (c, text)
    status, body = _post(s["base"], {"dataframe_records": [row, {**row, "mean_area": None}]}, H)   # null is still a missing value
    assert status == 200 and len(body["predictions"]) == 2, body
    assert _post(s["base"], b"", {"Authorization": "Bearer nope"}, "/admin/reload")[0] == 401
    assert _post(s["base"], b"", {"Authorization": f"Bearer {TOKEN}"}, "/admin/reload")[0] == 200


LAUNCH = """import sys
from mlops_wb.config import load_settings
from mlops_wb.serve import ServeOptions, serve
root, port = sys.argv[1], int(sys.argv[2])
s = load_settings(root)
opts = ServeOptions(s.model_name, token=sys.argv[3], body_timeout=2.0, max_slow_bodies=2, flush_interval=0.1,
                    log_path=str(s.inference_log))
serve(s, opts, host="0.0.0.0", port=port)   # beyond loopback: it starts because it has a token
"""


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """A server on 0.0.0.0 with a token, a 2 s body timeout and 2 places for bodies that arrive in pieces (options the
    CLI does not all have)."""
    import sys
    root = copy_project(tmp_path_factory.mktemp("slow") / "p")
    _register(root)
    port = free_port()
    proc = start_http([sys.executable, "-c", LAUNCH, root, port, TOKEN], f"http://127.0.0.1:{port}/health", cwd=root, what="serve")
    yield dict(root=root, port=port, base=f"http://127.0.0.1:{port}", log=root / "store" / "inference.db")
    if proc.poll() is None: proc.terminate(); proc.wait(20)


def _partial(port, body=b'{"dataframe_records": [', length=1000, headers_done=True):
    """A raw connection that sends its headers (or half of them) and part of a body, then waits."""
    import socket
    s = socket.create_connection(("127.0.0.1", port))
    head = (f"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n")
    s.sendall((head + "\r\n").encode() + body if headers_done else head.encode())
    return s


def _answer(sock, wait=20.0):
    """What the server does with a waiting connection: its status line, or 'closed'; 'open' if nothing within `wait` s."""
    import socket
    sock.settimeout(wait)
    got = b""
    try:
        while chunk := sock.recv(4096): got += chunk     # the whole answer: the server closes after it
    except socket.timeout:
        if not got: return "open", b""
    finally: sock.close()
    return (got.split(b"\r\n")[0].decode() if got else "closed"), got


def _slow_bodies(base):
    m = urllib.request.urlopen(base + "/metrics").read().decode()
    return float(next(l.split()[-1] for l in m.splitlines() if l.startswith("mlops_wb_slow_bodies ")))


def test_slow_bodies_time_out_and_are_capped(slow_server):
    s = slow_server
    status, raw = _answer(_partial(s["port"]))
    assert status == "HTTP/1.1 408 Request Timeout" and b"BODY_TIMEOUT" in raw and b"connection: close" in raw.lower(), raw
    assert _answer(_partial(s["port"], headers_done=False))[0] == "closed"    # half its headers: closed (2 s + 5 s grace)
    # two bodies in pieces take the two places; a third is refused at once; once they time out, a request is served
    held = [_partial(s["port"]) for _ in range(2)]
    deadline = time.time() + 1.5
    while _slow_bodies(s["base"]) < 2 and time.time() < deadline: time.sleep(0.05)
    assert _slow_bodies(s["base"]) == 2
    status, raw = _answer(_partial(s["port"]), wait=1.5)
    assert status == "HTTP/1.1 429 Too Many Requests" and b"TOO_MANY_SLOW_BODIES" in raw, raw
    assert [_answer(h)[0] for h in held] == ["HTTP/1.1 408 Request Timeout"] * 2
    assert _slow_bodies(s["base"]) == 0                                      # the places are given back
    from mlops_wb.data import load_demo
    status, body = _post(s["base"], _split(load_demo("breast_cancer").drop(columns="target").head(1)))
    assert status == 200, body
    assert _post(s["base"], b"", {}, "/admin/reload")[0] == 401     # on 0.0.0.0 the admin routes need the token


def test_a_client_gone_mid_body_is_a_client_abort(slow_server):
    s = slow_server
    for _ in range(3):
        _partial(s["port"]).close()     # headers and part of the body, then gone
    deadline = time.time() + 10
    while True:   # the abort reaches the log within a flush interval (0.1 s)
        rows = dict(sqlite3.connect(s["log"]).execute("SELECT status, count(*) FROM requests GROUP BY status").fetchall())
        if rows.get(499, 0) >= 3 or time.time() > deadline: break
        time.sleep(0.2)
    assert rows.get(499, 0) >= 3 and 500 not in rows, rows
    m = urllib.request.urlopen(s["base"] + "/metrics").read().decode()
    assert 'mlops_wb_requests_total{status="499",version="none"}' in m and 'status="500"' not in m, m
    from mlops_wb.inference_log import read_service_log
    sv = read_service_log(s["log"])
    assert sv["error_rate"] == 0.0 and sv["client_aborts"] >= 3, sv    # what the error_rate alert watches: nothing


def test_beyond_loopback_needs_a_token(tmp_path):
    root = copy_project(tmp_path / "p")
    import subprocess
    res = subprocess.run([str(CLI), "--project", str(root), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                         cwd=root, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "serve host 0.0.0.0 (--host, serve_host or MLOPS_WB_SERVE_HOST): listening beyond this machine needs a token" in res.stderr, res
    assert "serving" not in res.stdout     # with a token it starts there: `slow_server` listens on 0.0.0.0



def test_killed_server_keeps_what_it_flushed(server):
    s = server
    res = asyncio.run(_load(s["base"], _bodies_for(s["X"]), 4, 300, key=lambda i: f"kill-{i}"))
    assert all(st_ == 200 for st_, _ in res)
    time.sleep(1.0)   # several flush intervals (0.2 s)
    s["proc"].send_signal(signal.SIGKILL); s["proc"].wait(10)
    n = sqlite3.connect(s["log"]).execute("SELECT count(*) FROM inference WHERE client_key LIKE 'kill-%'").fetchone()[0]
    assert n == 300
