"""The PyTorch variational auto-encoder: the only subpackage that imports torch.

torch is an optional dependency (the ``torch`` extra). Without it this package
still imports, and ``VAEEstimator`` is a stand-in that raises an ImportError
saying how to install it (umap-learn's pattern for ParametricUMAP).
"""

try:
    import torch  # noqa: F401
except ImportError as _torch_error:
    _TORCH_ERROR = _torch_error

    class VAEEstimator:
        """Stand-in for VAEEstimator when PyTorch is not installed."""

        def __init__(self, *args, **kwargs):
            raise ImportError(
                "VAEEstimator needs PyTorch, which is not installed. Install it "
                'with: pip install "sklearn-latent[torch]"'
            ) from _TORCH_ERROR

else:
    from ._estimator import VAEEstimator

__all__ = ["VAEEstimator"]
