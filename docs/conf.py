"""Sphinx configuration of the cellflux site."""

import re
from importlib import metadata

project = "cellflux"
author = "The cellflux developers"
copyright = "2026, The cellflux developers"
release = metadata.version("cellflux")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "requirements.txt", "**/.ipynb_checkpoints", "**/*.h5ad"]
autosummary_generate = True
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
nitpicky = False
html_theme = "furo"
html_title = "cellflux"
myst_enable_extensions = ["colon_fence"]

# Tutorials are MyST markdown notebooks (``docs/tutorials/*.md`` with a ``jupytext`` header), executed
# on every build so that what they show is what the code does.
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_merge_streams = True


_CITATION = re.compile(r":cite:[pt]:`([^`]+)`")


def _plain_citations(app, what, name, obj, options, lines):
    """Show ``:cite:p:`key``` (used in scvi-tools-style docstrings) as the literal key.

    The site has no bibliography extension; rewriting the role keeps those docstrings readable.
    """
    lines[:] = [_CITATION.sub(r"``\1``", line) for line in lines]


def setup(app):
    """Rewrite citation roles in docstrings before they are parsed."""
    app.connect("autodoc-process-docstring", _plain_citations)
