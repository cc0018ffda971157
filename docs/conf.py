"""Sphinx configuration of the byzdask documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (tests/test_docs.py
runs the same command). The API reference is generated from the docstrings (autosummary +
numpydoc) into ``docs/api/generated/`` at build time.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import byzdask

project = "byzdask"
author = "the byzdask authors"
copyright = "the byzdask authors"
version = release = byzdask.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# API reference: autosummary writes one page per module, class and function.
autosummary_generate = True
autosummary_imported_members = False
# Subpackages re-export their classes in __all__; document each object once, on the page of
# the module that defines it.
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_typehints = "none"  # the numpydoc Parameters sections say the types
autodoc_member_order = "bysource"
# Class members are listed by autodoc; numpydoc's extra member tables would duplicate them.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Docstrings cite papers with numpydoc ``.. [1]`` references that the text does not always
# cite inline; Sphinx would report each as "not referenced".
suppress_warnings = ["ref.citation"]

# Docstrings write the size of a subset as |S| in prose, which reStructuredText would read as
# a substitution; render it as written.
rst_prolog = r"""
.. |S| replace:: \|S\|
"""

html_theme = "alabaster"
html_static_path = []
html_theme_options = {"description": "Byzantine-robust distributed learning on Dask"}
