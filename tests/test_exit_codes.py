"""Bad input to a CLI verb (a bad flag value, an unknown digest or model, an unreadable file) exits 2 with a message
that says what was wrong, through the real `mlops-wb` command on a fresh project with the embedded store."""
import pytest
from conftest import cli, copy_project

M = "mlops-wb-model"
POSITIVE = "expected a positive whole number"

# (arguments, the message on stderr); none of these needs a pipeline run
BAD_INPUT = {
    "digest too short": (["data", "diff", "abc", "def"],
                         "error: snapshot digest 'abc' is too short; give at least 6 characters"),
    "unknown digest": (["data", "diff", "abcdef", "123456"],
                       "error: data diff: no snapshot with digest 'abcdef'; list them with: mlops-wb data list"),
    "data list count": (["data", "list", "-n", "0"], f"argument -n: 0: {POSITIVE}"),
    "status count": (["status", "-n", "-3"], f"argument -n: -3: {POSITIVE}"),
    "unknown run": (["status", "0123abcd"], "error: status 0123abcd: no pipeline run matches"),
    "unknown model history": (["history", "nope"], "error: model 'nope' has no versions"),
    "unknown model lineage": (["lineage", "nope"], "error: model 'nope' has no versions"),
    "bad time": (["history", "--at", "yesterday"], "error: history --at yesterday: not an ISO time"),
    "score chunk rows": (["score", M, "in.csv", "out.csv", "--chunk-rows", "0"],
                         f"argument --chunk-rows: 0: {POSITIVE}"),
    "score missing input": (["score", M, "missing.csv", "out.csv"], "error: missing.csv: no such file"),
    "serve port": (["serve", "--port", "99999"], "argument --port: 99999: expected a TCP port from 1 to 65535"),
    "serve poll": (["serve", "--poll", "0"], "argument --poll: 0: expected a number above 0"),
    "serve canary": (["serve", "--canary", "2"], "error: --canary 2.0: expected a share between 0 and 1"),
    "ui port": (["ui", "--port", "0"], "argument --port: 0: expected a TCP port"),
    "lab port": (["lab", "--port", "70000"], "argument --port: 70000: expected a TCP port"),
    "dashboard port": (["dashboard", "--port", "-1"], "argument --port: -1: expected a TCP port"),
    "reproduce atol": (["reproduce", M, "1", "--atol", "-1"], "argument --atol: -1: expected a number of 0 or more"),
    "reproduce unknown version": (["reproduce", M, "9"], f"error: model '{M}/9' not found"),
    "unknown step": (["run", "--from", "nope"], "error: --from nope: unknown step; expected one of: ingest"),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("exit") / "p")


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_exits_2_with_a_message(project, case):
    args, says = BAD_INPUT[case]
    res = cli(project, *args, timeout=300)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert says in res.stderr, res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project with one registered model version: what `monitor` needs before it reads --data."""
    root = copy_project(tmp_path_factory.mktemp("trained") / "p")
    res = cli(root, "run")
    assert res.returncode == 0, res.stdout + res.stderr
    (root / "empty.csv").write_bytes(b"")
    (root / "rows.txt").write_text("a,b\n1,2\n")
    return root


UNREADABLE = [("missing.csv", "missing.csv: no file matches"),
              ("empty.csv", "empty.csv: the file is empty (0 bytes)"),
              ("rows.txt", "rows.txt: unsupported file type '.txt'; expected .csv or .parquet")]


@pytest.mark.parametrize("data, says", UNREADABLE)
def test_monitor_with_an_unreadable_data_file_exits_2(trained, data, says):
    res = cli(trained, "monitor", f"{M}/1", "--data", data, "--no-retrain", timeout=300)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)   # a DataError from mlops_wb.data: 1 before
    assert says in res.stderr and res.stderr.startswith("error: "), res.stderr
