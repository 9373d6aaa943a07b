"""The VAE's training loop: Adam on mini-batches, convergence and early stopping."""

import copy
import math
from dataclasses import dataclass, field

import torch

from .._progress import ProgressLine
from ._losses import elbo_terms, observed

# Rows per forward pass when evaluating the ELBO of a whole data set.
EVALUATION_CHUNK = 4096
# On the first plateau the learning rate is multiplied by LR_DROP_FACTOR and
# training goes on; the next plateau stops it.
LR_DROPS = 1
LR_DROP_FACTOR = 0.1


@dataclass
class History:
    """What a training run leaves behind, per epoch and overall."""

    lower_bounds: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_epoch: int = 0
    converged: bool = False


class Blocks:
    """Rows that arrive a block at a time (a dask array's), never all at once.

    ``blocks`` yield the rows of one block as a tensor when called; an epoch
    visits them in a shuffled order and shuffles the rows within each.
    """

    def __init__(self, blocks, n_rows):
        self.blocks, self.n_rows = blocks, n_rows

    def __len__(self):
        return self.n_rows


def run_epoch(module, optimizer, X, *, batch_size, beta, generator, missing=False):
    """One pass over the rows of X in shuffled mini-batches; returns the mean ELBO.

    Each step maximises the beta-ELBO of its batch with one fresh noise draw
    per row, then puts the noise variances back above their floor. The
    returned mean (a 0-d tensor: no device sync per batch) is the plain
    ELBO, beta = 1, whatever ``beta`` is. X is a tensor or :class:`Blocks`.
    ``missing``: X has NaN, so every batch takes the masked ELBO of its
    observed entries (said once per data set: asking each batch would sync
    with the device).
    """
    if isinstance(X, Blocks):
        total = 0.0
        for i in torch.randperm(len(X.blocks), generator=generator).tolist():
            rows = X.blocks[i]()
            total += len(rows) * run_epoch(
                module,
                optimizer,
                rows,
                batch_size=batch_size,
                beta=beta,
                generator=generator,
            )
        return total / len(X)
    n_samples = X.shape[0]
    total = X.new_zeros(())
    order = torch.randperm(n_samples, generator=generator, device=X.device)
    for batch in order.split(batch_size):
        x, mask = observed(X[batch]) if missing else (X[batch], None)
        eps = torch.randn(
            (len(batch), module.n_components), generator=generator, device=X.device
        )
        reconstruction, kl = elbo_terms(module, x, eps, mask)
        loss = (beta * kl - reconstruction).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        module.project()
        total += (reconstruction - kl).detach().sum()
    return total / n_samples


