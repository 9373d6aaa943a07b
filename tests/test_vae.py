"""VAEEstimator: API contract, determinism, robustness, and the EM-VAE bridge."""

import copy
import pickle
import subprocess
import sys
import threading
import warnings

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

torch = pytest.importorskip("torch")

from sklearn_latent import VAEEstimator  # noqa: E402

# Small and quick: 20 epochs of 4 batches.
SMALL = dict(
    hidden_layer_sizes=(16,),
    batch_size=32,
    learning_rate_init=0.01,
    max_iter=20,
    random_state=0,
)


def fit_quietly(estimator, X, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def parameters(estimator):
    return [p.detach().clone() for p in estimator.module_.parameters()]


@pytest.fixture(scope="module")
def X():
    rng = np.random.RandomState(0)
    return rng.normal(size=(120, 5)) @ rng.normal(size=(5, 5)) + rng.normal(size=5)


@pytest.fixture(scope="module")
def X01():
    return np.random.RandomState(1).uniform(size=(100, 6))


@pytest.fixture(scope="module")
def fitted(X):
    return fit_quietly(VAEEstimator(**SMALL), X)


def run_python(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )


def test_import_sklearn_latent_does_not_import_torch():
    result = run_python("import sys, sklearn_latent; print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_torch_vaeestimator_says_how_to_install_it():
    result = run_python(
        # A finder that refuses torch, as if it were not installed. (Setting
        # sys.modules['torch'] = None instead confuses scipy's array-API probes.)
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from sklearn_latent import VAEEstimator\n"
        "try:\n"
        "    VAEEstimator()\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "sklearn-latent[torch]"' in result.stdout


def test_fitted_attributes(fitted, X):
    assert fitted.n_features_in_ == X.shape[1]
    assert fitted.n_iter_ == len(fitted.lower_bounds_) == 20
    assert fitted.lower_bound_ == fitted.lower_bounds_[-1]
    assert not fitted.converged_
    assert fitted.validation_scores_ is None
    assert fitted.device_ == "cpu"
    assert isinstance(fitted.module_, torch.nn.Module)
    assert isinstance(fitted.optimizer_, torch.optim.Adam)
    # Training raises the ELBO.
    assert fitted.lower_bounds_[-1] > fitted.lower_bounds_[0]
    assert list(fitted.get_feature_names_out()) == ["vaeestimator0", "vaeestimator1"]


def test_method_shapes_and_dtypes(fitted, X):
    assert fitted.transform(X).shape == (len(X), 2)
    assert fitted.transform(X.astype(np.float32)).dtype == np.float32
    assert fitted.score_samples(X).shape == (len(X),)
    assert fitted.log_likelihood(X, n_draws=10).shape == (len(X),)
    assert np.isfinite(fitted.score(X))
    assert fitted.inverse_transform(fitted.transform(X)).shape == X.shape
    X_new, Z_new = fitted.sample(7)
    assert X_new.shape == (7, X.shape[1]) and Z_new.shape == (7, 2)


def test_same_random_state_gives_identical_results(X):
    first = fit_quietly(VAEEstimator(**SMALL), X)
    second = fit_quietly(VAEEstimator(**SMALL), X)
    assert first.lower_bounds_ == second.lower_bounds_
    for a, b in zip(parameters(first), parameters(second), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    np.testing.assert_array_equal(first.score_samples(X), second.score_samples(X))
    np.testing.assert_array_equal(first.sample(5)[0], second.sample(5)[0])

    other = fit_quietly(VAEEstimator(**{**SMALL, "random_state": 1}), X)
    assert other.lower_bounds_ != first.lower_bounds_


@pytest.mark.parametrize("random_state", [0, None])
def test_global_random_state_is_untouched(X, random_state):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    vae = fit_quietly(VAEEstimator(**{**SMALL, "random_state": random_state}), X)
    vae.score_samples(X), vae.log_likelihood(X, n_draws=5), vae.sample(3)
    assert torch.equal(torch_state, torch.get_rng_state())
    after = np.random.get_state()
    assert numpy_state[0] == after[0] and numpy_state[2:] == after[2:]
    np.testing.assert_array_equal(numpy_state[1], after[1])


def test_scores_do_not_depend_on_the_other_rows(fitted, X):
    full = fitted.score_samples(X)
    # Deterministic: the same call gives the same numbers.
    np.testing.assert_array_equal(full, fitted.score_samples(X))
    for i in (0, 57, len(X) - 1):
        np.testing.assert_allclose(
            fitted.score_samples(X[i : i + 1])[0], full[i], rtol=1e-12
        )
    order = np.random.RandomState(0).permutation(len(X))
    np.testing.assert_allclose(fitted.score_samples(X[order]), full[order], rtol=1e-12)

    log_px = fitted.log_likelihood(X, n_draws=50)
    np.testing.assert_allclose(
        fitted.log_likelihood(X[3:4], n_draws=50)[0], log_px[3], rtol=1e-12
    )
    np.testing.assert_allclose(
        fitted.transform(X[3:4])[0], fitted.transform(X)[3], rtol=1e-12
    )


@settings(max_examples=10, deadline=None)
@given(rows=st.lists(st.integers(0, 119), min_size=1, max_size=20))
def test_a_rows_score_is_the_same_alone_or_in_any_batch(fitted, X, rows):
    # Any rows, repeated and in any order: each scores as it does alone.
    batch = X[rows]
    alone = {i: fitted.score_samples(X[i : i + 1])[0] for i in set(rows)}
    np.testing.assert_allclose(
        fitted.score_samples(batch), [alone[i] for i in rows], rtol=1e-12
    )
    np.testing.assert_allclose(
        fitted.log_likelihood(batch, n_draws=20),
        fitted.log_likelihood(X, n_draws=20)[rows],
        rtol=1e-12,
    )


def test_noise_variances_stop_at_their_floor(X):
    X_constant = X.copy()
    X_constant[:, 2] = 0.0
    variance = X_constant.var(0)
    # 1e-6 x the feature's variance; x the mean variance for a constant one.
    floor = 1e-6 * np.where(variance > 0, variance, variance.mean())
    vae = fit_quietly(VAEEstimator(warm_start=True, **SMALL), X_constant)
    log_floor = vae.module_.log_var_floor.double().numpy()
    np.testing.assert_allclose(np.exp(log_floor), floor, rtol=1e-6)
    assert np.all(vae.module_.log_var.detach().numpy() >= log_floor)
    # As if a long fit had driven the constant feature's noise towards 0:
    # the next steps put it back on the floor, and the fit says so.
    with torch.no_grad():
        vae.module_.log_var[2] = -50.0
    with pytest.warns(UserWarning, match=r"1 feature\(s\) \(indices \[2\]\)"):
        fit_quietly(vae.set_params(learning_rate_init=1e-6, max_iter=1), X_constant)
    noise = torch.exp(vae.module_.log_var.detach().double()).numpy()
    np.testing.assert_allclose(noise[2], floor[2], rtol=1e-4)
    # The density is as sharp as the floor allows, no sharper: a row lit in
    # the constant feature (x = 1) loses about 1 / (2 * floor), not inf.
    lit = X_constant[:3].copy()
    lit[:, 2] = 1.0
    penalty = vae.score_samples(lit) - vae.score_samples(X_constant[:3])
    np.testing.assert_allclose(penalty, -0.5 / floor[2], rtol=0.05)


def test_log_likelihood_lies_above_the_elbo(fitted, X):
    elbo = fitted.score_samples(X)
    # With the ELBO's own draws (moment-matched, so the KL estimate is exact)
    # the importance-weighted bound is above the ELBO row by row (Jensen).
    same_draws = fitted.log_likelihood(X, n_draws=32)
    assert np.all(same_draws >= elbo - 1e-12)
    assert same_draws.mean() > elbo.mean()


def test_log_likelihood_n_samples_is_deprecated_for_n_draws(fitted, X):
    expected = fitted.log_likelihood(X[:5], n_draws=20)
    with pytest.warns(FutureWarning, match="n_draws"):
        old = fitted.log_likelihood(X[:5], n_samples=20)
    np.testing.assert_array_equal(old, expected)
    np.testing.assert_array_equal(fitted.log_likelihood(X[:5], 20), expected)


def test_bernoulli_needs_data_in_unit_interval(X01):
    vae = fit_quietly(VAEEstimator(likelihood="bernoulli", **SMALL), X01)
    assert np.isfinite(vae.score(X01))
    X_bad = X01 * 2
    with pytest.raises(ValueError, match=r"bernoulli.*\[0, 1\]"):
        VAEEstimator(likelihood="bernoulli", **SMALL).fit(X_bad)
    with pytest.raises(ValueError, match=r"bernoulli.*\[0, 1\]"):
        vae.score_samples(X_bad)
    X_sampled, _ = vae.sample(20)
    assert set(np.unique(X_sampled)) <= {0.0, 1.0}
    decoded = vae.inverse_transform(vae.transform(X01))
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_a_diverging_first_fit_raises_and_a_lower_learning_rate_fits(X):
    vae = VAEEstimator(**{**SMALL, "learning_rate_init": 1e6})
    with pytest.raises(ValueError, match="learning_rate_init"):
        vae.fit(X)
    assert not hasattr(vae, "module_")
    fit_quietly(vae.set_params(learning_rate_init=0.01), X)
    assert np.all(np.isfinite(vae.score_samples(X)))


def test_a_blow_up_in_the_last_step_is_not_a_successful_fit(X):
    # One step, taken after the only ELBO of the epoch was computed: before
    # the final parameters were checked, this fit succeeded and scored NaN.
    vae = VAEEstimator(
        hidden_layer_sizes=(16,), batch_size=len(X), max_iter=1, random_state=0
    )
    with pytest.raises(ValueError, match="diverged"):
        vae.set_params(learning_rate_init=1e6).fit(X)
    assert not hasattr(vae, "module_")


def test_a_diverging_warm_fit_keeps_the_model_and_adam_state(X):
    vae = fit_quietly(VAEEstimator(warm_start=True, **SMALL), X)
    before = parameters(vae)
    adam = copy.deepcopy(vae.optimizer_.state_dict())
    scores = vae.score_samples(X)
    with pytest.raises(ValueError, match="warm_start=True"):
        vae.set_params(learning_rate_init=1e6).fit(X)
    for a, b in zip(parameters(vae), before, strict=True):
        assert torch.equal(a, b)
    after = vae.optimizer_.state_dict()
    for i, state in adam["state"].items():
        for name, value in state.items():
            assert torch.equal(after["state"][i][name], value)
    np.testing.assert_array_equal(vae.score_samples(X), scores)
    # The error's advice works: a lower learning rate continues from there.
    lower_bound = vae.lower_bound_
    fit_quietly(vae.set_params(learning_rate_init=0.01), X)
    assert vae.lower_bounds_[0] > lower_bound - 0.5
    assert all(torch.isfinite(p).all() for p in vae.module_.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_a_gpu_is_a_clear_error(X):
    with pytest.raises(ValueError, match="CUDA is not available"):
        VAEEstimator(device="cuda", **SMALL).fit(X)
    assert fit_quietly(VAEEstimator(device="auto", **SMALL), X).device_ == "cpu"


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_fit_infers_as_its_cpu_copy(X, dtype):
    X = X.astype(dtype)
    gpu = fit_quietly(VAEEstimator(device="cuda", **SMALL), X)
    assert gpu.device_ == "cuda"
    assert all(p.is_cuda for p in gpu.module_.parameters())
    # The same parameters on the CPU: every output agrees to rounding (the
    # fixed noise of score_samples is drawn on the CPU for either device).
    cpu = copy.deepcopy(gpu)
    cpu.module_.to("cpu")
    cpu.device_ = "cpu"
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    for method in ("transform", "score_samples"):
        on_gpu, on_cpu = getattr(gpu, method)(X), getattr(cpu, method)(X)
        assert isinstance(on_gpu, np.ndarray) and on_gpu.dtype == on_cpu.dtype
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=rtol, atol=rtol)
    assert np.isfinite(gpu.log_likelihood(X, n_draws=50)).all()
    assert gpu.sample(7)[0].shape == (7, X.shape[1])
    # Training improved the bound, as on the CPU.
    assert gpu.lower_bounds_[-1] > gpu.lower_bounds_[0]


@needs_cuda
def test_cuda_partial_fit_and_pickle_stay_on_the_gpu(X, tmp_path):
    gpu = VAEEstimator(device="auto", **SMALL)
    for _ in range(3):
        gpu.partial_fit(X)
    assert gpu.device_ == "cuda"
    state = gpu.optimizer_.state[next(iter(gpu.module_.parameters()))]
    assert state["exp_avg"].is_cuda
    path = tmp_path / "vae.joblib"
    joblib.dump(gpu, path)
    restored = joblib.load(path)
    assert restored.device_ == "cuda"
    np.testing.assert_array_equal(restored.transform(X), gpu.transform(X))
    restored.partial_fit(X)  # Adam's state came back on the GPU


def test_pickle_and_joblib_round_trip(fitted, X, tmp_path):
    path = tmp_path / "vae.joblib"
    joblib.dump(fitted, path)
    for restored in (pickle.loads(pickle.dumps(fitted)), joblib.load(path)):
        np.testing.assert_array_equal(restored.transform(X), fitted.transform(X))
        np.testing.assert_array_equal(
            restored.score_samples(X), fitted.score_samples(X)
        )
        # The optimiser still drives the restored networks (for warm_start).
        optimised = {
            id(p) for g in restored.optimizer_.param_groups for p in g["params"]
        }
        assert optimised == {id(p) for p in restored.module_.parameters()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_a_model_pickled_on_a_gpu_loads_on_the_cpu(fitted, X):
    # Stand in for a CUDA-fitted model: the state a GPU machine would pickle.
    state = fitted.__getstate__()
    state["device_"] = "cuda"
    restored = VAEEstimator.__new__(VAEEstimator)
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        restored.__setstate__(state)
    assert restored.device_ == "cpu"
    np.testing.assert_array_equal(restored.transform(X), fitted.transform(X))


def test_in_a_pipeline_after_standard_scaler(X):
    pipe = fit_quietly(make_pipeline(StandardScaler(), VAEEstimator(**SMALL)), X)
    assert pipe.transform(X).shape == (len(X), 2)
    assert np.isfinite(pipe.score(X))


def test_grid_search_in_parallel_scores_as_a_fit_here(X):
    search = GridSearchCV(
        VAEEstimator(**SMALL), {"n_components": [1, 3]}, cv=2, n_jobs=2
    )
    fit_quietly(search, X)
    # Worker processes fit and score exactly as this one: same seeds, no
    # global state.
    train, test = next(KFold(2).split(X))  # cv=2's first split
    here = fit_quietly(VAEEstimator(**{**SMALL, "n_components": 3}), X[train])
    assert search.cv_results_["split0_test_score"][1] == here.score(X[test])


def test_transform_into_a_classifier():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(
        StandardScaler(),
        VAEEstimator(**SMALL),
        LogisticRegression(),
    )
    fit_quietly(pipe, X, y)
    assert pipe.score(X, y) > 0.8


def test_set_output_pandas(fitted, X):
    pd = pytest.importorskip("pandas")
    frame = fitted.set_output(transform="pandas").transform(X)
    fitted.set_output(transform="default")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["vaeestimator0", "vaeestimator1"]


def test_early_stopping_keeps_the_best_validation_epoch(X):
    vae = VAEEstimator(
        hidden_layer_sizes=(16,),
        early_stopping=True,
        n_iter_no_change=2,
        learning_rate_init=0.05,
        max_iter=500,
        random_state=0,
    ).fit(X)
    assert vae.converged_ and vae.n_iter_ < 500
    assert len(vae.validation_scores_) == vae.n_iter_
    best = int(np.argmax(vae.validation_scores_))
    assert vae.best_validation_score_ == vae.validation_scores_[best]
    assert vae.lower_bound_ == vae.lower_bounds_[best]
    # Stopped at the second plateau of 3 (> n_iter_no_change) epochs: 3 epochs
    # after the best one, or 6 if the lowered learning rate did not improve it.
    assert vae.n_iter_ - 1 - best in (3, 6)


def test_max_iter_without_convergence_warns(X):
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        vae = VAEEstimator(**{**SMALL, "max_iter": 2}).fit(X)
    assert not vae.converged_


def test_warm_start_continues_training(X):
    once = fit_quietly(VAEEstimator(**SMALL), X)
    twice = fit_quietly(VAEEstimator(warm_start=True, **SMALL), X)
    assert twice.lower_bounds_ == once.lower_bounds_
    fit_quietly(twice, X)
    assert twice.lower_bounds_[0] > once.lower_bounds_[0]
    with pytest.raises(ValueError, match="warm_start"):
        twice.set_params(n_components=3).fit(X)


def test_beta_weighs_the_kl_term(X):
    scaled = StandardScaler().fit_transform(X)
    plain = fit_quietly(VAEEstimator(**SMALL), scaled)
    collapsed = fit_quietly(VAEEstimator(beta=100.0, **SMALL), scaled)
    # A heavy KL weight pulls q(z|x) onto the prior: codes near zero.
    assert (
        np.abs(collapsed.transform(scaled)).mean()
        < 0.2 * np.abs(plain.transform(scaled)).mean()
    )


def test_verbose_2_prints_each_epoch(X, capsys):
    fit_quietly(VAEEstimator(**{**SMALL, "max_iter": 3, "verbose": 2}), X)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["Epoch 1", "Epoch 2", "Epoch 3"]


@pytest.fixture
def three_torch_threads():
    # A setting no VAEEstimator in these tests asks for, so a change shows.
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def torch_threads_setting():
    """torch's process-wide thread setting: what a new thread starts with.

    (With OpenMP, ``torch.get_num_threads()`` in an existing thread may keep
    that thread's own copy of the setting for a while.)
    """
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def run_overlapping(calls, watch):
    """Run each call in its own Python thread, all released at once; meanwhile
    record ``watch()`` in this thread until they finish."""
    barrier = threading.Barrier(len(calls) + 1)
    errors, seen = [], set()

    def run(call):
        try:
            barrier.wait()
            call()
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    barrier.wait()
    while any(thread.is_alive() for thread in threads):
        seen.add(watch())
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return seen


def test_inference_in_overlapping_threads_leaves_the_thread_setting_alone(
    fitted, X, three_torch_threads
):
    def infer():
        for _ in range(30):
            fitted.score_samples(X)
            fitted.transform(X)
            fitted.sample(5)

    seen = run_overlapping([infer, infer], torch_threads_setting)
    assert seen == {three_torch_threads}
    assert torch_threads_setting() == torch.get_num_threads() == three_torch_threads


def test_overlapping_fits_restore_the_thread_setting(X, three_torch_threads):
    def fit():
        fit_quietly(VAEEstimator(**{**SMALL, "n_threads": 1}), X)

    seen = run_overlapping([fit, fit], torch_threads_setting)
    assert 1 in seen  # the fits did set it
    assert torch_threads_setting() == torch.get_num_threads() == three_torch_threads


def test_bad_parameters_are_rejected(fitted, X):
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        VAEEstimator(hidden_layer_sizes=(8, 0)).fit(X)
    with pytest.raises(ValueError, match="n_components=2"):
        fitted.inverse_transform(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="n_draws"):
        fitted.log_likelihood(X, n_draws=0)


@pytest.mark.parametrize("count", [True, 0, 2.0])
def test_counts_must_be_positive_integers_not_bools(fitted, X, count):
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        fitted.sample(count)
    with pytest.raises(ValueError, match="n_draws must be a positive integer"):
        fitted.log_likelihood(X, n_draws=count)


def test_arrays_with_negative_strides_are_accepted(fitted, X):
    reversed_rows, reversed_columns = X[::-1], X[:, ::-1]
    np.testing.assert_allclose(
        fitted.score_samples(reversed_rows), fitted.score_samples(X)[::-1], rtol=1e-12
    )
    np.testing.assert_allclose(
        fitted.transform(reversed_rows), fitted.transform(X)[::-1], rtol=1e-12
    )
    refit = fit_quietly(VAEEstimator(**SMALL), reversed_columns)
    assert np.all(np.isfinite(refit.score_samples(reversed_columns)))


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_a_point_far_outside_the_data_scores_minus_inf(X, X01, likelihood):
    data = X if likelihood == "gaussian" else X01
    vae = fit_quietly(VAEEstimator(likelihood=likelihood, **SMALL), data)
    far = np.vstack([data[:2], np.full(data.shape[1], 1e155)])
    if likelihood == "bernoulli":
        far[-1] = 1.0  # Bernoulli data stays in [0, 1]: no point is far.
    for scores in (vae.score_samples(far), vae.log_likelihood(far, n_draws=50)):
        assert not np.any(np.isnan(scores))
        assert np.all(np.isfinite(scores[:2]))
        if likelihood == "gaussian":
            assert scores[-1] == -np.inf


def test_partial_fit_trains_one_epoch_per_call_and_keeps_adam(X):
    vae = VAEEstimator(**SMALL)
    for _ in range(3):
        vae.partial_fit(X)
    steps = vae.optimizer_.state[next(vae.module_.parameters())]["step"]
    assert vae.n_iter_ == 3 and len(vae.lower_bounds_) == 3
    assert int(steps) == 3 * int(np.ceil(len(X) / SMALL["batch_size"]))
    early = vae.score(X)
    for _ in range(30):
        vae.partial_fit(X)
    assert vae.score(X) > early + 0.1  # 0.36 nats here
    assert np.isfinite(vae.score_samples(X)).all()
    # The same batches in the same order give the same model.
    again = VAEEstimator(**SMALL)
    for _ in range(33):
        again.partial_fit(X)
    for a, b in zip(parameters(vae), parameters(again), strict=True):
        assert torch.equal(a, b)


def test_partial_fit_refuses_other_features_and_leaves_the_model(X):
    vae = VAEEstimator(**SMALL).partial_fit(X)
    before = parameters(vae)
    with pytest.raises(ValueError, match="every batch must have the features"):
        vae.partial_fit(X[:, :3])
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        vae.partial_fit(bad)
    assert vae.n_iter_ == 1
    for a, b in zip(before, parameters(vae), strict=True):
        assert torch.equal(a, b)
    # After fit, partial_fit continues the fitted networks.
    fitted = fit_quietly(VAEEstimator(**SMALL), X)
    n_iter, score = fitted.n_iter_, fitted.score(X)
    fitted.partial_fit(X)
    assert fitted.n_iter_ == n_iter + 1
    assert abs(fitted.score(X) - score) < 1.0


def test_partial_fit_over_chunks_of_a_memory_mapped_file(X, tmp_path):
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    from_disk, in_memory = VAEEstimator(**SMALL), VAEEstimator(**SMALL)
    for start in range(0, len(X), 40):
        from_disk.partial_fit(mapped[start : start + 40])
        in_memory.partial_fit(X[start : start + 40])
    # Read-only memory-mapped batches train exactly as arrays in memory.
    for a, b in zip(parameters(from_disk), parameters(in_memory), strict=True):
        assert torch.equal(a, b)
    assert np.isfinite(from_disk.score(X))
