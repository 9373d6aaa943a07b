"""The documentation's code: every ``>>>`` snippet of its pages runs as a doctest.

The gallery's examples run when the site is built (``python3 dev.py docs``;
CI builds it after the tests). The doctests run here, with the options of the
package's own doctests, so that a page cannot show code that no longer works.
"""

import doctest
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(
    path
    for path in DOCS.rglob("*.rst")
    if not path.relative_to(DOCS).parts[0].startswith(("_", "auto_examples", "gen"))
)
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def test_every_page_is_found():
    names = {path.relative_to(DOCS).as_posix() for path in PAGES}
    assert {"getting_started.rst", "theory.rst", "user_guide/vae.rst"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_snippets_run(page):
    text = page.read_text()
    if ">>>" in text and "VAEEstimator(" in text:
        pytest.importorskip("torch")
    test = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
