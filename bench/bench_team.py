"""The team server against the embedded store, same machine, same run: cold and cached pipeline runs,
`mlops-wb serve` start-up, and `mlops-wb monitor --data` on the champion.

Usage: .venv/bin/python bench/bench_team.py [--full]

Starts a throwaway team server (`mlops-wb server init`: PostgreSQL + mlflow server with logins) and an
approver on it, makes two copies of the project (one on the embedded SQLite store, one on the server),
and times the same commands in both. `--full` uses the default tuning budget (slower); the default is the
test suite's small budget. Prints seconds side by side and the ratio server / embedded.
"""
import argparse, shutil, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import CLI, clean_env, copy_project, free_port  # noqa: E402

ADMIN, USER, PW = "admin-password-bench", "bench", "bench-password-1"


def timed(cmd, env, stdin=None, timeout=1800):
    t = time.perf_counter()
    res = subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
    if res.returncode: sys.exit(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - t, res.stdout


def serve_startup(root, env):
    """Seconds from starting `mlops-wb serve` to its /ready answering 200."""
    port = free_port()
    t = time.perf_counter()
    p = subprocess.Popen([str(CLI), "--project", str(root), "serve", "--port", str(port), "--no-log"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - t < 300:
            if p.poll() is not None: sys.exit(f"serve exited with {p.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    if r.status == 200: return time.perf_counter() - t
            except OSError: time.sleep(0.1)
        sys.exit("serve did not become ready in 300 s")
    finally:
        p.terminate(); p.wait(30)


def one_store(name, root, env, data):
    out = {}
    out["cold run"], _ = timed([CLI, "--project", root, "run"], env)
    out["cached run"], _ = timed([CLI, "--project", root, "run"], env)
    model = "mlops-wb-model"
    timed([CLI, "--project", root, "promote", model, "1", "--reason", "bench"], env)
    out["serve start-up (to /ready)"] = serve_startup(root, env)
    out["monitor --data (569 rows)"], _ = timed([CLI, "--project", root, "monitor", "--data", data, "--no-retrain"], env)
    print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in out.items()), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--full", action="store_true"); a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mlops-wb-bench-team-", dir="/tmp"))
    base.chmod(0o755)   # PostgreSQL runs as the postgres user: it must be able to enter the folder
    emb, team = copy_project(base / "embedded", small=not a.full), copy_project(base / "team", small=not a.full)
    from mlops_wb.data import load_demo
    data = base / "current.csv"
    load_demo("breast_cancer").drop(columns="target").to_csv(data, index=False)
    port, pg = free_port(), free_port()
    t_init, _ = timed([CLI, "--project", team, "server", "init", base / "srv", "--port", port, "--pg-port", pg,
                       "--admin-password-stdin"], clean_env(), stdin=ADMIN + "\n")
    url = f"http://127.0.0.1:{port}"
    try:
        admin = {**clean_env(), "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin",
                 "MLFLOW_TRACKING_PASSWORD": ADMIN}
        t_user, _ = timed([CLI, "--project", team, "users", "add", USER, "--role", "approver", "--password-stdin"],
                          admin, stdin=PW + "\n")
        import getpass
        e = one_store("embedded", emb, {**clean_env(), "MLOPS_WB_APPROVERS": getpass.getuser()}, data)
        s = one_store("server", team, {**clean_env(), "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": USER,
                                       "MLFLOW_TRACKING_PASSWORD": PW}, data)
    finally:
        subprocess.run([str(CLI), "--project", str(team), "server", "stop", str(base / "srv")], capture_output=True,
                       env=clean_env(), timeout=120)
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"pipeline: {'default' if a.full else 'small'} tuning budget; server and client on the same machine")
    print(f"{'':<30} {'embedded':>9} {'server':>9} {'server/embedded':>16}")
    for k in e: print(f"{k:<30} {e[k]:9.1f} {s[k]:9.1f} {s[k] / e[k]:15.1f}x")
    print(f"{'server init (once)':<30} {'':>9} {t_init:9.1f}")
    print(f"{'users add (once per user)':<30} {'':>9} {t_user:9.1f}")


if __name__ == "__main__": main()
