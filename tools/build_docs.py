"""`make docs`: the documentation site from the notebooks, offline, without Quarto.

The same pages as `nbdev-docs` (which needs Quarto), in the same order:

1. nbdev's own processors stage the notebooks into `_proc/` (`proc_nbs`: show_doc cells are
   executed and their signatures and docments rendered, exported code is hidden) -- the step
   `nbdev-docs` runs before handing `_proc/` to Quarto.
2. The pages listed in `nbs/sidebar.yml` (the Quarto sidebar) are copied to `.docs_src/` under
   their Quarto output names (`12_monitor.ipynb` -> `monitor`), with Quarto's cell options
   applied (`echo`, `output`, `include`, `output: asis`). A page whose front matter says
   `execute: {enabled: true}` is executed here with nbclient; any error stops the build.
3. Sphinx with myst-nb and the furo theme renders `.docs_src/` into `_docs/` (warnings are
   errors: a broken cross-reference fails the build); the sidebar's sections become the
   toctree captions, so the navigation mirrors Quarto's.
4. LinkChecker follows every link from `_docs/index.html` (internal only) and fails on a
   missing file; one pass over the pages fails on a missing anchor.

Exit status: 0 built, 1 the build failed (the reason and the page are printed); `_docs/` is
replaced only by a complete, checked site.
"""
from __future__ import annotations

import argparse, copy, os, re, shutil, subprocess, sys, time
from pathlib import Path

import nbformat
import yaml

HERE = Path(__file__).resolve().parent
CONF = HERE / "docs"
SIDEBAR = "sidebar.yml"


class DocsError(Exception):
    "A reason the site cannot be built, naming the file."


def sidebar_pages(nbs: Path) -> list[tuple[str | None, list[str]]]:
    "The Quarto sidebar as [(section or None, [notebook paths relative to nbs])], in order."
    f = nbs / SIDEBAR
    if not f.exists(): raise DocsError(f"{f}: missing (the sidebar lists the site's pages)")
    try: side = yaml.safe_load(f.read_text())["website"]["sidebar"]["contents"]
    except (yaml.YAMLError, KeyError, TypeError) as e: raise DocsError(f"{f}: expected website.sidebar.contents ({e})")
    out, top = [], []
    for item in side:
        if isinstance(item, str): top.append(item)
        elif isinstance(item, dict) and "section" in item:
            out.append((str(item["section"]), [str(p) for p in item.get("contents", [])]))
        else: raise DocsError(f"{f}: unsupported sidebar entry {item!r}")
    pages = [(None, top)] + out if top else out
    seen = set()
    for _, ps in pages:
        for p in ps:
            if not (nbs / p).exists(): raise DocsError(f"{f}: page {p} does not exist in {nbs}")
            if p in seen: raise DocsError(f"{f}: page {p} is listed twice")
            seen.add(p)
    if "index.ipynb" not in seen: raise DocsError(f"{f}: the home page index.ipynb is not listed")
    return pages


_MATHJAX_CDN = re.compile(r'<script src="https://cdn[^"]*mathjax[^"]*"></script>')
_FM = re.compile(r"^\s*---\s*\n(.*?)\n---\s*$", re.S)
_DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")


def front_matter(nb) -> tuple[dict, int | None]:
    "nbdev's front matter (the raw `---` cell the processors write) and its cell index."
    for i, c in enumerate(nb.cells):
        if c.cell_type == "raw":
            m = _FM.match(c.source)
            if m: return (yaml.safe_load(m.group(1)) or {}), i
    return {}, None


def output_name(src: str, fm: dict) -> str:
    "The page's name in the site, as Quarto names it: `output-file`, else the notebook's stem."
    of = fm.get("output-file")
    return str(Path(src).with_name(of).with_suffix("")) if of else str(Path(src).with_suffix(""))


def directives(src: str) -> tuple[dict, str]:
    "Quarto cell options (`#| key: value` lines) and the source without them."
    opts, rest, head = {}, [], True
    for line in src.splitlines():
        m = _DIRECTIVE.match(line) if head else None
        if m: opts[m.group(1)] = m.group(2).strip("'\""); continue
        head = False; rest.append(line)
    return opts, "\n".join(rest).strip("\n")


