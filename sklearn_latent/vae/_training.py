"""The VAE's training loop: Adam on mini-batches, convergence and early stopping."""

import math
from dataclasses import dataclass, field

import torch

from ._losses import elbo_terms


@dataclass
class History:
    """What a training run leaves behind, per epoch and overall."""

    lower_bounds: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_epoch: int = 0
    converged: bool = False


def run_epoch(module, optimizer, X, *, batch_size, beta, generator):
    """One pass over the rows of X in shuffled mini-batches; returns the mean ELBO.

    Each step maximises the beta-ELBO of its batch with one fresh noise draw
    per row. The returned mean (a 0-d tensor: no device sync per batch) is
    the plain ELBO, beta = 1, whatever ``beta`` is.
    """
    n_samples = X.shape[0]
    total = X.new_zeros(())
    order = torch.randperm(n_samples, generator=generator, device=X.device)
    for batch in order.split(batch_size):
        x = X[batch]
        eps = torch.randn(
            (len(batch), module.n_components), generator=generator, device=X.device
        )
        reconstruction, kl = elbo_terms(module, x, eps)
        loss = (beta * kl - reconstruction).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += (reconstruction - kl).detach().sum()
    return total / n_samples


def train(
    module,
    optimizer,
    X,
    X_val,
    *,
    batch_size,
    max_iter,
    tol,
    n_iter_no_change,
    beta,
    generator,
    validation_noise,
    verbose,
):
    """Train ``module`` for up to ``max_iter`` epochs; return a :class:`History`.

    Stopping follows scikit-learn's MLP: training stops (converged) once the
    score has not risen by ``tol`` above its best for more than
    ``n_iter_no_change`` consecutive epochs. The score is the training ELBO,
    or with a validation set ``X_val`` the validation ELBO under the fixed
    ``validation_noise``, in which case the best epoch's parameters are kept.

    A non-finite ELBO or parameter restores the last finite epoch's
    parameters, clears Adam's moments and raises ValueError.
    """
    history = History()
    best_score, best_state, no_improvement = -math.inf, None, 0
    for epoch in range(max_iter):
        last_finite = _copy_state(module)
        elbo = run_epoch(
            module, optimizer, X, batch_size=batch_size, beta=beta, generator=generator
        ).item()
        if not (math.isfinite(elbo) and _all_finite(module)):
            module.load_state_dict(last_finite)
            optimizer.state.clear()
            lr = optimizer.param_groups[0]["lr"]
            raise ValueError(
                f"Training diverged: the ELBO became {elbo} in epoch {epoch + 1}. "
                f"Lower learning_rate_init (now {lr:g}) or standardise the data "
                "(e.g. with StandardScaler). The parameters of the last finite "
                "epoch were restored."
            )
        history.lower_bounds.append(elbo)
        score = elbo
        if X_val is not None:
            with torch.no_grad():
                reconstruction, kl = elbo_terms(module, X_val, validation_noise)
                score = (reconstruction - kl).mean().item()
            history.validation_scores.append(score)
        if verbose:
            line = f"Epoch {epoch + 1}, ELBO = {elbo:.6f}"
            if X_val is not None:
                line += f", validation ELBO = {score:.6f}"
            print(line)

        no_improvement = no_improvement + 1 if score < best_score + tol else 0
        if score > best_score:
            best_score, history.best_epoch = score, epoch
            if X_val is not None:
                best_state = _copy_state(module)
        if no_improvement > n_iter_no_change:
            history.converged = True
            if verbose:
                what = "Validation" if X_val is not None else "Training"
                print(
                    f"{what} ELBO did not improve more than tol={tol:g} for "
                    f"{n_iter_no_change} consecutive epochs. Stopping."
                )
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return history


def _copy_state(module):
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def _all_finite(module):
    return all(torch.isfinite(p).all() for p in module.parameters())
