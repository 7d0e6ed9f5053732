"""Sphinx configuration for the skopt-nn documentation.

Build (warnings are errors, the example gallery is executed):

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

# The examples train small networks: one torch/OpenMP thread each is fastest
# on small machines and keeps the gallery build steady next to other jobs.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.abspath(".."))

import skopt_nn  # noqa: E402

project = "skopt-nn"
author = "the skopt-nn developers"
copyright = "the skopt-nn developers"
release = skopt_nn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "**.codeobj.json", "README.md"]

# -- API reference: numpydoc renders the docstrings, autosummary the pages.
templates_path = ["_templates"]
autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# Names in "Returns" and "Parameters" type fields are not all Python objects.
numpydoc_xref_param_type = False

# -- Markdown pages (the user guide).
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- The example gallery: examples/plot_*.py, run at build time.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reference_url": {"skopt_nn": None},
    # "Examples using X" on each API page.
    "doc_module": ("skopt_nn",),
    "backreferences_dir": "generated/backreferences",
    "within_subsection_order": "sphinx_gallery.sorting.FileNameSortKey",
    "show_memory": False,
    "plot_gallery": "True",
}

html_theme = "alabaster"
html_title = f"skopt-nn {release}"
html_theme_options = {
    "description": "PyTorch networks as scikit-learn estimators, recipe included.",
    "fixed_sidebar": True,
    # alabaster's default is a 940 px page whose text column stops at 800 px:
    # at 1280 px that cut the gallery's code and output short of the window.
    "page_width": "1200px",
    "body_max_width": "none",
}
html_static_path = ["_static"]
html_css_files = ["skopt_nn.css"]


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # sklearn adds set_<method>_request methods to every estimator class;
    # their docstrings point into sklearn's own documentation.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