def evaluate(module, X, eps, missing=False):
    """Mean ELBO of the rows of X under fixed noise ``eps`` (a 0-d tensor).

    ``eps`` is (n, k), one draw per row, or (n_draws, 1, k), shared;
    ``missing`` as in :func:`run_epoch`.
    """
    total = X.new_zeros(())
    with torch.no_grad():
        for rows in torch.arange(len(X), device=X.device).split(EVALUATION_CHUNK):
            noise = eps[rows] if eps.dim() == 2 else eps
            x, mask = observed(X[rows]) if missing else (X[rows], None)
            reconstruction, kl = elbo_terms(module, x, noise, mask)
            total += (reconstruction - kl).sum()
    return total / len(X)


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
    missing=False,
):
    """Train ``module`` for up to ``max_iter`` epochs; return a :class:`History`.

    ``History.lower_bounds`` holds each epoch's training ELBO, the mean over
    its batches. A plateau is more than ``n_iter_no_change`` consecutive
    epochs in which the score has not risen by ``tol`` above its best (as in
    scikit-learn's MLP); the first ``LR_DROPS`` plateaus lower the learning
    rate, the next stops training (converged). The score is the
    validation ELBO with a validation set ``X_val`` (under the fixed
    ``validation_noise``; the best epoch's parameters and Adam state are then
    kept), else the training ELBO at the end of the epoch under one fixed
    draw per row, the same every epoch: the batch mean moves with fresh noise
    by far more than ``tol``, so it cannot tell a plateau from noise.

    ``verbose=1`` shows a live progress line (epoch, ELBO, validation ELBO,
    the change of the score over its best against ``tol``, elapsed time and
    time left); ``verbose>=2`` prints a line per epoch and the learning-rate
    drops.

    Raises ValueError, leaving ``module`` and ``optimizer`` in an unspecified
    state, when an ELBO or the ELBO at the final parameters is not finite.
    """
    history = History()
    progress = (
        ProgressLine("VAEEstimator", max_iter, unit="epoch") if verbose == 1 else None
    )
    lr_drops_left = LR_DROPS
    # Blocks are judged on the epoch's ELBO: a fixed-noise pass would cost a
    # second pass over data that may not fit in memory.
    streamed = isinstance(X, Blocks)
    track_training = X_val is None and math.isfinite(n_iter_no_change) and not streamed
    if not streamed:
        training_noise = torch.randn(
            (len(X), module.n_components), generator=generator, device=X.device
        )
    best_score, best_state, no_improvement = -math.inf, None, 0
    for epoch in range(max_iter):
        elbo = run_epoch(
            module,
            optimizer,
            X,
            batch_size=batch_size,
            beta=beta,
            generator=generator,
            missing=missing,
        )
        if X_val is not None:
            score = evaluate(module, X_val, validation_noise, missing)
        elif track_training:
            score = evaluate(module, X, training_noise, missing)
        else:
            score = elbo
        # One host sync per epoch.
        elbo, score = torch.stack([elbo, score]).tolist()
        if not (math.isfinite(elbo) and math.isfinite(score)):
            _diverged(optimizer, epoch, elbo if not math.isfinite(elbo) else score)
        history.lower_bounds.append(elbo)
        if X_val is not None:
            history.validation_scores.append(score)
        if progress is not None:
            shown = {"ELBO": elbo}
            if X_val is not None:
                shown["validation_ELBO"] = score
            progress.update(epoch + 1, **shown, change=score - best_score, tol=tol)
        elif verbose:
            line = f"Epoch {epoch + 1}, ELBO = {elbo:.6f}"
            if X_val is not None:
                line += f", validation ELBO = {score:.6f}"
            print(line)

        no_improvement = no_improvement + 1 if score < best_score + tol else 0
        if score > best_score:
            best_score, history.best_epoch = score, epoch
            if X_val is not None:
                best_state = _copy_state(module, optimizer)
        if no_improvement > n_iter_no_change and lr_drops_left:
            # Adam's steps keep the parameters jittering about the optimum, by
            # more at a higher rate: a plateau first lowers the rate.
            lr_drops_left -= 1
            no_improvement = 0
            for group in optimizer.param_groups:
                group["lr"] *= LR_DROP_FACTOR
            if verbose >= 2:
                print(f"Learning rate lowered to {optimizer.param_groups[0]['lr']:g}.")
        elif no_improvement > n_iter_no_change:
            history.converged = True
            if verbose >= 2:
                what = "Validation" if X_val is not None else "Training"
                print(
                    f"{what} ELBO did not improve more than tol={tol:g} for "
                    f"{n_iter_no_change} consecutive epochs. Stopping."
                )
            break
    if progress is not None:
        progress.close("converged" if history.converged else "did not converge")
    if best_state is not None:
        module.load_state_dict(best_state[0])
        optimizer.load_state_dict(best_state[1])
    elif not track_training:
        # The last step may have blown up after the last ELBO was taken.
        if streamed:
            finite = all(torch.isfinite(p).all() for p in module.parameters())
            final = 0.0 if finite else math.nan
        else:
            final = evaluate(module, X, training_noise, missing).item()
        if not math.isfinite(final):
            _diverged(optimizer, len(history.lower_bounds) - 1, final)
    return history


def _diverged(optimizer, epoch, value):
    lr = optimizer.param_groups[0]["lr"]
    raise ValueError(
        f"Training diverged: the ELBO became {value} in epoch {epoch + 1}. Lower "
        f"learning_rate_init (now {lr:g}) or standardise the data (e.g. with "
        "StandardScaler). The estimator is left as it was before this fit: "
        "with warm_start=True, a fit at a lower rate continues from the model "
        "fitted before (if any) and its Adam state."
    )


def _copy_state(module, optimizer):
    return (
        {name: t.detach().clone() for name, t in module.state_dict().items()},
        copy.deepcopy(optimizer.state_dict()),
    )
