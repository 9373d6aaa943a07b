"""``verbose``: the live progress line of every estimator, with and without tqdm,
on a terminal and in a log, and silence by default."""

import io
import pickle
import sys
import warnings

import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture, _progress
from sklearn_latent._progress import ProgressLine, _clock

X, _ = make_blobs(200, n_features=4, centers=3, random_state=0)


def vae(**params):
    pytest.importorskip("torch")
    from sklearn_latent import VAEEstimator

    return VAEEstimator(2, hidden_layer_sizes=(8,), random_state=0, **params)


# Each estimator twice: a fit that converges, one that stops at max_iter.
# The VAE converges on its second plateau: with a tol no epoch can beat,
# epoch 3 lowers the learning rate and epoch 5 stops.
CONVERGED = {
    "EMGaussianMixture": lambda **p: EMGaussianMixture(2, random_state=0, **p),
    "EMFactorAnalysis": lambda **p: EMFactorAnalysis(2, **p),
    "VAEEstimator": lambda **p: vae(max_iter=10, tol=10.0, n_iter_no_change=1, **p),
}
STOPPED = {
    "EMGaussianMixture": lambda **p: EMGaussianMixture(
        2, max_iter=3, tol=0, random_state=0, **p
    ),
    "EMFactorAnalysis": lambda **p: EMFactorAnalysis(2, max_iter=3, tol=0, **p),
    "VAEEstimator": lambda **p: vae(max_iter=3, **p),
}
UNIT = {"EMGaussianMixture": "it", "EMFactorAnalysis": "it", "VAEEstimator": "epoch"}


def fit(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X)


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(params=["tqdm", "no tqdm"])
def tqdm(request, monkeypatch):
    """Run the test with tqdm installed, and as if it were not."""
    if request.param == "tqdm":
        pytest.importorskip("tqdm")
    else:
        for name in ("tqdm", "tqdm.auto", "tqdm.autonotebook", "tqdm.std"):
            monkeypatch.setitem(sys.modules, name, None)
    return request.param


@pytest.fixture
def every_update(monkeypatch):
    """Write every update, however soon after the previous one."""
    monkeypatch.setattr(_progress, "TTY_INTERVAL", 0.0)
    monkeypatch.setattr(_progress, "PLAIN_INTERVAL", 0.0)


def stderr(monkeypatch, stream):
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


@pytest.mark.parametrize("name", CONVERGED)
def test_silent_by_default(name, capsys, monkeypatch):
    # Nothing printed, and no line even built: nothing is formatted either.
    def no_line(*args, **kwargs):
        raise AssertionError("a progress line at verbose=0")

    monkeypatch.setattr("sklearn_latent._em.ProgressLine", no_line)
    if name == "VAEEstimator":
        pytest.importorskip("torch")
        monkeypatch.setattr("sklearn_latent.vae._training.ProgressLine", no_line)
    for make in (CONVERGED[name], STOPPED[name]):
        fit(make())
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("name", CONVERGED)
def test_live_line_updates_in_place_on_a_terminal(
    name, tqdm, every_update, capsys, monkeypatch
):
    terminal = stderr(monkeypatch, Terminal())
    estimator = fit(CONVERGED[name](verbose=1))
    assert estimator.converged_
    text = terminal.getvalue()
    # Redrawn after carriage returns, on one line that the end closes.
    assert text.count("\r") >= 2 and text.count("\n") == 1 and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith(f"{name} converged:")
    assert f"{estimator.n_iter_}/{estimator.max_iter}" in last
    assert ("%|" in last) == (tqdm == "tqdm")  # tqdm's bar, where installed
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", CONVERGED)
def test_plain_lines_without_a_terminal(name, tqdm, every_update, monkeypatch):
    log = stderr(monkeypatch, io.StringIO())
    estimator = fit(STOPPED[name](verbose=1))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    # One line per step (none is too soon here), the last one closing.
    assert len(lines) == estimator.n_iter_
    total = estimator.max_iter
    for step, line in enumerate(lines[:-1], start=1):
        assert line.startswith(f"{name}: {step}/{total} {UNIT[name]} [")
        assert "<" in line  # the time left
    assert lines[-1].startswith(
        f"{name} did not converge: {total}/{total} {UNIT[name]} ["
    )
    for shown in ("ELBO" if name == "VAEEstimator" else "lower bound", "change", "tol"):
        assert shown in lines[-1]


def test_plain_lines_are_periodic(monkeypatch):
    monkeypatch.setattr(_progress, "PLAIN_INTERVAL", 1e9)
    log = stderr(monkeypatch, io.StringIO())
    fit(EMGaussianMixture(2, max_iter=20, tol=0, random_state=0, verbose=1))
    (line,) = log.getvalue().splitlines()
    assert line.startswith("EMGaussianMixture did not converge: 20/20 it [")


def test_validation_elbo_is_shown(every_update, monkeypatch):
    log = stderr(monkeypatch, io.StringIO())
    fit(vae(max_iter=2, early_stopping=True, verbose=1))
    assert all("validation ELBO" in line for line in log.getvalue().splitlines())


def test_restarts_are_named(tqdm, monkeypatch):
    log = stderr(monkeypatch, io.StringIO())
    gm = fit(EMGaussianMixture(2, n_init=3, random_state=0, verbose=1))
    lines = log.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"EMGaussianMixture restart {i}/3 converged" for i in (1, 2, 3)
    ]
    # No bar is left on the fitted estimator, which pickles.
    assert not hasattr(gm, "_progress")
    pickle.dumps(gm)


@pytest.mark.parametrize("name", CONVERGED)
def test_verbose_2_prints_the_lines_of_each_iteration(name, capsys):
    every_iteration = {} if name == "VAEEstimator" else {"verbose_interval": 1}
    estimator = fit(STOPPED[name](verbose=2, **every_iteration))
    out, err = capsys.readouterr()
    assert err == ""
    first = "Epoch 1, ELBO" if name == "VAEEstimator" else "  Iteration 1\t"
    assert first in out
    assert len(out.splitlines()) >= estimator.n_iter_


def test_without_iterations_no_line_is_left_open(capsys):
    fit(EMGaussianMixture(2, max_iter=0, random_state=0, verbose=1))
    assert capsys.readouterr() == ("", "")


def test_time_is_shown_as_tqdm_shows_it():
    assert [_clock(s) for s in (0.4, 65, 3725)] == ["00:00", "01:05", "1:02:05"]


def test_time_left_assumes_every_step_at_the_mean_pace():
    line = ProgressLine("job", total=4)
    line.step = 1
    assert line._text(line.start + 30) == "job: 1/4 it [00:30<01:30]"


def test_online_fits_count_passes(every_update, monkeypatch):
    log = stderr(monkeypatch, io.StringIO())
    fit(
        EMGaussianMixture(
            2, learning_method="online", batch_size=50, random_state=0, verbose=1
        )
    )
    lines = log.getvalue().splitlines()
    assert lines and all(" pass" in line for line in lines)
