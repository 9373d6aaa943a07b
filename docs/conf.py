"""Sphinx configuration of the sklearn-latent documentation.

Build it with ``python3 dev.py docs`` (HTML in docs/_build/html, warnings are
errors). ``python3 dev.py docs --quick`` skips running the gallery's examples.
"""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The source tree wins over an installed copy.
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

import sklearn_latent  # noqa: E402

# The gallery's examples are small: one BLAS/OpenMP thread is fastest for
# them, and on a busy machine more threads only wait for each other.
threadpool_limits(1)

project = "sklearn-latent"
author = "the sklearn-latent developers"
copyright = "the sklearn-latent developers"
release = sklearn_latent.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "examples/README.rst"]
root_doc = "index"
default_role = "literal"

# ---------------------------------------------------------------- API
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
# numpydoc renders the class docstrings; autodoc lists the methods once.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# scikit-learn's machinery that every estimator inherits (metadata routing,
# set_output) is documented by scikit-learn; its docstrings point at
# scikit-learn's own pages, which are not part of this site.
SKLEARN_MACHINERY = re.compile(r"^(get_metadata_routing|set_output|set_\w+_request)$")


def skip_sklearn_machinery(app, what, name, obj, skip, options):
    if SKLEARN_MACHINERY.match(name):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", skip_sklearn_machinery)


# ---------------------------------------------------------- intersphinx
# Links to other projects' docs need their inventories (objects.inv), which
# Sphinx downloads at build time. A failed download is a warning, and -W makes
# it an error, so an offline build (CI has no network) would fail. They are
# therefore fetched only on request: SKLEARN_LATENT_INTERSPHINX=1 (e.g. to
# publish the site). Offline, references such as
# :class:`sklearn.mixture.GaussianMixture` render as code without a link.
intersphinx_mapping = {}
intersphinx_timeout = 10
if os.environ.get("SKLEARN_LATENT_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
    }

# ------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    # python3 dev.py docs --quick passes -D plot_gallery=0: the pages are
    # built from the sources without running them.
    "plot_gallery": "True",
    "doc_module": ("sklearn_latent",),
    "backreferences_dir": "gen_modules/backreferences",
    "reference_url": {"sklearn_latent": None},
    "remove_config_comments": True,
    "min_reported_time": 1,
    # An example that raises fails the build.
    "only_warn_on_example_error": False,
}

# ---------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-latent {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["custom.css"]
# Pages without sub-pages have nothing to show in the left sidebar.
html_sidebars = {
    page: []
    for page in ["index", "getting_started", "theory", "api", "auto_examples/index"]
}
