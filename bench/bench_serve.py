"""`mlops-wb serve` against `mlflow models serve --env-manager local`, same model, same machine, same run.

Usage: .venv/bin/python bench/bench_serve.py [--family linear|random_forest] [--seconds 8]

Registers one model (fitted on the bundled breast-cancer data) in a temporary project, starts
both servers on it, and drives each with the same aiohttp client: single-row requests at
concurrency 1 and 16 (req/s, p50 and p99 latency) and 1,000-row requests at concurrency 4
(rows/s). Prints both side by side with the ratio. The client runs on the same 2 cores as the
server, so absolute figures are lower than on a separate load machine; the ratio is the point.
"""
import argparse, asyncio, json, os, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import aiohttp

BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def setup(root: Path, family: str):
    from mlops_wb.config import load_settings
    from mlops_wb.data import load_demo
    from mlops_wb.registry import register_model
    from mlops_wb.tracking import connect
    from mlops_wb.train import fit_model
    client, eid = connect(load_settings(root, env={}))
    df = load_demo("breast_cancer")
    params = {"max_iter": 2000} if family == "linear" else {"n_estimators": 100, "max_depth": 8, "n_jobs": 1}
    m = fit_model(df, "target", family=family, **params)
    v = register_model(m, df.drop(columns="target").head(5), client.create_run(eid).info.run_id, "bench", alias="champion")
    return df.drop(columns="target"), f"sqlite:///{root}/store/mlflow.db", v


def wait_up(url, proc, log, timeout=120):
    import urllib.request
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None: sys.exit(f"server exited: {log.read_text()}")
        try: urllib.request.urlopen(url, timeout=1); return
        except OSError: time.sleep(0.3)
    sys.exit(f"{url} did not come up")


async def drive(url, bodies, concurrency, seconds):
    lat, n_ok, n_err = [], 0, 0
    stop = time.perf_counter() + seconds
    # A request that gets no answer within 30 s counts as an error (a stalled server once hung the whole bench).
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as s:
        async def worker(i):
            nonlocal n_ok, n_err
            k = i
            while time.perf_counter() < stop:
                body = bodies[k % len(bodies)]
                k += concurrency
                t = time.perf_counter()
                try:
                    async with s.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        if r.status == 200: n_ok += 1
                        else: n_err += 1
                except (asyncio.TimeoutError, aiohttp.ClientError):
                    n_err += 1
                lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        dt = time.perf_counter() - t0
    lat.sort()
    return dict(rps=n_ok / dt, p50=lat[len(lat) // 2] * 1000, p99=lat[int(len(lat) * 0.99)] * 1000, errors=n_err, n=n_ok)


def bodies_for(X, rows, count=64):
    out = []
    for i in range(count):
        part = X.sample(rows, replace=rows > len(X), random_state=i)
        out.append(json.dumps({"dataframe_split": json.loads(part.to_json(orient="split", index=False))}).encode())
    return out


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--family", default="linear"); ap.add_argument("--seconds", type=float, default=8)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlops-wb-bench-serve-"))
    (root / "pipeline.yaml").write_text((Path(__file__).resolve().parents[1] / "pipeline.yaml").read_text())   # marks the project root
    X, uri, version = setup(root, a.family)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_WB_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=uri, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    ours_port, theirs_port = free_port(), free_port()
    servers = {
        "mlops-wb serve": ([str(BIN / "mlops-wb"), "--project", str(root), "serve", "--model", "bench", "--port", str(ours_port)],
                           f"http://127.0.0.1:{ours_port}"),
        "mlflow models serve": ([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/bench/{version}", "--env-manager", "local",
                                 "--host", "127.0.0.1", "-p", str(theirs_port)], f"http://127.0.0.1:{theirs_port}"),
    }
    single, thousand = bodies_for(X, 1), bodies_for(X, 1000, 8)
    cases = [("1 row, concurrency 1", single, 1), ("1 row, concurrency 16", single, 16), ("1,000 rows, concurrency 4", thousand, 4)]
    res = {}
    for name, (cmd, base) in servers.items():
        # The server's output goes to a file: uvicorn logs every request, and an unread pipe fills after
        # ~64 KB and blocks the server mid-request (that, not the server, was the "stall" seen before).
        log = root / f"{name.split()[0]}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_up(base + ("/ready" if name.startswith("mlops") else "/ping"), proc, log)
            asyncio.run(drive(base + "/invocations", single, 4, 1.5))   # warm-up
            for cname, bodies, c in cases:
                res[(name, cname)] = asyncio.run(drive(base + "/invocations", bodies, c, a.seconds))
                print(f"{name:<22} {cname:<26} {res[(name, cname)]}", flush=True)
        finally:
            try: os.killpg(proc.pid, 15); proc.wait(20)
            except ProcessLookupError: pass
    print()
    print(f"model: {a.family} on breast_cancer (30 features); {a.seconds:.0f} s per case; client on the same machine")
    print(f"{'case':<26} {'metric':<10} {'mlops-wb':>10} {'mlflow':>10} {'ratio':>7}")
    for cname, bodies, c in cases:
        o, t = res[("mlops-wb serve", cname)], res[("mlflow models serve", cname)]
        rows = 1000 if bodies is thousand else 1
        if rows == 1:
            print(f"{cname:<26} {'req/s':<10} {o['rps']:10.0f} {t['rps']:10.0f} {o['rps'] / t['rps']:6.1f}x")
            print(f"{'':<26} {'p50 ms':<10} {o['p50']:10.2f} {t['p50']:10.2f}")
            print(f"{'':<26} {'p99 ms':<10} {o['p99']:10.2f} {t['p99']:10.2f}")
        else:
            print(f"{cname:<26} {'rows/s':<10} {o['rps'] * rows:10.0f} {t['rps'] * rows:10.0f} {o['rps'] / t['rps']:6.1f}x")
            print(f"{'':<26} {'p50 ms':<10} {o['p50']:10.2f} {t['p50']:10.2f}")
        if o["errors"] or t["errors"]: print(f"{'':<26} errors: mlops-wb {o['errors']}, mlflow {t['errors']}")


if __name__ == "__main__": main()
