"""Issue 14, point 4: no secret leaves its setting. With a webhook URL (secret path, pointing at a closed port so
delivery fails), a serving token, a tracking password and a PostgreSQL inference-log password set, a pipeline run,
and a monitoring run that fires and delivers an alert leave none of them anywhere: not in the
tracking store (its SQLite database dumped as text), not in any artifact, report or executed notebook, not on
stdout or stderr. (A store named by a `postgresql://` URL with a password is masked by the same `redact`; that case
is left to the store-error tests: MLflow retries an unreachable database for about two minutes.)"""
import configparser, json, sqlite3
from pathlib import Path

import yaml
from conftest import cli, clean_env, client_for, copy_project, free_port

PATH_SECRET = "T0SECRET/B0SECRET/hookpathSECRET42"
TOKEN = "srv-tok-SECRET-7731"
TRACKING_PW = "trk-pw-SECRET-5150"
PG_PW = "pg-pw-SECRET-8086"
SECRETS = [PATH_SECRET, "hookpathSECRET42", TOKEN, TRACKING_PW, PG_PW]


def _register_champion(root: Path):
    """Version 1 of the project's model with its reference profile, registered in-process (what the train, evaluate
    and register steps do, without their minute of kernels)."""
    from mlops_wb.data import load_demo
    from mlops_wb.monitor import drift_config, reference_profile
    from mlops_wb.registry import register_model
    from mlops_wb.train import fit_model
    client, eid = client_for(root)
    df = load_demo("breast_cancer")
    X = df.drop(columns="target")
    m = fit_model(df, "target", max_iter=300)
    run = client.create_run(eid)
    v = register_model(m, X.head(5), run.info.run_id, "mlops-wb-model")
    prof = root / "reference_profile.json"
    prof.write_text(json.dumps(reference_profile(X, m.predict(X), drift_config({}), 0)))
    client.log_artifact(run.info.run_id, str(prof), "monitoring")
    client.set_terminated(run.info.run_id, "FINISHED")
    return v, df


def _store_text(root: Path) -> dict:
    "Every text the project keeps: the tracking DB dumped as SQL, and each file of the store and reports/."
    out = {}
    db = root / "store" / "mlflow.db"
    with sqlite3.connect(db) as con: out[str(db)] = "\n".join(con.iterdump())
    for folder in (root / "store", root / "reports"):
        for p in folder.rglob("*"):
            if p.is_file() and p != db: out[str(p)] = p.read_bytes().decode("utf-8", "replace")
    return out


def test_no_secret_in_store_reports_notebooks_or_output(tmp_path):
    root = copy_project(tmp_path / "p", drift={"alerts": [{"kind": "dataset_drift"}]})
    spec = yaml.safe_load((root / "pipeline.yaml").read_text())
    spec["steps"] = spec["steps"][:1]             # ingest: an executed notebook and its report, params, tags
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    hook = f"http://127.0.0.1:{free_port()}/services/{PATH_SECRET}"   # nothing listens: delivery fails
    ini = configparser.ConfigParser()
    ini.read(root / "settings.ini")
    ini["workbench"]["alert_webhook"] = hook                # in settings.ini: not announced by the environment
    ini["workbench"]["serve_token"] = TOKEN
    with open(root / "settings.ini", "w") as f: ini.write(f)
    env = clean_env()
    env.update(MLFLOW_TRACKING_USERNAME="alice", MLFLOW_TRACKING_PASSWORD=TRACKING_PW,
               MLOPS_WB_INFERENCE_LOG=f"postgresql://wb:{PG_PW}@127.0.0.1:{free_port()}/wb")
    outputs = []

    res = cli(root, "run", env=env)
    outputs += [res.stdout, res.stderr]
    assert res.returncode == 0, res.stderr

    version, df = _register_champion(root)
    cur = df.drop(columns="target").sample(120, random_state=1)
    cur[list(cur.columns[:20])] *= 1.6
    cur["target"] = df.loc[cur.index, "target"]
    cur.to_csv(root / "cur.csv", index=False)
    env.pop("MLOPS_WB_INFERENCE_LOG")                       # monitoring a file needs no inference log
    res = cli(root, "monitor", f"mlops-wb-model/{version}", "--data", "cur.csv", "--no-retrain", env=env)
    outputs += [res.stdout, res.stderr]
    assert res.returncode == 0, res.stderr
    assert "ALERT dataset_drift" in res.stdout and "webhook: failed, ConnectionError" in res.stdout, res.stdout
    assert f"http://127.0.0.1:" in res.stdout or "url: /…/****" in res.stdout, res.stdout   # said where, not what

    client, _ = client_for(root)
    alerts = client.search_runs([client.get_experiment_by_name("mlops-wb-alerts").experiment_id], "")
    assert [a.data.tags["mlops_wb.delivery"] for a in alerts] == ["failed"]
    assert "/…/****" in alerts[0].data.tags["mlops_wb.delivery_error"]

    texts = _store_text(root)
    texts.update({f"output {i}": t for i, t in enumerate(outputs)})
    assert any(p.endswith(".ipynb") for p in texts) and any("/reports/" in p for p in texts)
    hits = [(where, s) for where, t in texts.items() for s in SECRETS if s in t]
    print(f"secret scan: {len(texts)} texts ({len(texts) - len(outputs) - 1} files, 1 database dump, "
          f"{len(outputs)} outputs), {sum(len(t) for t in texts.values())} characters, {len(hits)} hits")
    assert hits == [], hits
