"""How the library reads: export-cell sizes, test cells after export cells, function lengths, long and joined lines.

    python tools/code_shape.py            # the summary
    python tools/code_shape.py --detail   # every export cell without a test, every long function

`tests/test_shape.py` holds the library to the limits below."""
from __future__ import annotations
import ast, io, json, sys, tokenize
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60     # no function or method in mlops_wb/ longer than this
MAX_EXPORT_CELL_LINES = 40  # no export cell longer than this (about a screen)
LONG_LINE = 120

def _src(cell): return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]

def _is_export(src): return any(l.strip() in ("#| export", "#|export") for l in src.splitlines())

def public_names(src:str)->list[str]:
    "Top-level public functions and classes defined in an export cell's source."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    return [n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_")]

@dataclass
class NotebookShape:
    path: Path
    export_cells: list = field(default_factory=list)   # (cell index, lines, public names)
    untested: list = field(default_factory=list)       # export cells with public names and no test cell before the next export cell

def notebook_shape(path:Path)->NotebookShape:
    "Export cells of one library notebook, and which of them defining public names have no test cell after them."
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    res = NotebookShape(path)
    code = [(i, _src(c)) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    for k, (i, src) in enumerate(code):
        if not _is_export(src): continue
        names = public_names(src)
        res.export_cells.append((i, len(src.splitlines()), names))
        nxt = code[k+1][1] if k+1 < len(code) else ""
        if names and (not nxt.strip() or _is_export(nxt)): res.untested.append((i, names))
    return res

def long_functions(path:Path, limit:int=MAX_FUNCTION_LINES)->list[tuple[str, int]]:
    "(qualified name, lines) of every function or method in `path` longer than `limit` lines."
    out = []
    def walk(node, prefix=""):
        for n in ast.iter_child_nodes(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = n.end_lineno - n.lineno + 1
                if size > limit: out.append((f"{prefix}{n.name}", size))
                walk(n, f"{prefix}{n.name}.")
            elif isinstance(n, ast.ClassDef): walk(n, f"{prefix}{n.name}.")
    walk(ast.parse(path.read_text(encoding="utf-8")))
    return out

def joined_lines(src:str)->int:
    "Lines that join statements with `;` (string contents do not count)."
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.OP and tok.string == ";": lines.add(tok.start[0])
    return len(lines)

def summary(root:Path=ROOT)->dict:
    "The figures for the whole library."
    nbs = [notebook_shape(p) for p in sorted((root/"nbs").glob("[0-9]*.ipynb"))]
    cells = [c for nb in nbs for c in nb.export_cells]
    sizes = sorted(n for _, n, _ in cells)
    mods = [p for p in sorted((root/"mlops_wb").glob("*.py")) if p.name != "_modidx.py"]
    text = {p: p.read_text(encoding="utf-8") for p in mods}
    return dict(export_cells=len(cells), public_export_cells=sum(1 for c in cells if c[2]),
                untested=sum(len(nb.untested) for nb in nbs),
                median_cell=sizes[len(sizes)//2] if sizes else 0, max_cell=max(sizes, default=0),
                cells_over_limit=sum(1 for s in sizes if s > MAX_EXPORT_CELL_LINES),
                long_functions=sum(len(long_functions(p)) for p in mods),
                lines_over_120=sum(1 for t in text.values() for l in t.splitlines() if len(l) > LONG_LINE),
                joined_lines=sum(joined_lines(t) for t in text.values()),
                notebooks=nbs, modules=mods)

if __name__ == "__main__":
    s = summary()
    for k, v in s.items():
        if k not in ("notebooks", "modules"): print(f"{k:22} {v}")
    if "--detail" in sys.argv:
        for nb in s["notebooks"]:
            for i, n, names in nb.export_cells:
                if n > MAX_EXPORT_CELL_LINES: print(f"{nb.path.name} cell {i}: {n} lines")
            for i, names in nb.untested: print(f"{nb.path.name} cell {i}: no test after {', '.join(names)}")
        for p in s["modules"]:
            for name, n in long_functions(p): print(f"{p.name}: {name} {n} lines")
