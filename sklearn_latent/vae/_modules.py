"""The VAE's torch module: a Gaussian encoder q(z|x) and a decoder p(x|z)."""

from itertools import pairwise

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

ACTIVATIONS = {
    "identity": nn.Identity,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


def mlp(sizes, activation):
    """Linear layers from ``sizes[0]`` to ``sizes[-1]``, ``activation`` between them."""
    layers = []
    for n_in, n_out in pairwise(sizes):
        if layers:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """Encoder and decoder MLPs of a VAE with a standard normal prior p(z).

    The encoder maps x to the mean and log-variance of a diagonal Gaussian
    q(z|x); the decoder mirrors its hidden layers and maps z to the mean of a
    Gaussian p(x|z) with a learned per-feature log-variance ``log_var`` (the
    factor-analysis noise, made non-linear), or to the logits of independent
    Bernoullis. With no hidden layers both maps are affine: a linear VAE.
    ``log_var`` never falls below the buffer ``log_var_floor`` (see
    :meth:`project`), so the Gaussian likelihood is bounded.

    Missing entries (MIWAE, Mattei & Frellsen 2019) come as a boolean ``mask``
    of observed entries beside x, whose missing entries hold 0. With
    ``masked_encoder`` (a model first trained on data with NaN) the encoder
    reads ``[x, mask]``, 2 * n_features inputs, the missing entries of x at
    the buffer ``input_fill`` (the training means, set by
    :meth:`start_from`); without it the encoder reads x alone, its missing
    entries at E[x|z=0] (see :meth:`encode`).

    Build it under ``torch.device("meta")`` and call :meth:`reset_parameters`
    with a local generator after ``to_empty``, so that construction never
    draws from torch's global random state.
    """

    # Class default: a module pickled before missing values existed has none.
    masked_encoder = False

    def __init__(
        self,
        n_features,
        n_components,
        hidden_layer_sizes,
        activation,
        likelihood,
        masked_encoder=False,
    ):
        super().__init__()
        self.n_features = n_features
        self.n_components = n_components
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.activation = activation
        self.likelihood = likelihood
        self.masked_encoder = masked_encoder
        hidden = list(self.hidden_layer_sizes)
        n_inputs = 2 * n_features if masked_encoder else n_features
        self.encoder = mlp([n_inputs, *hidden, 2 * n_components], activation)
        self.decoder = mlp([n_components, *hidden[::-1], n_features], activation)
        gaussian = likelihood == "gaussian"
        self.log_var = nn.Parameter(torch.empty(n_features)) if gaussian else None
        self.register_buffer(
            "log_var_floor", torch.empty(n_features) if gaussian else None
        )
        self.register_buffer(
            "input_fill", torch.empty(n_features) if masked_encoder else None
        )

    def architecture(self):
        """What a warm start must keep unchanged (the encoder's input may
        change: a warm start keeps the fitted one, see :meth:`encode`)."""
        return (
            self.n_features,
            self.n_components,
            self.hidden_layer_sizes,
            self.activation,
            self.likelihood,
        )

    def reset_parameters(self, generator):
        """PyTorch's default ``nn.Linear`` initialisation, drawn from ``generator``.

        Weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); unit noise
        variance for the Gaussian likelihood.
        """
        with torch.no_grad():
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    bound = layer.in_features**-0.5
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.uniform_(-bound, bound, generator=generator)
            if self.log_var is not None:
                self.log_var.zero_()
                self.log_var_floor.fill_(-torch.inf)
            if self.input_fill is not None:
                self.input_fill.zero_()

    def start_from(self, mean, variance):
        """Start the decoder at the best model without z, from data moments.

        Output biases at the features' means (logits of them for Bernoulli)
        and, for the Gaussian, noise variances at the features' variances (not
        below the floor); each a float tensor of shape (n_features,). Training
        then starts where a model that ignores z is best, not a data scale
        away from it. A masked encoder reads missing entries at the means.
        """
        with torch.no_grad():
            if self.input_fill is not None:
                self.input_fill.copy_(mean)
            bias = self.decoder[-1].bias
            if self.likelihood == "gaussian":
                bias.copy_(mean)
                self.log_var.copy_(variance.log())
                self.project()
            else:
                bias.copy_(torch.logit(mean, eps=1e-3))

    def set_variance_floor(self, floor):
        """Floor the noise variances at ``floor``, shape (n_features,)."""
        with torch.no_grad():
            self.log_var_floor.copy_(floor.log())
        self.project()

    def project(self):
        """Put noise log-variances below their floor back on it (after a step)."""
        if self.log_var is not None:
            with torch.no_grad():
                self.log_var.clamp_(min=self.log_var_floor)

    def encode(self, x, mask=None):
        """Mean and log-variance of q(z|x), each of shape (..., n_components).

        ``mask`` (bool, x's shape; None: all observed) marks the observed
        entries; x holds 0 at the others. The encoder reads the missing
        entries at a typical value, not 0, which in data units may lie far
        from anything observed: a masked encoder at the training means
        (MIWAE's zero fill of standardised data; with a zero fill of pixel
        data the VAE was seen to ignore z), an encoder trained without masks
        at the decoder's mean at z = 0. Any q(z|x_o) gives a lower bound on
        log p(x_o); these stay near the rows the encoder was trained on.
        """
        if self.masked_encoder:
            if mask is None:
                observed = torch.ones_like(x)
            else:
                x, observed = torch.where(mask, x, self.input_fill), mask.to(x.dtype)
            x = torch.cat([x, observed], dim=-1)
        elif mask is not None:
            with torch.no_grad():
                typical = self.decoded_mean(x.new_zeros(self.n_components))
            x = torch.where(mask, x, typical)
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        return mean, log_var

    def decode(self, z):
        """Mean (Gaussian) or logits (Bernoulli) of p(x|z), shape (..., n_features)."""
        return self.decoder(z)

    def likelihood_distribution(self, out):
        """p(x|z) for decoder output ``out``, features independent."""
        # validate_args=False: validation would sync with the device each step.
        if self.likelihood == "gaussian":
            base = Normal(out, torch.exp(0.5 * self.log_var), validate_args=False)
        else:
            base = Bernoulli(logits=out, validate_args=False)
        return Independent(base, 1, validate_args=False)

    def decoded_mean(self, z):
        """E[x|z]."""
        out = self.decode(z)
        return out if self.likelihood == "gaussian" else torch.sigmoid(out)

    def sample_x(self, z, generator):
        """Draw x ~ p(x|z) with ``generator``."""
        out = self.decode(z)
        if self.likelihood == "gaussian":
            noise = torch.randn(
                out.shape, generator=generator, device=out.device, dtype=out.dtype
            )
            return out + torch.exp(0.5 * self.log_var) * noise
        return torch.bernoulli(torch.sigmoid(out), generator=generator)
