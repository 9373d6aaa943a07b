"""
==================================================================
Factor analysis against PCA under heteroscedastic noise
==================================================================

Probabilistic PCA and factor analysis are the same linear Gaussian model,
x = W^T z + mean + noise, with z ~ N(0, I), except for the noise: one variance
shared by every feature (PCA) or one variance per feature (factor analysis).
When the features are noisy to different degrees, PCA's single variance is
wrong, and it needs extra components to soak up the noisiest features.

This is scikit-learn's "Model selection with Probabilistic PCA and Factor
Analysis" example with :class:`~sklearn_latent.EMFactorAnalysis`: the held-out
log-likelihood (``score``, 5-fold cross-validation) of each model against the
number of components, on data of rank 5. ``EMFactorAnalysis(noise="isotropic")``
fits probabilistic PCA by EM; scikit-learn's ``PCA.score`` is the closed-form
probabilistic PCA likelihood, and the two curves coincide.
"""

# %%
# Data of rank 5 in 25 dimensions, with two kinds of noise
# --------------------------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.model_selection import cross_val_score

from sklearn_latent import EMFactorAnalysis

n_samples, n_features, rank = 500, 25, 5
rng = np.random.RandomState(42)
U, _, _ = np.linalg.svd(rng.randn(n_features, n_features))
X = rng.randn(n_samples, rank) @ U[:, :rank].T
X_homoscedastic = X + rng.randn(n_samples, n_features)
noise_sd = rng.rand(n_features) + 0.5  # a different scale for each feature
X_heteroscedastic = X + rng.randn(n_samples, n_features) * noise_sd

# %%
# Held-out log-likelihood against n_components
# --------------------------------------------
# Past the true rank, extra factors can explain a feature without noise (a
# Heywood case: its noise variance reaches the floor), and each such fit
# warns; the curves show what those fits are worth.
warnings.filterwarnings("ignore", message="The noise variance of")

n_components = np.arange(0, n_features, 5)
models = {
    "PCA (scikit-learn)": lambda k: PCA(k, svd_solver="full"),
    'EMFactorAnalysis(noise="isotropic")': lambda k: EMFactorAnalysis(
        k, noise="isotropic"
    ),
    "EMFactorAnalysis (factor analysis)": lambda k: EMFactorAnalysis(k),
}
styles = ["-", ":", "-"]

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
datasets = {
    "homoscedastic noise": X_homoscedastic,
    "heteroscedastic noise": X_heteroscedastic,
}
for ax, (title, data) in zip(axes, datasets.items(), strict=True):
    print(title)
    for (name, model), style in zip(models.items(), styles, strict=True):
        scores = [np.mean(cross_val_score(model(k), data)) for k in n_components]
        best = n_components[np.argmax(scores)]
        print(f"  {name:38s} best n_components = {best}")
        ax.plot(n_components, scores, style, marker="o", label=name)
    ax.axvline(rank, color="k", ls="--", lw=1, label="true rank")
    ax.set(title=title, xlabel="n_components", ylabel="held-out log-likelihood")
axes[1].legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()

# %%
# With the same noise on every feature the three models agree on rank 5.
# With heteroscedastic noise factor analysis still finds it; PCA's likelihood
# keeps improving past it, as the extra components explain the noisiest
# features, and it selects more components than the data have.
#
# Unlike scikit-learn's ``FactorAnalysis``, EM on sufficient statistics reads
# the data once per fit: every iteration then costs O(n_features^2
# n_components), whatever the number of samples.