def _link_map(names: dict[str, str]):
    "Rewrite links to notebooks (`[x](12_monitor.ipynb#a)`) and to the published site into page links."
    site = re.compile(r"https://mlops-wb\.github\.io/mlops-wb/([\w./-]+)\.html")
    nb = re.compile(r"\]\(([\w./-]+)\.ipynb(#[^)]*)?\)")
    stems = {Path(k).with_suffix("").as_posix(): v for k, v in names.items()}
    outs = set(names.values())

    def fix(text: str) -> str:
        text = site.sub(lambda m: m.group(1) + ".ipynb" if m.group(1) in outs else m.group(0), text)
        def nbl(m):
            target = stems.get(m.group(1)) or (m.group(1) if m.group(1) in outs else None)
            if target is None: return m.group(0)
            return f"]({target}.ipynb{m.group(2) or ''})"
        return nb.sub(nbl, text)
    return fix


def stage_page(nb, fm: dict, fm_idx, fix_links) -> tuple[object, bool]:
    "The page as myst-nb reads it: title cell from the front matter, Quarto options applied."
    nb = copy.deepcopy(nb)
    cells = []
    title, desc = fm.get("title"), fm.get("description")
    has_h1 = any(c.cell_type == "markdown" and re.match(r"^#\s", c.source.lstrip()) for c in nb.cells)
    if title and not has_h1:
        cells.append(nbformat.v4.new_markdown_cell(f"# {title}" + (f"\n\n{desc}" if desc else "")))
    for i, c in enumerate(nb.cells):
        if i == fm_idx: continue
        if c.cell_type == "raw": continue
        if not c.source.strip(): continue
        c.metadata.pop("execution", None)         # nbdev's timing (floats the notebook schema refuses)
        if c.cell_type == "markdown":
            c.source = fix_links(c.source); cells.append(c); continue
        opts, src = directives(c.source)
        if opts.get("include") == "false" or not src: continue
        c.source = src
        tags = [t for t in c.metadata.pop("tags", []) if t != "parameters"]
        if opts.get("echo") == "false": tags.append("remove-input")
        if opts.get("output") == "false": tags.append("remove-output")
        if opts.get("output") == "asis": c.metadata["mlops_wb_asis"] = True
        if tags: c.metadata["tags"] = tags
        cells.append(c)
    nb.cells = cells
    ex = fm.get("execute") or {}
    return nb, bool(isinstance(ex, dict) and ex.get("enabled"))


def execute(nb, path: Path, src: str, timeout: int):
    "Run every cell of the page in a fresh kernel (cwd: the staging folder); an error names the page and cell."
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    env_keep = os.environ.get("PLOTLY_RENDERER")
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype+notebook"   # figures as HTML + plotly.js embedded once per page
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path)}}).execute()
    except (CellExecutionError, CellTimeoutError) as e:
        msg = re.sub(r"\x1b\[[0-9;]*m", "", str(e))           # the kernel's traceback comes coloured
        raise DocsError(f"nbs/{src}: a cell failed while building the docs:\n{msg[-3000:]}") from None
    finally:
        if env_keep is None: os.environ.pop("PLOTLY_RENDERER", None)
        else: os.environ["PLOTLY_RENDERER"] = env_keep


def asis(nb, fix_links):
    "Quarto's `output: asis`: a cell's markdown output becomes part of the page (real headings)."
    cells = []
    for c in nb.cells:
        if c.cell_type == "code" and c.metadata.pop("mlops_wb_asis", False):
            md = [o["data"]["text/markdown"] for o in c.get("outputs", [])
                  if o.get("output_type") in ("execute_result", "display_data") and "text/markdown" in o.get("data", {})]
            if "remove-input" not in c.metadata.get("tags", []):
                c.outputs = []; cells.append(c)
            # show_doc starts each entry with a rule: a page section cannot begin with one
            cells += [nbformat.v4.new_markdown_cell(fix_links(re.sub(r"^\s*---\s*\n", "", m if isinstance(m, str) else "".join(m))))
                      for m in md]
        else: cells.append(c)
    nb.cells = cells
    return nb


