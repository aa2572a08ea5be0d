"""Issue 6, the closed loop over real components: the champion served over HTTP, shifted traffic
(and one refused request), labels for it, `mlops-wb monitor` on the inference log: drift and a
metric drop alert, delivered to a local webhook receiver; the drift alert starts a retrain
pipeline run that registers a new @challenger, linked both ways; a second alert inside the
cooldown starts nothing."""
import json, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import yaml
from conftest import clean_env, cli, client_for, copy_project
from test_serve import _post, _split, _start

M = "mlops-wb-model"


class _Receiver(BaseHTTPRequestHandler):
    got = []
    def do_POST(self):
        _Receiver.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass


def test_drift_alert_starts_one_retrain_and_links_it(tmp_path):
    from mlops_wb.data import load_demo
    root = tmp_path / "p"
    df = load_demo("breast_cancer")
    old, new = df.iloc[:420], df.iloc[420:]
    copy_project(root, dataset={"source": "data/*.csv", "target": "target", "task": "auto"},
                 drift={"alerts": [{"kind": "dataset_drift"}, {"kind": "metric_drop", "metric": "accuracy", "by": 0.1}]},
                 retrain={"on": ["dataset_drift"], "data": "source", "promote": "review", "cooldown": "1d"})
    (root / "data").mkdir()
    old.to_csv(root / "data" / "part1.csv", index=False)
    env = clean_env(); env["MLOPS_WB_USER"] = env["MLOPS_WB_APPROVERS"] = "alice"
    res = cli(root, "run", env=env)
    assert res.returncode == 0, res.stderr
    assert cli(root, "promote", M, "1", "--reason", "first model", env=env).returncode == 0

    hook = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    env["MLOPS_WB_ALERT_WEBHOOK"] = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    proc, base = _start(root, env=env)
    try:
        X = df.drop(columns="target").sample(240, random_state=5)
        moved = list(X.columns[:20]); X[moved] = X[moved] * 1.6
        labels = []
        for i in range(0, len(X), 20):
            code, body = _post(base, _split(X.iloc[i:i + 20]), headers={"Content-Type": "application/json"})
            assert code == 200, body
            labels += [{"request_id": body["request_id"], "row": j, "target": int(t)}
                       for j, t in enumerate(df.loc[X.index[i:i + 20], "target"])]
        code, _ = _post(base, b"{", headers={"Content-Type": "application/json"})
        assert code == 400
    finally:
        proc.terminate(); proc.wait(30)
    pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)
    new.to_csv(root / "data" / "part2.csv", index=False)   # newly labelled rows arrived: the retrain has new data

    res = cli(root, "monitor", "--since", "1h", "--labels", "labels.csv", env=env, timeout=900)
    assert res.returncode == 0, res.stderr + res.stdout
    out = res.stdout
    assert "dataset drift: YES" in out and "ALERT dataset_drift" in out and "ALERT metric_drop" in out, out
    assert "server: 13 requests, error rate 0.0% (server errors), client errors 7.7%, 0 aborted" in out, out  # 12 scored, 1 refused
    assert "performance on 240 labelled rows: accuracy" in out and "retrain: started by alert" in out, out
    assert {p["rule"]["kind"] for p in _Receiver.got} == {"dataset_drift", "metric_drop"} and all("text" in p for p in _Receiver.got)

    client, exp = client_for(root)
    alerts = client.search_runs([client.get_experiment_by_name("mlops-wb-alerts").experiment_id],
                                "tags.`mlops_wb.retrain` = 'started'")
    assert len(alerts) == 1
    alert = alerts[0]
    assert json.loads(alert.data.tags["mlops_wb.rule"])["kind"] == "dataset_drift"
    assert alert.data.tags["mlops_wb.delivery"] == "delivered"
    prun = client.get_run(alert.data.tags["mlops_wb.retrain_run"])
    assert prun.data.tags["mlops_wb.trigger_alert"] == alert.info.run_id and prun.info.status == "FINISHED", out
    assert alert.data.tags["mlops_wb.retrain_version"] == "2"
    v2 = client.get_model_version(M, "2")
    assert v2.tags["mlops_wb.trigger_alert"] == alert.info.run_id
    assert str(client.get_model_version_by_alias(M, "challenger").version) == "2"
    assert str(client.get_model_version_by_alias(M, "champion").version) == "1"   # promote: review leaves the champion alone
    lineage = cli(root, "lineage", f"{M}/2", "--json", env=env)
    assert lineage.returncode == 0 and prun.info.run_id in lineage.stdout

    pipelines = lambda: len(client.search_runs([exp], "tags.`mlops_wb.kind` = 'pipeline'"))
    before = pipelines()
    res = cli(root, "monitor", "--since", "1h", env=env)
    assert res.returncode == 0, res.stderr
    assert "retrain: not started: cooldown" in res.stdout, res.stdout
    assert pipelines() == before and len(client.search_model_versions(f"name = '{M}'")) == 2
    skipped = client.search_runs([alert.info.experiment_id], "tags.`mlops_wb.retrain` = 'skipped'")
    assert len(skipped) == 1 and alert.info.run_id in skipped[0].data.tags["mlops_wb.retrain_reason"]
