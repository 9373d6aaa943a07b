"""Until issue 10's model branches are merged no model imputes, so
LatentImputer's docstring example cannot run: its doctest is skipped then."""

import pytest


def pytest_collection_modifyitems(items):
    from sklearn_latent import EMFactorAnalysis

    if hasattr(EMFactorAnalysis, "_impute"):
        return
    for item in items:
        if item.name == "sklearn_latent._impute.LatentImputer":
            item.add_marker(pytest.mark.skip(reason="no model imputes yet (issue 10)"))
