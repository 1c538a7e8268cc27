"""Sphinx configuration: Markdown pages (MyST), the API pages from the docstrings (autodoc).

The result tables are generated from bench/results/ before every build (gen_tables.py); a missing
result file stops the build. autodoc imports the installed fastgcn_denoise (``make docs``).
"""

import io
import sys
from pathlib import Path

from docutils.core import publish_doctree
from sphinx.errors import ConfigError

HERE = Path(__file__).resolve().parent
# gen_tables only: never the repository root, so autodoc reads the installed package.
sys.path.insert(0, str(HERE))

import gen_tables  # noqa: E402  (needs the sys.path line above)

project = "fastgcn_denoise"
author = "fastgcn_denoise contributors"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.mathjax"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_static_path = []
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
# Cross-references to torch/numpy types in signatures cannot resolve without intersphinx (no
# network in CI); they render as plain text.
nitpicky = False


def _parses_cleanly(text: str) -> bool:
    """Whether ``text`` is reST that docutils reads without a warning."""
    warnings = io.StringIO()
    publish_doctree(
        text,
        settings_overrides={
            "warning_stream": warnings,
            "report_level": 2,
            "halt_level": 5,
            "file_insertion_enabled": False,
            "raw_enabled": False,
        },
    )
    return not warnings.getvalue()


def _show_as_written(app, what, name, obj, options, lines):
    # The docstrings are written as plain text for the source reader (formulas laid out with
    # spaces, |x| for a norm, indented equations), not as reST. One that reads as clean reST is
    # rendered as reST; any other is shown exactly as written, in a literal block, so a docstring
    # neither breaks the build (-W) nor renders garbled.
    if lines and not _parses_cleanly("\n".join(lines)):
        lines[:] = ["::", ""] + ["    " + line for line in lines] + [""]


def _generate_tables(app):
    # Before reading any page: every table of results is rewritten from its JSON, so a page never
    # shows a figure the JSON does not hold; a result file that is gone stops the build, with its
    # name on the last line (a ConfigError is reported without a traceback).
    try:
        gen_tables.generate()
        gen_tables.readme_figures()
    except gen_tables.TableError as e:
        raise ConfigError(f"docs/gen_tables.py: {e}") from None


def setup(app):
    app.connect("autodoc-process-docstring", _show_as_written)
    app.connect("builder-inited", _generate_tables)
