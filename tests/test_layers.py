"""The import contract in pyproject.toml ([tool.importlinter]) holds, and breaks when a lower layer imports a higher one."""
import shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent/"lint-imports"

def _lint(tmp_path, patch=None):
    "Run lint-imports on a copy of the package, with `patch(package_dir)` applied to the copy."
    shutil.copytree(ROOT/"mlops_wb", tmp_path/"mlops_wb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT/"pyproject.toml", tmp_path/"pyproject.toml")
    if patch: patch(tmp_path/"mlops_wb")
    return subprocess.run([str(LINT), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})

def test_the_library_keeps_its_layers(tmp_path):
    r = _lint(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mlops_wb layers KEPT" in r.stdout

def test_an_import_from_a_higher_layer_inside_a_function_breaks_the_contract(tmp_path):
    def patch(pkg):   # the kind of import that hid the cycles: inside a function, out of sight of a top-level read
        with open(pkg/"config.py", "a") as f: f.write("\ndef _late():\n    from mlops_wb.alerts import Alert\n    return Alert\n")
    r = _lint(tmp_path, patch)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "mlops_wb layers BROKEN" in r.stdout
    assert "mlops_wb.config is not allowed to import mlops_wb.alerts" in r.stdout

def test_a_module_without_a_layer_breaks_the_contract(tmp_path):
    r = _lint(tmp_path, lambda pkg: (pkg/"newthing.py").write_text("X = 1\n"))
    assert r.returncode != 0 and "newthing" in r.stdout + r.stderr, r.stdout + r.stderr
