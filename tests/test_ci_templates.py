"""`mlops-wb ci init`: the files validate (GitHub's and GitLab's published schemas, a Groovy parse and the declarative
structure for the Jenkinsfile), and their shell steps, run in order in a fresh copy of the project, produce the report,
post it to a (local, real) HTTP API, promote only under `promote: auto`, and fail the job on a failed gate."""
import json, os, re, shutil, subprocess, sys, textwrap, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO, CLI, ONE_FAMILY, copy_project, cli, clean_env, client_for
from mlops_wb.ci import CI_FILES, shell_steps

BIN = Path(sys.executable).parent


def check_jsonschema(schema: str, path: Path):
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)], capture_output=True, text=True)


# --- the Jenkinsfile: Groovy that parses, in the shape of a declarative pipeline -----------------------------------
SECTIONS = {"agent", "stages", "options", "environment", "post", "parameters", "triggers", "tools", "libraries"}
STAGE_SECTIONS = {"steps", "stages", "parallel", "matrix", "when", "environment", "options", "post", "agent", "tools", "input"}


def _groovy_tree(text: str):
    import tree_sitter as ts, tree_sitter_groovy as g
    return ts.Parser(ts.Language(g.language())).parse(text.encode())


def _name(node) -> str:
    "The leading identifier of a statement: `pipeline {`, `agent any`, `stage('x') {`."
    for c in node.children:
        if c.type in ("identifier", "type_identifier"): return c.text.decode()
        if c.type in ("method_invocation", "juxt_function_call", "local_variable_declaration", "expression_statement"):
            return _name(c)
    return ""


def _closure(node):
    "The closure (block) a statement opens, if any."
    for c in node.children:
        if c.type == "closure": return c
        if c.type in ("method_invocation", "expression_statement"):
            k = _closure(c)
            if k is not None: return k
    return None


def _statements(closure) -> list:
    return [c for c in closure.children if c.is_named and not c.type.endswith("comment")]


def declarative_errors(text: str) -> list:
    "What is wrong with a declarative Jenkinsfile: Groovy syntax errors, then the pipeline's structure."
    tree = _groovy_tree(text)
    if tree.root_node.has_error:
        bad = []
        def walk(n):
            if n.type == "ERROR" or n.is_missing: bad.append(f"syntax error at line {n.start_point[0] + 1}")
            for c in n.children: walk(c)
        walk(tree.root_node)
        return bad or ["syntax error"]
    tops = [c for c in tree.root_node.children if c.is_named and not c.type.endswith("comment")]
    if len(tops) != 1 or _name(tops[0]) != "pipeline" or _closure(tops[0]) is None:
        return ["the file must hold one `pipeline { ... }` block"]
    errs, names = [], [_name(s) for s in _statements(_closure(tops[0]))]
    errs += [f"unknown section {n!r} in pipeline" for n in names if n not in SECTIONS]
    errs += [f"pipeline needs {s!r}" for s in ("agent", "stages") if s not in names]
    for s in _statements(_closure(tops[0])):
        if _name(s) != "stages": continue
        stages = _statements(_closure(s))
        if not stages: errs.append("stages is empty")
        for st in stages:
            if _name(st) != "stage": errs.append(f"{_name(st)!r} inside stages: expected stage('name')"); continue
            inner = [_name(x) for x in _statements(_closure(st))]
            errs += [f"unknown section {n!r} in a stage" for n in inner if n not in STAGE_SECTIONS]
            if not {"steps", "stages", "parallel", "matrix"} & set(inner): errs.append("a stage needs steps, stages or parallel")
    return errs


