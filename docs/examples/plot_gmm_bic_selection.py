"""
===========================================
Selecting a Gaussian mixture by BIC
===========================================

The Bayesian information criterion (BIC) trades the fit of a model, its
log-likelihood, against its number of free parameters:
BIC = -2 log p(X) + p log n, lower is better. Here it picks both the number of
components and the covariance structure of a :class:`~sklearn_latent.EMGaussianMixture`
on data drawn from a known mixture of two Gaussians, one of them stretched and
tilted.

:class:`~sklearn_latent.EMGaussianMixture` is a drop-in for scikit-learn's
``GaussianMixture``: the search below is scikit-learn's own model-selection
recipe, with ``-bic`` as the score of a grid search.
"""

# %%
# Data from a known mixture
# -------------------------
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse
from sklearn.model_selection import GridSearchCV

from sklearn_latent import EMGaussianMixture

rng = np.random.RandomState(0)
n_samples = 500
stretch = np.array([[0.0, -0.7], [3.5, 0.7]])
X = np.concatenate(
    [
        rng.randn(n_samples, 2) @ stretch,  # a tilted, elongated component
        0.7 * rng.randn(n_samples, 2) + [-4, 1],  # a round one
    ]
)

# %%
# A grid search with BIC as the score
# -----------------------------------
# ``GridSearchCV`` maximises its score, so it gets minus the BIC. The BIC is
# computed on the data it was fitted on (it penalises the parameters instead
# of holding data out), so one "fold" that is the whole data set is enough.


def bic_score(estimator, X):
    return -estimator.bic(X)


grid = {
    "n_components": range(1, 7),
    "covariance_type": ["spherical", "tied", "diag", "full"],
}
everything = [(np.arange(len(X)), np.arange(len(X)))]
search = GridSearchCV(
    EMGaussianMixture(random_state=0), grid, scoring=bic_score, cv=everything
)
search.fit(X)
print("selected:", search.best_params_)

# %%
# The BIC of every candidate
# --------------------------
results = search.cv_results_
bic = -results["mean_test_score"]
fig, ax_bic = plt.subplots(figsize=(7, 4.5))
width = 0.2
for i, covariance_type in enumerate(grid["covariance_type"]):
    rows = results["param_covariance_type"] == covariance_type
    ax_bic.bar(
        np.array(results["param_n_components"][rows], dtype=int) + (i - 1.5) * width,
        bic[rows],
        width,
        label=covariance_type,
    )
ax_bic.set(
    xlabel="n_components", ylabel="BIC (lower is better)", ylim=(bic.min() - 50, None)
)
ax_bic.legend(title="covariance_type")
plt.show()

# %%
# The selected model, with an ellipse of two standard deviations for each
# component, and the component each point is most likely to come from.
best = search.best_estimator_


def covariance_matrices(gm):
    """The (n_components, 2, 2) covariance matrices, whatever covariance_type."""
    c, eye = gm.covariances_, np.eye(2)
    return {
        "full": lambda: c,
        "tied": lambda: np.broadcast_to(c, (gm.n_components, 2, 2)),
        "diag": lambda: c[:, :, None] * eye,
        "spherical": lambda: c[:, None, None] * eye,
    }[gm.covariance_type]()


fig, ax_fit = plt.subplots(figsize=(6, 4.5))
ax_fit.scatter(*X.T, c=best.predict(X), s=4, cmap="coolwarm")
for mean, covariance in zip(best.means_, covariance_matrices(best), strict=True):
    values, vectors = np.linalg.eigh(covariance)
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    width_, height = 2 * 2 * np.sqrt(values[::-1])
    ax_fit.add_patch(
        Ellipse(mean, width_, height, angle=angle, fill=False, color="k", lw=1.5)
    )
ax_fit.set(title=f"{best.n_components} components, {best.covariance_type}")
ax_fit.set_aspect("equal")
plt.show()

# %%
# ``best.transform(X)`` gives each point's posterior probabilities p(z | x)
# over the components (the same as ``predict_proba``):
print(best.transform(X[:3]).round(3))
