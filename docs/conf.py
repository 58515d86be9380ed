"""Sphinx configuration of threadprobe's documentation site (``make docs``).

Everything that can be made from code or data is made at build time by ``_ext/threadprobe_docs.py``
(into ``_generated/``, which git ignores): the pytest plugin's options from pytest's own parser, the
report's schema and format history, the benchmark pages from ``reports/bench*.json``, and the
report's two greens from ``threadprobe.report.strength``. The CLI reference is sphinx-argparse over
``threadprobe.cli.build_parser`` and the API reference is autodoc over the docstrings.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "threadprobe"
author = "the threadprobe developers"
copyright = "the threadprobe developers"  # noqa: A001 (Sphinx's name)

try:
    from importlib.metadata import version as _version

    release = _version("threadprobe")
except Exception:  # a build from a tree that is not installed: the pages still build
    release = "unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_autodoc_typehints",
    "sphinxarg.ext",
    "threadprobe_docs",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# The generated files that pages include, rather than pages of their own.
exclude_patterns = ["_build", "README.md", "_generated/records-api.md", "_generated/pytest-options.md",
                    "_generated/evidence-colours.html"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Nitpicky where the API allows: every reference to threadprobe's own names must resolve. The
# standard library's and third parties' names cannot (no intersphinx inventories offline), so
# those, and type variables, are let through by name.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(typing|collections|collections\.abc|pathlib|argparse|enum|contextlib|types|datetime)\..*"),
    (r"py:.*", r"(Any|Path|IO|Iterator|Iterable|Sequence|Callable|Mapping|TypeVar|NoReturn|ClassVar|Self)"),
    (r"py:.*", r"(dask|iris|numpy|pytest|_pytest|distributed|jinja2|rich)(\..*)?"),
    (r"py:.*", r"(int|str|float|bool|bytes|dict|list|tuple|set|frozenset|type|object|None|Ellipsis)"),
    (r"py:.*", r"(R|T|threadprobe\.records\.R)"),  # type variables
]

autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True}
typehints_fully_qualified = False
always_document_param_types = False
typehints_document_rtype = True

html_theme = "pydata_sphinx_theme"
html_title = "threadprobe"
html_static_path = ["_static"]
html_css_files = ["threadprobe.css"]
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
html_show_sourcelink = False

# sphinx-autodoc-typehints calls an API Sphinx 10 will remove, once per docstring: Python's
# DeprecationWarning says so on stderr hundreds of times, and it is none of this site's business.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r".*set_application.*")

# Option names such as --python must stay two hyphens, not an en dash.
smartquotes = False