def test_files_validate(tmp_path):
    root = copy_project(tmp_path / "p")
    for platform in CI_FILES:
        res = cli(root, "ci", "init", platform)
        assert res.returncode == 0, res.stderr
        assert f"wrote {root / CI_FILES[platform]}" in res.stdout
    res = cli(root, "ci", "init", "github")
    assert res.returncode == 2 and "exists; remove it or pass --force" in res.stderr
    gh, gl, jf = (root / CI_FILES[p] for p in ("github", "gitlab", "jenkins"))
    for schema, f in (("vendor.github-workflows", gh), ("vendor.gitlab-ci", gl)):
        r = check_jsonschema(schema, f)
        assert r.returncode == 0, r.stdout + r.stderr
    assert declarative_errors(jf.read_text()) == []
    assert cli(root, "ci", "init", "jenkins", "--team", "--force").returncode == 0
    assert declarative_errors(jf.read_text()) == [] and "withCredentials([string(credentialsId: 'mlflow-tracking-uri'" in jf.read_text()
    # the checks fail on broken files
    bad = yaml.safe_load(gh.read_text()); del bad["jobs"]["pipeline"]["runs-on"]
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(bad))
    assert check_jsonschema("vendor.github-workflows", tmp_path / "bad.yml").returncode == 1
    bad = yaml.safe_load(gl.read_text()); bad["mlops-wb"]["script"] = 5
    (tmp_path / "bad-gl.yml").write_text(yaml.safe_dump(bad))
    assert check_jsonschema("vendor.gitlab-ci", tmp_path / "bad-gl.yml").returncode == 1
    text = jf.read_text()
    assert declarative_errors(text.replace("  stages {", "  stages {{", 1))[0].startswith("syntax error")
    assert "pipeline needs 'agent'" in declarative_errors(text.replace("  agent any\n", ""))
    assert "a stage needs steps, stages or parallel" in declarative_errors(text.replace("steps {", "stepz {", 1).replace("stepz", "when"))
    # no secret value in any file: only the names of secrets
    for f in (gh, gl, jf): assert "password1234" not in f.read_text() and "http://" not in f.read_text()


# --- running the steps ------------------------------------------------------------------------------------------
class _Api(BaseHTTPRequestHandler):
    posts: list = []
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(dict(path=self.path, headers=dict(self.headers), body=json.loads(body)))
        self.send_response(201); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'{"id": 1}')
    def log_message(self, *a): pass


@pytest.fixture
def api():
    _Api.posts = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Api.posts
    srv.shutdown()


def scripts_of(platform: str, text: str) -> list:
    "The shell scripts of a generated file, in the order the platform runs them."
    if platform == "github":
        return [s["run"] for s in yaml.safe_load(text)["jobs"]["pipeline"]["steps"] if "run" in s]
    if platform == "gitlab":
        job = yaml.safe_load(text)["mlops-wb"]
        return job["before_script"] + job["script"]
    # a Groovy '''string''' holds the lines as written (indented) and turns \\\\ into \\
    return [s.replace("\\\\", "\\") for s in re.findall(r"sh '''\n(.*?)\n *'''", text, re.S)]


def ci_project(tmp_path, platform, **spec) -> Path:
    """A fresh copy of the project with its CI file, the Makefile and pins, and a `.venv/` whose folders are this
    machine's but whose install stamp is its own and newer than the pins: a restored CI cache, so `make setup`
    decides by its own rule that there is nothing to install (and never installs into the shared environment)."""
    root = copy_project(tmp_path / platform, **{**ONE_FAMILY, **spec})
    for f in ("Makefile", "pyproject.toml", "requirements.lock"): shutil.copy2(REPO / f, root / f)
    venv = root / ".venv"; venv.mkdir()
    for f in (REPO / ".venv").iterdir():
        if f.name != ".mlops-wb-installed": (venv / f.name).symlink_to(f)
    (venv / ".mlops-wb-installed").touch()
    assert cli(root, "ci", "init", platform).returncode == 0
    return root


def run_steps(root: Path, platform: str, env: dict) -> list:
    "Run each shell step as the platform would (sh -e), in order; the exit status of each."
    text = (root / CI_FILES[platform]).read_text()
    scripts = scripts_of(platform, text)
    want = [s for _, s in shell_steps(platform)]
    assert [textwrap.dedent(x).rstrip("\n") for x in scripts[-len(want):]] == want   # exactly the library's steps, in order
    env = {k: v for k, v in env.items() if not k.startswith(("MAKE", "MFLAGS"))}   # a CI runner is not inside `make test`
    out = []
    for s in scripts:
        r = subprocess.run(["sh", "-e", "-c", s], cwd=root, env=env, capture_output=True, text=True, timeout=900)
        out.append((r.returncode, r.stdout + r.stderr))
    return out


