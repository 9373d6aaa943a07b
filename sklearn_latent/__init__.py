"""Latent-variable models with the scikit-learn API.

``EMGaussianMixture`` and ``EMFactorAnalysis`` are fitted by exact
Expectation-Maximisation; ``VAEEstimator`` is a PyTorch variational
auto-encoder.  ``VAEEstimator`` is imported lazily, so importing this package
does not import torch.
"""

from ._factor_analysis import EMFactorAnalysis
from ._gaussian_mixture import EMGaussianMixture

__version__ = "0.3.0"
__all__ = ["EMGaussianMixture", "EMFactorAnalysis", "VAEEstimator"]


def __getattr__(name):
    # Lazy imports: torch is only needed by VAEEstimator.
    if name == "VAEEstimator":
        from .vae import VAEEstimator

        return VAEEstimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
