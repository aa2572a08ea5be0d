"""Sphinx configuration of `make docs` (tools/build_docs.py stages the pages into .docs_src/).
Pages are rendered as staged: executed pages arrive with their outputs, so myst-nb executes nothing."""
import tomllib
from pathlib import Path

_root = Path(__file__).resolve().parents[2]
_nbdev = tomllib.loads((_root / "pyproject.toml").read_text())["tool"]["nbdev"]
from mlops_wb import __version__ as _ver

project = _nbdev.get("title", "mlops-wb")
author = "mlops-wb developers"
release = version = _ver
extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "furo"
html_title = f"{project} {version}"
html_static_path = []
html_last_updated_fmt = None
html_copy_source = False          # the site is HTML only; notebooks stay in the repository
html_show_sourcelink = False

myst_heading_anchors = 3          # `#drift_config`-style anchors, the same as Quarto's
myst_enable_extensions = ["colon_fence", "deflist"]
nb_execution_mode = "off"         # tools/build_docs.py executed the pages that say `execute: enabled`
nb_render_markdown_format = "myst"
suppress_warnings = ["myst.header"]   # show_doc headings are H3 under the page title
