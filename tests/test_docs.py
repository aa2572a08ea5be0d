"""Issue 8: the documentation site built by `make docs` (tools/build_docs.py) from the notebooks.

The built `_docs/` is opened in Chromium: the home page, an API page with a rendered signature,
the executed tutorial with plotly figures drawn by plotly.js, the generated CLI reference and
offline search. The builder's checks are shown to fail: a cell that errors, a page missing from
the sidebar's notebooks, a broken link and a broken anchor each stop the build, and the last
good `_docs/` stays as it was."""
import subprocess, sys, textwrap
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import build_docs  # noqa: E402

SITE = REPO / "_docs"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ART = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def site():
    "The site `make docs` built (CI runs it before pytest); built here when missing."
    if not (SITE / "index.html").exists():
        r = subprocess.run([sys.executable, str(REPO / "tools" / "build_docs.py")], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return SITE


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        pg = b.new_page(viewport={"width": 1400, "height": 1000})
        errors, web = [], []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.route(lambda url: not url.startswith("file:"), lambda route: (web.append(route.request.url), route.abort()))
        pg.errors, pg.web = errors, web         # the site is viewed offline: nothing may be fetched from the web
        yield pg
        b.close()


def _open(page, site, name, query=""):
    page.errors.clear(); page.web.clear()
    page.goto((site / name).as_uri() + query)
    page.wait_for_load_state("load")
    return page


def test_home_page_has_the_commands_the_screenshot_and_the_sidebar(site, page):
    _open(page, site, "index.html")
    assert page.locator("h1").first.inner_text().strip().startswith("mlops-wb")
    body = page.locator("article").inner_text()
    assert "make run" in body and "make test" in body
    img = page.locator("article img").first
    assert img.evaluate("i => i.complete && i.naturalWidth") > 400          # the dashboard screenshot is there and loads
    side = page.locator(".sidebar-tree").inner_text()
    for caption in ("GUIDES", "API REFERENCE"):                             # the sections of nbs/sidebar.yml
        assert caption in side.upper(), side
    for title in ("Concepts", "Tutorial", "Operations guide", "CLI reference", "monitor", "serve", "widgets"):
        assert title in side, (title, side)
    # the same order as nbs/sidebar.yml, which the Quarto build reads: every page, its section, in sequence
    want = []
    for section, pages in build_docs.sidebar_pages(REPO / "nbs"):
        for p in pages:
            fm, _ = build_docs.front_matter(nbformat.read(str(REPO / "_proc" / p), as_version=4))
            if build_docs.output_name(p, fm) != "index": want.append((section, build_docs.output_name(p, fm) + ".html"))
    got = page.locator(".sidebar-tree li.toctree-l1 > a").evaluate_all(
        "as => as.map(a => [a.closest('ul').previousElementSibling?.innerText ?? null, a.getAttribute('href')])")
    assert len(want) >= 20 and [(sec.upper() if sec else None, href) for sec, href in want] == [(c.upper() if c else None, h) for c, h in got], got
    page.screenshot(path=str(ART / "docs-home.png"))
    assert not page.errors and not page.web, (page.errors, page.web)


def test_api_page_renders_signatures_docments_and_anchors(site, page):
    _open(page, site, "monitor.html")
    assert page.locator("h1").first.inner_text().strip().startswith("monitor")
    sig = page.locator("article pre", has_text="def column_drift(").first
    assert "cfg:dict" in sig.inner_text()                                  # show_doc's rendered signature
    assert page.locator("#drift_config").count() == 1                       # Quarto's anchor names work here too
    assert page.locator(":is(h2, h3, h4)", has_text="reference_profile").count() == 1
    assert "The profile stored with a model version" in page.locator("article").inner_text()   # the docstring
    # docments (a comment per argument) are rendered in the signature, as nbdev's show_doc writes them
    _open(page, site, "validate.html")
    sig = page.locator("article pre", has_text="def Expectations(").first.inner_text()
    assert "# label column: must exist, no nulls" in sig and "# learned row bounds" in sig, sig


def test_tutorial_is_executed_with_plotly_figures_drawn(site, page):
    _open(page, site, "tutorial.html")
    assert "Tutorial" in page.locator("h1").first.inner_text()
    page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30000)
    assert page.locator(".plotly-graph-div .main-svg").count() >= 2          # drawn by the embedded plotly.js, offline
    text = page.locator("article").inner_text()
    for seen in ("registered model: mlops-wb-model version 1", "dataset drift: YES", "retrain: started by alert",
                 "served by version 2", "served by version 1"):
        assert seen in text, seen
    headings = [h.strip() for h in page.locator("article h2").all_inner_texts()]
    assert {"Train, evaluate, register", "Serve", "Monitor", "Roll back"} <= {h.rstrip("¶#").strip() for h in headings}, headings
    page.screenshot(path=str(ART / "docs-tutorial.png"), full_page=False)
    assert not page.errors and not page.web, (page.errors, page.web)