def toctree(pages, names) -> str:
    "Hidden toctrees, one per sidebar section: furo shows their captions as the sidebar's sections."
    out = []
    for section, ps in pages:
        entries = [names[p] for p in ps if names[p] != "index"]
        if not entries: continue
        cap = f":caption: {section}\n" if section else ""
        out.append("```{toctree}\n:hidden:\n" + cap + "\n".join(entries) + "\n```")
    return "\n\n".join(out)


def build(root: Path, out: Path, check_links: bool = True, timeout: int = 1200) -> dict:
    "Build the site into `out`; returns {'pages': n, 'executed': [...], 'seconds': {...}}."
    t0 = time.time(); secs = {}
    nbs, procd = root / "nbs", root / "_proc"
    pages = sidebar_pages(nbs)
    from nbdev.serve import proc_nbs
    import nbdev.doclinks
    cwd = os.getcwd(); os.chdir(root)
    # nbdev's advice on cells mixing imports and code (our tests do) is noise here; its workers inherit this
    os.environ.setdefault("PYTHONWARNINGS", "ignore:Found cells containing imports")
    try:
        nbdev.doclinks._build_modidx()
        proc_nbs(str(nbs), n_workers=2)
    except Exception as e: raise DocsError(f"nbdev processing of {nbs} failed: {type(e).__name__}: {e}") from None
    finally: os.chdir(cwd)
    secs["nbdev_proc"] = round(time.time() - t0, 1)

    stage = root / ".docs_src"
    shutil.rmtree(stage, ignore_errors=True); stage.mkdir()
    if (procd / "images").exists(): shutil.copytree(procd / "images", stage / "images")
    fms, names, page_of = {}, {}, {}
    for _, ps in pages:
        for p in ps:
            f = procd / p
            if not f.exists(): raise DocsError(f"{f}: nbdev did not produce the page listed in {nbs / SIDEBAR}")
            nb = nbformat.read(str(f), as_version=4)
            fm, idx = front_matter(nb)
            fms[p] = (nb, fm, idx)
            names[p] = output_name(p, fm)
            twin = page_of.setdefault(names[p], p)
            if twin != p: raise DocsError(f"nbs/{p} and nbs/{twin} would both be the page {names[p]}.html (rename one, or set its output-file)")
    fix = _link_map(names)
    executed = []
    t1 = time.time()
    for p, (nb, fm, idx) in fms.items():
        page, run = stage_page(nb, fm, idx, fix)
        if run:
            ts = time.time()
            execute(page, stage, p, timeout)
            executed.append((p, round(time.time() - ts, 1)))
        page = asis(page, fix)
        for c in page.cells:      # plotly figures arrive as HTML too (the `notebook` renderer); the JSON twin is not needed
            for o in c.get("outputs", []):
                if "application/vnd.plotly.v1+json" in o.get("data", {}) and "text/html" in o["data"]:
                    del o["data"]["application/vnd.plotly.v1+json"]
                    # plotly.js is embedded; the figure's MathJax tag points at a CDN: the site makes no request to the web
                    o["data"]["text/html"] = _MATHJAX_CDN.sub("", "".join(o["data"]["text/html"]))
        if names[p] == "index": page.cells.append(nbformat.v4.new_markdown_cell(toctree(pages, names)))
        page.metadata.pop("widgets", None)
        target = stage / f"{names[p]}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(page, str(target))
    secs["stage_and_execute"] = round(time.time() - t1, 1)

    t2 = time.time()
    work = root / ".docs_build"              # Sphinx's doctrees and myst-nb's jupyter_execute/ live next to the html
    tmp = work / "html"
    shutil.rmtree(work, ignore_errors=True)
    r = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-j", "1",
                        "-c", str(CONF), "-d", str(work / "doctrees"), str(stage), str(tmp)], cwd=root)
    if r.returncode: raise DocsError(f"sphinx-build of {stage} failed (see the warnings above)")
    secs["sphinx"] = round(time.time() - t2, 1)
    missing = [f"{names[p]}.html" for _, ps in pages for p in ps if not (tmp / f"{names[p]}.html").exists()]
    if missing: raise DocsError(f"pages missing from the built site: {', '.join(missing)}")
    if check_links:
        t3 = time.time()
        link_check(tmp)
        secs["link_check"] = round(time.time() - t3, 1)
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(str(tmp), str(out))
    secs["total"] = round(time.time() - t0, 1)
    return {"pages": len(names), "executed": executed, "seconds": secs}


