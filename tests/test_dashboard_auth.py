"""Issue 13 point 4 in a real browser: `mlops-wb dashboard` on a team server (a throwaway PostgreSQL and
`mlflow server --app-name basic-auth` from `mlops-wb server init`, users alice=scientist, bob=approver,
carol=viewer) serves only its sign-in page until a reviewer signs in with their MLflow login, and then every
page's kernel acts as that reviewer: the server refuses carol's promotion and audits bob's under his name.

The dashboard starts with MLFLOW_TRACKING_URI and no login in its environment. The tests run in order on one
server and one dashboard (pytest-xdist's loadfile keeps them on one worker)."""
import asyncio, json, os, re, shutil, stat, subprocess, sys, tempfile, threading, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import CLI, clean_env, cli, copy_project, free_port, kernel_children, start_http

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_PW = "admin-pw-for-tests-1"
USERS = {"alice": "scientist", "bob": "approver", "carol": "viewer"}
MODEL = "mlops-wb-model"
PROMOTION = "/voila/render/nbs/dashboards/promotion.ipynb"
WRONG = "not-bobs-password-42"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is installed by `make test`")


def password(user): return f"{user}-password-1234"


def as_user(url, user):
    return {**clean_env(), "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password(user)}


# alice registers a gated candidate the way the register step does (a run of the experiment, the model logged
# through the server's proxied artifacts, @challenger on <model>-candidates), without the whole pipeline
REGISTER = """
import json, sys
from mlops_wb.config import load_settings
from mlops_wb.data import load_demo
from mlops_wb.registry import register_model
from mlops_wb.tags import TAG_GATE, TAG_GATE_PASSED
from mlops_wb.tracking import connect
from mlops_wb.train import fit_model
s = load_settings(sys.argv[1])
client, eid = connect(s)
df = load_demo("breast_cancer")
run = client.create_run(eid)
gate = {TAG_GATE_PASSED: "true", TAG_GATE: json.dumps({"passed": True, "failures": []})}
print(register_model(fit_model(df, "target", max_iter=500), df.drop(columns="target").head(5), run.info.run_id,
                     s.candidate_model, tags=gate))
client.set_terminated(run.info.run_id)
"""


@pytest.fixture(scope="module")
def team():
    # PostgreSQL runs as the postgres user: its folder's parents must let that user in (pytest's tmp_path is 0700).
    base = Path(tempfile.mkdtemp(prefix="mlops-wb-dash-", dir="/tmp"))
    base.chmod(0o755)
    proj = copy_project(base / "p")
    port, pg_port, folder = free_port(), free_port(), base / "srv"
    res = subprocess.run([str(CLI), "--project", str(proj), "server", "init", str(folder), "--port", str(port),
                          "--pg-port", str(pg_port), "--admin-password-stdin"], input=ADMIN_PW + "\n",
                         capture_output=True, text=True, timeout=300, env=clean_env())
    assert res.returncode == 0, res.stdout + res.stderr
    url, dash = f"http://127.0.0.1:{port}", None
    try:
        from mlops_wb.team import Api, add_user   # what `mlops-wb users add` calls, without three more processes
        admin = Api(url, "admin", ADMIN_PW)
        for user, role in USERS.items(): add_user(admin, user, password(user), role)
        reg = subprocess.Popen([sys.executable, "-c", REGISTER, str(proj)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=proj, env=as_user(url, "alice"))
        tmp = base / "tmp"               # the dashboard's temporary files (its one-use login files among them)
        tmp.mkdir()
        dash_port = free_port()
        env = {**clean_env(), "MLFLOW_TRACKING_URI": url, "TMPDIR": str(tmp)}   # and no login at all
        dash = start_http([CLI, "--project", proj, "dashboard", "--port", dash_port],
                          f"http://127.0.0.1:{dash_port}/login", cwd=proj, env=env, what="mlops-wb dashboard",
                          timeout=120)
        log = []                         # its output, read as it comes (a full pipe would stall it)
        threading.Thread(target=lambda: log.extend(dash.stdout), daemon=True).start()
        out, err = reg.communicate(timeout=300)
        assert reg.returncode == 0 and out.strip().endswith("1"), out + err
        yield dict(base=base, proj=proj, url=url, dash=f"http://127.0.0.1:{dash_port}", proc=dash, tmp=tmp, seen=[],
                   log=log)
    finally:
        if dash is not None:
            dash.terminate()
            try: dash.wait(30)
            except subprocess.TimeoutExpired: os.killpg(dash.pid, 9)
        cli(proj, "server", "stop", str(folder), timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _context(browser, team):
    """A browser context of its own (its own cookies) that keeps the text of everything it is served."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 2000})
    ctx.set_default_timeout(90_000)
    ctx.on("requestfinished", lambda req: _keep(team, req))
    page = ctx.new_page()
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: team["seen"].append(
        ("frame", f if isinstance(f, str) else f.decode("utf-8", "replace")))))
    return ctx, page


def _keep(team, req):
    r = req.response()
    try: body = r.body()
    except Exception: return                             # a redirect has no body
    team["seen"].append((r.headers.get("content-type") or "", body.decode("utf-8", "replace")))


def _sign_in(page, team, user, pw):
    page.goto(team["dash"] + PROMOTION, wait_until="commit")
    page.wait_for_selector("form.sign-in")
    page.fill("#username", user)
    page.fill("#password", pw)
    page.click("button[type=submit]")


def _promotion_page(page):
    """The promotion dashboard once its widgets are drawn (one reload if a render is lost, as in test_dashboards)."""
    try: page.wait_for_selector("table.versions-table", timeout=75_000)
    except Exception:
        page.reload(wait_until="commit")
        page.wait_for_selector("table.versions-table", timeout=90_000)


def _aliases(team):
    r = requests.get(f"{team['url']}/api/2.0/mlflow/registered-models/get", params={"name": MODEL},
                     auth=("admin", ADMIN_PW), timeout=30)
    return {a["alias"]: a["version"] for a in r.json()["registered_model"].get("aliases", [])}


def _refusals(team):
    api, auth = f"{team['url']}/api/2.0/mlflow", ("admin", ADMIN_PW)
    exp = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": "mlops-wb-refusals"}, auth=auth,
                       timeout=30).json()["experiment"]["experiment_id"]
    runs = requests.post(f"{api}/runs/search", json={"experiment_ids": [exp]}, auth=auth, timeout=30).json()["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs]
    return [(t["audit.user"], t["audit.action"], t.get("audit.reason")) for t in tags]


def _session_of(team, user):
    """A requests session signed in as `user` through the sign-in form (tornado's _xsrf cookie first)."""
    s = requests.Session()
    s.get(team["dash"] + "/login", timeout=30)
    form = {"_xsrf": s.cookies["_xsrf"], "username": user, "password": password(user)}
    r = s.post(team["dash"] + "/login", data=form, timeout=30, allow_redirects=False)
    assert r.status_code == 302, r.text
    return s


def _websocket_status(url, session):
    """The HTTP status a websocket handshake to `url` with `session`'s cookies gets (101 when it opens)."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    async def go():
        try: (await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie}))).close()
        except HTTPClientError as e: return e.code
        return 101
    with ThreadPoolExecutor(1) as pool: return pool.submit(asyncio.run, go()).result()   # Playwright owns this loop


def _status(url):
    try: return urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=30).status
    except urllib.error.HTTPError as e: return e.code


def test_signed_out_gets_the_sign_in_page_only(team, browser):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k): return None
    opener = urllib.request.build_opener(NoRedirect)
    for path in (PROMOTION, "/voila/render/nbs/dashboards/index.ipynb", "/voila/tree", "/"):
        with pytest.raises(urllib.error.HTTPError) as e: opener.open(team["dash"] + path, timeout=30)
        assert e.value.code == 302 and e.value.headers["Location"].startswith("/login?next="), path
    for path in ("/voila/files/nbs/dashboards/promotion.ipynb", "/voila/files/reports/index.html",
                 "/voila/api/contents/nbs/dashboards"):
        assert _status(team["dash"] + path) == 403, path
    ctx, page = _context(browser, team)
    page.goto(team["dash"] + PROMOTION)
    page.wait_for_selector("form.sign-in")
    assert page.url.startswith(team["dash"] + "/login?next=")
    assert f"Sign in with your account on the tracking server {team['url']}" in page.inner_text("body")
    assert "versions-table" not in page.content() and "Promote challenger" not in page.content()
    assert kernel_children(team["proc"].pid) == set()     # no notebook ran for anyone yet
    ctx.close()


def test_wrong_password_is_refused(team, browser):
    ctx, page = _context(browser, team)
    _sign_in(page, team, "bob", WRONG)
    page.wait_for_selector(".mlops-error")
    assert f"wrong user name or password for the tracking server {team['url']}" in page.inner_text(".mlops-error")
    assert WRONG not in page.content() and page.input_value("#username") == "bob"
    page.goto(team["dash"] + PROMOTION)                   # still signed out
    page.wait_for_selector("form.sign-in")
    assert kernel_children(team["proc"].pid) == set()
    ctx.close()


def test_viewer_is_refused_by_the_server(team, browser):
    ctx, page = _context(browser, team)
    _sign_in(page, team, "carol", password("carol"))
    _promotion_page(page)
    assert page.url == team["dash"] + PROMOTION           # sent on to the page asked for
    assert "Acting as carol on the tracking server" in page.inner_text(".acting-user")
    assert "challenger" in page.inner_text("table.versions-table")
    page.locator("textarea").fill("carol tries")
    page.get_by_role("button", name="Promote challenger").click()
    page.wait_for_selector(".mlops-error")
    assert f"promote refused by the tracking server: carol may not change {MODEL}" in page.inner_text(".mlops-error")
    assert _aliases(team) == {}                            # nothing moved
    assert _refusals(team) == [("carol", "promote", "carol tries")]   # and the refusal is on record, as carol's
    ctx.close()


def test_approver_promotes_under_his_login(team, browser):
    ctx, page = _context(browser, team)
    _sign_in(page, team, "bob", password("bob"))
    _promotion_page(page)
    assert "Acting as bob" in page.inner_text(".acting-user")
    page.locator("textarea").fill("bob approves from the dashboard")
    page.get_by_role("button", name="Promote challenger").click()
    page.wait_for_selector(".mlops-ok")
    done = page.inner_text(".mlops-ok")
    assert f"@champion is now version 1 (a copy of {MODEL}-candidates version 1)" in done and "by bob" in done, done
    assert _aliases(team) == {"champion": "1"}
    # bob's kernel holds his login: it answers his session, not carol's, who is signed in too
    kid = re.search(r'"kernelId": ?"([0-9a-f-]{36})"', page.content())[1]
    assert page.context.request.get(f"{team['dash']}/api/kernels/{kid}").status == 200
    carol = _session_of(team, "carol")
    assert carol.get(f"{team['dash']}/api/kernels/{kid}", timeout=30).status_code == 403
    ws = team["dash"].replace("http", "ws") + f"/api/kernels/{kid}/channels"
    assert _websocket_status(ws, carol) == 403
    h = cli(team["proj"], "history", "--json", env=as_user(team["url"], "carol"))
    assert h.returncode == 0, h.stderr
    assert [(e["action"], e["user"], e["reason"]) for e in json.loads(h.stdout)] == [
        ("promote", "bob", "bob approves from the dashboard")]
    page.goto(team["dash"] + "/logout")                   # signing out ends the session
    page.goto(team["dash"] + PROMOTION)
    page.wait_for_selector("form.sign-in")
    ctx.close()


def test_no_password_is_ever_served(team):
    secrets = [password(u) for u in USERS] + [WRONG, ADMIN_PW]
    for kind, text in team["seen"]: assert not [s for s in secrets if s in text], (kind, text[:300])
    assert "signed in to the dashboards" in "".join(team["log"])            # nor is it in the dashboard's log
    assert not [s for s in secrets if s in "".join(team["log"])]
    pages = [text for kind, text in team["seen"] if kind.startswith("text/html")]
    frames = [text for kind, text in team["seen"] if kind == "frame"]
    assert sum('class="sign-in"' in p for p in pages) >= 5, len(pages)       # every sign-in page, the refused one too
    assert sum("<title>promotion" in p for p in pages) >= 2, len(pages)     # carol's and bob's promotion dashboard
    assert sum("Promote challenger" in f for f in frames) >= 2              # and their widgets, over the websocket
    # the one-use login files: in a folder only the dashboard's user may open, each deleted by the cell that read it
    (folder,) = team["tmp"].glob("mlops-wb-dashboard-*")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and list(folder.iterdir()) == []