def test_cli_reference_covers_every_command_of_the_parser(site, page):
    from mlops_wb.cli import build_parser, subcommands
    _open(page, site, "cli_reference.html")
    text = page.locator("article").inner_text()
    cmds = subcommands(build_parser())
    assert len(cmds) >= 15
    for cmd, sp, _ in cmds:
        assert page.locator(f"section#{cmd.replace(' ', '-')}").count() == 1, cmd
        for a in sp._actions:
            for opt in a.option_strings: assert opt in text, (cmd, opt)


def test_search_works_offline(site, page):
    _open(page, site, "search.html", "?q=wasserstein")
    page.wait_for_selector("#search-results li", timeout=20000)
    hits = page.locator("#search-results li a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert any(h.startswith(("concepts.html", "monitor.html")) for h in hits), hits


# ---- the builder's checks fail when they should ------------------------------------------------

def _tiny(root: Path, cells: list[str], sidebar_extra: str = "") -> Path:
    "A two-page nbdev project: index and a page executed at build time with `cells`."
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    (root / "pyproject.toml").write_text(textwrap.dedent("""\
        [project]
        name = "tiny"
        version = "0.0.1"
        [tool.nbdev]
        lib_path = "tiny"
        nbs_path = "nbs"
        doc_path = "_docs"
        custom_sidebar = true
        allowed_metadata_keys = ["kernelspec"]
        """))
    nbs = root / "nbs"; nbs.mkdir()
    ks = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for name, fm, body in (("index", "title: tiny", ["# tiny\n\nSee [the page](page.ipynb)."]),
                           ("page", "title: Page\nexecute:\n  enabled: true", ["## Numbers"] + cells)):
        nb = nbformat.v4.new_notebook(); nb.metadata["kernelspec"] = ks
        nb.cells = [nbformat.v4.new_raw_cell(f"---\n{fm}\n---")] + [
            nbformat.v4.new_markdown_cell(c) if c.startswith(("#", "See")) else nbformat.v4.new_code_cell(c) for c in body]
        nbformat.write(nb, str(nbs / f"{name}.ipynb"))
    (nbs / "sidebar.yml").write_text("website:\n  sidebar:\n    contents:\n      - index.ipynb\n"
                                     "      - section: Pages\n        contents:\n          - page.ipynb\n" + sidebar_extra)
    return root


def test_a_tiny_site_builds_and_an_erroring_cell_stops_the_build_leaving_the_old_site(tmp_path):
    root = _tiny(tmp_path / "p", ["print(6 * 7)"])
    out = root / "_docs"
    res = build_docs.build(root, out)
    assert res["pages"] == 2 and [p for p, _ in res["executed"]] == ["page.ipynb"]
    html = (out / "page.html").read_text()
    assert "42" in html and 'id="numbers"' in html

    nb = nbformat.read(str(root / "nbs" / "page.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('the figure is wrong')"))
    nbformat.write(nb, str(root / "nbs" / "page.ipynb"))
    with pytest.raises(build_docs.DocsError, match=r"(?s)nbs/page\.ipynb: a cell failed.*ValueError: the figure is wrong"):
        build_docs.build(root, out)
    assert "42" in (out / "page.html").read_text()          # the last good site is untouched
    r = subprocess.run([sys.executable, str(REPO / "tools" / "build_docs.py"), "--root", str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and "docs: error: nbs/page.ipynb: a cell failed" in r.stderr, r.stderr[-2000:]


def test_a_missing_page_and_a_broken_link_stop_the_build(tmp_path):
    root = _tiny(tmp_path / "p", ["1"], sidebar_extra="          - gone.ipynb\n")
    with pytest.raises(build_docs.DocsError, match=r"sidebar\.yml: page gone\.ipynb does not exist"):
        build_docs.build(root, root / "_docs")
    root2 = _tiny(tmp_path / "q", ["1"])
    nb = nbformat.read(str(root2 / "nbs" / "index.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("And [a page that was renamed](renamed.ipynb)."))
    nbformat.write(nb, str(root2 / "nbs" / "index.ipynb"))
    with pytest.raises(build_docs.DocsError, match="sphinx-build .* failed"):      # myst: cross-reference target not found
        build_docs.build(root2, root2 / "_docs")
    assert not (root2 / "_docs").exists()


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    s = tmp_path / "site"; s.mkdir()
    (s / "a.html").write_text('<html><body><h1 id="top">A</h1><a href="index.html#intro">back</a></body></html>')
    (s / "index.html").write_text('<html><body><p id="intro">hi</p><a href="a.html#top">a</a></body></html>')
    build_docs.link_check(s)                                   # all good
    (s / "index.html").write_text('<html><body><p id="intro">hi</p><a href="a.html#top">a</a> <a href="b.html">b</a></body></html>')
    with pytest.raises(build_docs.DocsError, match=r"(?s)broken links.*b\.html"):
        build_docs.link_check(s)
    (s / "index.html").write_text('<html><body><p id="intro">hi</p><a href="a.html#bottom">a</a></body></html>')
    with pytest.raises(build_docs.DocsError, match=r"(?s)missing anchors.*a\.html#bottom"):
        build_docs.link_check(s)