def test_github_pull_request(tmp_path, api):
    url, posts = api
    root = ci_project(tmp_path, "github", tuning={"trials": 4, "cv": 3})   # the project's budget; a pull request's is 2
    env = dict(clean_env(), GITHUB_EVENT_NAME="pull_request", PR_NUMBER="7", GH_TOKEN="t0ken", GITHUB_API_URL=url,
               GITHUB_REPOSITORY="team/models", MLOPS_WB_CI_BUDGET="small")
    res = run_steps(root, "github", env)
    assert res[0] == (0, "make: Nothing to be done for 'setup'.\n"), res[0]
    assert [c for c, _ in res] == [0] * len(res), res
    log = "\n".join(o for _, o in res)
    assert "mlops-wb run exited with status 0" in log and "report posted on pull request #7" in log
    assert "@champion left alone" in log
    ci = root / "reports" / "ci"
    run_id = (ci / "run-id").read_text().strip()
    md = (ci / "report.md").read_text()
    assert md.startswith("## mlops-wb report: gate passed") and run_id in md
    assert "plots (" in (ci / "comment.md").read_text() and "](report_images/" in md
    assert (ci / "report.html").read_text().count("data:image/png;base64,") >= 3
    assert len(posts) == 1 and posts[0]["path"] == "/repos/team/models/issues/7/comments"
    assert posts[0]["headers"]["Authorization"] == "Bearer t0ken" and posts[0]["body"]["body"] == (ci / "comment.md").read_text()
    # the small budget reached the train step: 2 trials, not the project's 4 (the store is this run's alone)
    client, exp = client_for(root)
    trials = client.search_runs([exp], "tags.`mlops_wb.kind` = 'trial'")
    fams = {t.data.tags.get("mlops_wb.family") for t in trials}
    assert fams == {"linear"} and len(trials) == 2, [t.data.tags for t in trials]


def test_gitlab_main_branch_promotes_under_auto(tmp_path, api):
    url, posts = api
    root = ci_project(tmp_path, "gitlab", retrain={"promote": "auto"})
    env = dict(clean_env(), CI_COMMIT_BRANCH="main", MLOPS_WB_CI_BUDGET="full", CI_API_V4_URL=url, CI_PROJECT_ID="3",
               MLOPS_WB_GITLAB_TOKEN="glpat", MLOPS_WB_APPROVERS=os.environ.get("USER", "root"))
    res = run_steps(root, "gitlab", env)
    assert [c for c, _ in res] == [0] * len(res), res
    log = "\n".join(o for _, o in res)
    assert "not a merge request: no comment" in log and not posts
    assert "mlops-wb-model@champion -> version 1 (retrain.promote: auto)" in log
    client, _ = client_for(root)
    assert str(client.get_model_version_by_alias("mlops-wb-model", "champion").version) == "1"


def test_jenkins_failed_gate_fails_the_build(tmp_path, api):
    url, posts = api
    root = ci_project(tmp_path, "jenkins", gate={"thresholds": {"roc_auc": 0.99999}})
    env = dict(clean_env(), CHANGE_ID="5", CHANGE_URL="https://github.com/team/models/pull/5", GH_TOKEN="t0ken",
               GITHUB_API_URL=url, MLOPS_WB_CI_BUDGET="small")
    res = run_steps(root, "jenkins", env)
    assert [c for c, _ in res][:-1] == [0] * (len(res) - 1) and res[-1][0] == 3, res
    log = "\n".join(o for _, o in res)
    assert "mlops-wb run exited with status 3" in log and "report status 3" in log
    assert len(posts) == 1 and posts[0]["path"] == "/repos/team/models/issues/5/comments"
    body = posts[0]["body"]["body"]
    assert body.startswith("## mlops-wb report: gate FAILED") and "required >= 0.99999" in body
    client, _ = client_for(root)
    assert client.search_registered_models() == [] or not client.search_model_versions("name = 'mlops-wb-model'")
