"""
===============================================================
Pipelines and a grid search over the latent dimension
===============================================================

The estimators are scikit-learn estimators, so they go into a ``Pipeline``
and ``GridSearchCV`` can tune their parameters, here the dimension of the
latent space, in two ways:

- **unsupervised**, by the held-out log-likelihood: the default score of a
  grid search over a pipeline that ends with a density model is the model's
  ``score``, the mean log-likelihood per sample of the held-out rows;
- **supervised**, by the accuracy of a classifier fed with the latent
  representation ``transform`` gives: E[z|x] for factor analysis, the
  responsibilities p(z|x) for a Gaussian mixture.

The data: 178 wines, 13 chemical measurements, 3 cultivars.
"""

# %%
# Unsupervised: held-out log-likelihood
# -------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture

X, y = load_wine(return_X_y=True)
# The rows are sorted by cultivar: shuffle the folds.
cv = StratifiedKFold(5, shuffle=True, random_state=0)

# With 4 factors or more some wine features are explained without noise (a
# Heywood case); each such fit warns. The scores below show what they are worth.
warnings.filterwarnings("ignore", message="The noise variance of")

density = Pipeline([("scale", StandardScaler()), ("model", EMFactorAnalysis())])
n_components = list(range(1, 11))
search = GridSearchCV(
    density,
    {"model__n_components": n_components, "model__noise": ["diagonal", "isotropic"]},
    cv=cv,
)
search.fit(X, y)
print("best:", search.best_params_)

results = search.cv_results_
fig, ax = plt.subplots(figsize=(6, 4))
labels = {"diagonal": "factor analysis", "isotropic": "probabilistic PCA"}
for noise, label in labels.items():
    rows = results["param_model__noise"] == noise
    ax.plot(
        n_components,
        results["mean_test_score"][rows],
        marker="o",
        label=f'EMFactorAnalysis(noise="{noise}"): {label}',
    )
ax.set(xlabel="n_components", ylabel="held-out log-likelihood per wine")
ax.legend(fontsize=8)
plt.show()

# %%
# Each point is the mean over the 5 folds. The scores are those of the
# standardised data: in each fold the scaler's change of units shifts every
# candidate's log-likelihood by the same amount, so the ranking is that of
# the raw data.
#
# Supervised: accuracy of a classifier on the latent representation
# -----------------------------------------------------------------
# One grid over two pipelines: the ``latent`` step is itself a parameter.
classifier = Pipeline(
    [
        ("scale", StandardScaler()),
        ("latent", EMFactorAnalysis()),
        ("classify", LogisticRegression()),
    ]
)
grid = [
    {"latent": [EMFactorAnalysis()], "latent__n_components": n_components},
    {
        "latent": [EMGaussianMixture(covariance_type="diag", n_init=3, random_state=0)],
        "latent__n_components": n_components,
    },
]
search = GridSearchCV(classifier, grid, cv=cv).fit(X, y)
print("best:", search.best_params_)

results = search.cv_results_
names = np.array([type(model).__name__ for model in results["param_latent"]])
fig, ax = plt.subplots(figsize=(6, 4))
for name, representation in [
    ("EMFactorAnalysis", "E[z|x]"),
    ("EMGaussianMixture", "p(z|x)"),
]:
    rows = names == name
    ax.errorbar(
        n_components,
        results["mean_test_score"][rows],
        results["std_test_score"][rows],
        marker="o",
        capsize=3,
        label=f"{name}: {representation}",
    )
ax.set(xlabel="n_components", ylabel="held-out accuracy")
ax.legend(fontsize=8)
plt.show()

# %%
# ``VAEEstimator`` goes into the same pipelines and grids (its ``transform``
# is the encoder's mean, its ``score`` the held-out ELBO); it is left out here
# only because a grid of VAEs trains for longer than this example should take.
