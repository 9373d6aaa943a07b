"""The documentation's code: every ``>>>`` snippet of its pages runs as a doctest.

The gallery's examples run when the site is built (``python3 dev.py docs``;
CI builds it after the tests). The doctests run here, with the options of the
package's own doctests, so that a page cannot show code that no longer works.
"""

import doctest
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs"
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


def cited_tests(text):
    """(file, test name) of every ``[tests/]test_x.py::test_name`` in ``text``."""
    return {
        (match[1], match[2])
        for match in re.finditer(r"(?:tests/)?(test_\w+\.py)::(test_\w+)", text)
    }


def defined_tests(path):
    return set(re.findall(r"^def (test_\w+)\(", path.read_text(), flags=re.M))


def test_every_cited_test_exists():
    # The theory page names the test behind each claim: a renamed or removed
    # test must not leave the page pointing at nothing.
    cited = set().union(*(cited_tests(page.read_text()) for page in PAGES))
    assert len(cited) > 10
    missing = [
        f"{name}::{test}"
        for name, test in sorted(cited)
        if test not in defined_tests(TESTS / name)
    ]
    assert not missing


def test_the_theory_page_cites_every_theory_test():
    cited = {test for name, test in cited_tests((DOCS / "theory.rst").read_text())}
    assert defined_tests(TESTS / "test_theory.py") <= cited