def link_check(site: Path):
    """Every link reachable from the home page: LinkChecker follows the files (a missing page, image or
    script is an error), then every `page.html#anchor` is looked up among the ids of its page.
    (LinkChecker's own AnchorCheck re-reads a page for each anchor: 42 s for this site, against 3 s.)"""
    # LinkChecker run as root switches to the user `nobody`, who may not be able to read a clone in a
    # private home folder; it only reads local files here, so it runs as the caller.
    run = ("import sys, linkcheck.command.linkchecker as lc; lc.drop_privileges = lambda: None; "
           "sys.argv = ['linkchecker'] + sys.argv[1:]; sys.exit(lc.linkchecker())")
    r = subprocess.run([sys.executable, "-c", run, "-f", str(CONF / "linkcheckerrc"), "--no-status", str(site / "index.html")],
                       capture_output=True, text=True)
    keep = ("URL ", "Name ", "Parent URL", "Real URL", "Result", "Warning", "That's it")
    report = "\n".join(l for l in r.stdout.splitlines() if l.startswith(keep))
    if r.returncode != 0:
        raise DocsError(f"broken links in {site}:\n{report}\n{r.stderr[-2000:]}")
    m = re.search(r"(\d+) links? in (\d+) URLs? checked", r.stdout)
    bad, n = anchor_check(site)
    if bad: raise DocsError(f"links to missing anchors in {site}:\n" + "\n".join(bad[:50]))
    print(f"links: {m.group(0) if m else 'checked'} by LinkChecker, {n} anchors found; none broken")


def anchor_check(site: Path) -> tuple[list[str], int]:
    "Internal `#anchor` links whose target page has no element with that id: ([problems], anchors checked)."
    from html.parser import HTMLParser
    from urllib.parse import unquote, urlsplit

    class P(HTMLParser):
        def __init__(self):
            super().__init__(); self.ids, self.links = set(), []
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if a.get("id"): self.ids.add(a["id"])
            if tag == "a" and a.get("name"): self.ids.add(a["name"])
            if tag == "a" and a.get("href"): self.links.append(a["href"])

    pages = {}
    for f in site.rglob("*.html"):
        p = P(); p.feed(f.read_text(encoding="utf-8", errors="replace")); pages[f.resolve()] = p
    bad, n = [], 0
    for f, p in pages.items():
        for href in p.links:
            u = urlsplit(href)
            if u.scheme or u.netloc or not u.fragment: continue
            target = (f.parent / unquote(u.path)).resolve() if u.path else f
            n += 1
            if target not in pages: continue          # a missing file is LinkChecker's error
            if unquote(u.fragment) not in pages[target].ids:
                bad.append(f"{f.relative_to(site)}: {href} (no id {u.fragment!r} in {target.relative_to(site)})")
    return bad, n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="build_docs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(HERE.parent), help="project root (default: this repository)")
    ap.add_argument("--out", default=None, help="output folder (default: ROOT/_docs)")
    ap.add_argument("--no-link-check", action="store_true")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    try:
        res = build(root, Path(a.out).resolve() if a.out else root / "_docs", check_links=not a.no_link_check)
    except DocsError as e:
        print(f"docs: error: {e}", file=sys.stderr); return 1
    ex = ", ".join(f"{p} {s} s" for p, s in res["executed"]) or "none"
    print(f"docs: {res['pages']} pages in {Path(a.out or root / '_docs')} ({res['seconds']['total']} s; executed: {ex}; "
          + ", ".join(f"{k} {v} s" for k, v in res["seconds"].items() if k != "total") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
