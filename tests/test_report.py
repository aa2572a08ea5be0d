"""`mlops-wb report`: a real project, a real store, a champion and a challenger on shifted data, a failed gate."""
import os, re

import yaml

from conftest import ONE_FAMILY, copy_project, cli, clean_env
from mlops_wb.data import load_demo


def test_report_against_the_champion_and_a_failed_gate(tmp_path):
    root = copy_project(tmp_path / "p", **ONE_FAMILY)
    env = clean_env(); env["MLOPS_WB_APPROVERS"] = os.environ.get("USER", "root")
    res = cli(root, "report", env=env)
    assert res.returncode == 2 and "no pipeline run in the store yet" in res.stderr
    assert cli(root, "run", env=env).returncode == 0
    assert cli(root, "promote", "mlops-wb-model", "1", "--reason", "first", env=env).returncode == 0
    # the next run's data: the 70% of rows with the largest mean_radius (inside validation's ranges, but shifted)
    df = load_demo("breast_cancer")
    df = df[df["mean_radius"] > df["mean_radius"].quantile(0.3)]
    (root / "data").mkdir(); df.to_csv(root / "data" / "shifted.csv", index=False)
    spec = yaml.safe_load((root / "pipeline.yaml").read_text())
    spec["dataset"]["source"] = "data/shifted.csv"
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    # and a gate it cannot pass: nothing registered; the report compares, diffs, checks drift, says why, exits 3
    res = cli(root, "run", "-p", 'evaluate.gate={"thresholds": {"roc_auc": 0.99999}, "tolerance": 1.0}', env=env)
    assert res.returncode == 3, res.stderr

    res = cli(root, "report", "-o", "reports/report.md", "-o", "reports/report.html", "--comment", "reports/comment.md", env=env)
    assert res.returncode == 3, res.stderr
    assert "gate FAILED" in res.stdout and "roc_auc = " in res.stdout and "required >= 0.99999" in res.stdout
    md = (root / "reports" / "report.md").read_text()
    assert md.startswith("## mlops-wb report: gate FAILED") and "- roc_auc = " in md
    assert "The champion (version 1) re-scored on this run's holdout rows." in md
    this, champ, delta, verdict = re.search(r"^\| roc_auc \| ([0-9.]+) \| ([0-9.]+) \| ([-+0-9.]+) \| (\w+) \|$", md, re.M).groups()
    assert abs(float(this) - float(champ) - float(delta)) < 2e-4
    assert verdict == ("better" if float(delta) > 0 else "worse" if float(delta) < 0 else "same")
    assert "| mean_radius | number | 0.0% → 0.0% | mean " in md          # the data diff names the shifted column
    assert re.search(r"\| mean_radius \| ks \| [0-9.]+ \| [0-9.]+ \| DRIFT \|", md)   # and the drift flags it
    assert "dataset drift **yes**" in md and "Family **" in md
    pngs = sorted(p.name for p in (root / "reports" / "report_images").iterdir())
    assert "roc.png" in pngs and all((root / "reports" / "report_images" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for p in pngs: assert f"](report_images/{p})" in md
    comment = (root / "reports" / "comment.md").read_text()
    assert "](report_images/" not in comment and f"{len(pngs)} plots (" in comment
    page = (root / "reports" / "report.html").read_text()
    assert "<h1>mlops-wb report: gate FAILED</h1>" in page and "required &gt;= 0.99999" in page
    assert page.count("data:image/png;base64,") == len(pngs)
    res = cli(root, "report", "-o", "reports/r.txt", env=env)
    assert res.returncode == 2 and "report -o reports/r.txt: expected a .md or .html file" in res.stderr
