"""Latent-variable models with the scikit-learn API.

``EMGaussianMixture`` and ``EMFactorAnalysis`` are fitted by exact
Expectation-Maximisation; ``VAEEstimator`` is a PyTorch variational
auto-encoder; ``LatentImputer`` fills in missing values with any of the three,
fitted on the incomplete data.  ``VAEEstimator`` is imported lazily, so
importing this package does not import torch.
"""

from ._factor_analysis import EMFactorAnalysis
from ._gaussian_mixture import EMGaussianMixture
from ._impute import LatentImputer

__version__ = "0.4.0"
__all__ = ["EMGaussianMixture", "EMFactorAnalysis", "LatentImputer", "VAEEstimator"]


def __getattr__(name):
    # Lazy imports: torch is only needed by VAEEstimator.
    if name == "VAEEstimator":
        from .vae import VAEEstimator

        return VAEEstimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
