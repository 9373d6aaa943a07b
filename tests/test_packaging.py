"""Packaging: the declared dependency range and scikit-learn's private names.

`import sklearn_latent` not importing torch is tested in test_vae.py.
"""

import ast
import importlib.util
import warnings
from numbers import Real
from pathlib import Path

import numpy as np
import pytest
import scipy
import sklearn
from packaging.requirements import Requirement
from sklearn.base import BaseEstimator

from sklearn_latent._utils import (
    Interval,
    Options,
    StrOptions,
    _fit_context,
    check_sample_weight,
    get_chunk_n_rows,
)

ROOT = Path(__file__).resolve().parents[1]

# Modules outside _utils.py that still import a private scikit-learn name, each
# to be imported from _utils instead (then remove its entry here).
KNOWN_PRIVATE_IMPORTS = {}


def dependencies():
    """The requirements that pyproject.toml declares, by distribution name."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


@pytest.mark.parametrize(
    "name, module", [("numpy", np), ("scipy", scipy), ("scikit-learn", sklearn)]
)
def test_imported_version_is_inside_the_declared_range(name, module):
    requirement = dependencies()[name]
    installed = module.__version__
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is outside the tested range {requirement}: "
        "install a version inside it, or test this one and widen the range"
    )


def test_scikit_learn_range_is_bounded_above():
    # Private scikit-learn names (see _utils.py) may move in any release, so
    # only the versions that were tested are declared.
    specifiers = {s.operator for s in dependencies()["scikit-learn"].specifier}
    assert {">=", "<"} <= specifiers


def load_dev():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    return dev


def test_test_min_pins_the_declared_floors():
    floors = [
        f"{name}=={spec.version}"
        for name, requirement in dependencies().items()
        for spec in requirement.specifier
        if spec.operator == ">="
    ]
    pins = load_dev().minimum_pins((ROOT / "pyproject.toml").read_text())
    assert sorted(pins) == sorted(floors)


def test_test_min_pins_parse_any_spacing():
    pins = load_dev().minimum_pins(
        '["numpy >= 1.23.2", "scipy>=1.9.2", "scikit-learn >=1.6, <1.10",'
        ' "joblib>= 1.3", "threadpoolctl >=3.1"]'
    )
    assert pins == [
        "numpy==1.23.2",
        "scipy==1.9.2",
        "scikit-learn==1.6",
        "joblib==1.3",
        "threadpoolctl==3.1",
    ]


def private_sklearn_imports(path):
    """Dotted names of the private scikit-learn objects and modules imported."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sklearn"
        ):
            private_module = any(p.startswith("_") for p in node.module.split("."))
            found |= {
                f"{node.module}.{alias.name}"
                for alias in node.names
                if private_module or alias.name.startswith("_")
            }
        elif isinstance(node, ast.Import):
            found |= {
                alias.name
                for alias in node.names
                if alias.name.startswith("sklearn.")
                and any(p.startswith("_") for p in alias.name.split("."))
            }
    return found


def test_private_scikit_learn_names_are_imported_in_utils_alone():
    found = {}
    for path in sorted((ROOT / "sklearn_latent").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name != "sklearn_latent/_utils.py" and private_sklearn_imports(path):
            found[name] = private_sklearn_imports(path)
    new = {
        name: names - KNOWN_PRIVATE_IMPORTS.get(name, set())
        for name, names in found.items()
    }
    assert not any(new.values()), f"import these from sklearn_latent._utils: {new}"


def test_the_scan_finds_private_imports(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "from sklearn.base import BaseEstimator, _fit_context\n"
        "from sklearn.utils._param_validation import Interval\n"
        "import sklearn.utils._chunking\n"
        "from sklearn.utils import check_array\n"
    )
    assert private_sklearn_imports(source) == {
        "sklearn.base._fit_context",
        "sklearn.utils._param_validation.Interval",
        "sklearn.utils._chunking",
    }


class _Constrained(BaseEstimator):
    _parameter_constraints = {
        "alpha": [Interval(Real, 0, None, closed="neither"), Options(Real, {np.inf})],
        "mode": [StrOptions({"a", "b"})],
    }

    def __init__(self, alpha=1.0, mode="a"):
        self.alpha = alpha
        self.mode = mode

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        self.skipped_nested_validation_ = sklearn.get_config()[
            "skip_parameter_validation"
        ]
        return self


def test_private_parameter_validation_works_as_the_estimators_use_it():
    assert _Constrained(alpha=np.inf, mode="b").fit().skipped_nested_validation_
    assert not sklearn.get_config()["skip_parameter_validation"]
    for params, name in [({"alpha": 0.0}, "alpha"), ({"mode": "c"}, "mode")]:
        with pytest.raises(ValueError, match=f"'{name}' parameter of _Constrained"):
            _Constrained(**params).fit()


def test_get_chunk_n_rows_follows_working_memory():
    with sklearn.config_context(working_memory=1):
        assert get_chunk_n_rows(1024) == 1024
        assert get_chunk_n_rows(1024, max_n_rows=100) == 100
        assert get_chunk_n_rows(1024, working_memory=2) == 2048
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert get_chunk_n_rows(2**20) == 1
        with pytest.warns(UserWarning, match="working_memory"):
            assert get_chunk_n_rows(2**21) == 1


def test_check_sample_weight_rejects_all_zero_weights():
    X = np.ones((3, 2))
    assert check_sample_weight(None, X).tolist() == [1.0, 1.0, 1.0]
    assert check_sample_weight([0, 2, 0], X, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="at least one non-zero"):
        check_sample_weight(np.zeros(3), X)
    with pytest.raises(ValueError, match="(?i)negative"):
        check_sample_weight([1, -1, 1], X)
