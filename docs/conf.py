"""Sphinx configuration of the cellflux site."""

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


def _citation_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """Show ``:cite:p:`key``` (used in docstrings inherited from scvi-tools) as the citation key."""
    from docutils import nodes

    return [nodes.literal(rawtext, text)], []


def setup(app):
    """Register roles that inherited third-party docstrings use."""
    app.add_role("cite:p", _citation_role)
    app.add_role("cite:t", _citation_role)
