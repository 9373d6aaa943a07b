"""VAEEstimator against a minimal hand-written torch training loop.

Scikit-learn's digits scaled to [0, 1] (pixels / 16), 80/20 split; a Bernoulli
VAE (the natural likelihood for values in [0, 1]) with encoder 64-128-128-8
and the mirrored decoder, ReLU, batch 128, Adam 1e-3, 30 epochs. Both sides
train the same architecture with the same torch thread count, one case per
thread count, and both are scored by the same evaluator here: held-out ELBO and
IWAE (K importance samples), in nats per digit, mean over the seeds of the
timed repeats.

    PYTHONPATH=. python benchmarks/bench_vae.py [--quick]
"""

import math
import statistics
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from torch import nn

from benchmarks._timing import compare
from sklearn_latent import VAEEstimator

LATENT, HIDDEN, BATCH, LR = 8, 128, 128, 1e-3


def reference_fit(X, *, epochs, seed):
    """The minimal torch VAE loop that VAEEstimator is timed against."""
    torch.manual_seed(seed)
    d = X.shape[1]
    encoder = nn.Sequential(
        nn.Linear(d, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, 2 * LATENT),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(LATENT, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, d),
    )  # fmt: skip
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], LR)
    X = torch.tensor(X, dtype=torch.float32)
    for _ in range(epochs):
        for batch in torch.randperm(len(X)).split(BATCH):
            x = X[batch]
            mean, log_var = encoder(x).chunk(2, dim=-1)
            z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            reconstruction = F.binary_cross_entropy_with_logits(
                decoder(z), x, reduction="sum"
            )
            kl = 0.5 * (log_var.exp() + mean**2 - 1 - log_var).sum()
            loss = (reconstruction + kl) / len(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return encoder, decoder


def held_out(encoder, decoder, X, n_draws, seed=0):
    """Mean ELBO and IWAE bound of a Bernoulli VAE on X, each with ``n_draws``
    fresh draws per row, in float64."""
    generator = torch.Generator().manual_seed(seed)
    encoder, decoder = encoder.double(), decoder.double()
    elbo, iwae = [], []
    with torch.no_grad():
        for x in torch.tensor(X, dtype=torch.float64).split(20):
            mean, log_var = encoder(x).chunk(2, dim=-1)
            eps = torch.randn((n_draws, *mean.shape), generator=generator).double()
            z = mean + torch.exp(0.5 * log_var) * eps
            logits = decoder(z)
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none"
            ).sum(-1)
            kl = 0.5 * (log_var.exp() + mean**2 - 1 - log_var).sum(-1)
            elbo.append(log_px_z.mean(0) - kl)
            log_w = log_px_z - 0.5 * (z**2 - eps**2 - log_var).sum(-1)
            iwae.append(torch.logsumexp(log_w, 0) - math.log(n_draws))
    encoder.float(), decoder.float()
    return torch.cat(elbo).mean().item(), torch.cat(iwae).mean().item()


def run(quick: bool = False) -> list[dict]:
    """One row per torch thread count: median fit times, their ratio, quality."""
    epochs, repeats, n_draws = (10, 1, 100) if quick else (30, 5, 1000)
    # Two threads are far slower on a busy 2-core machine: quick mode skips them.
    thread_counts = (1,) if quick else (1, 2)
    X = load_digits().data / 16.0
    X_train, X_test = train_test_split(X, test_size=0.2, random_state=0)
    return [
        run_case(X_train, X_test, threads, epochs, repeats, n_draws)
        for threads in thread_counts
    ]


def run_case(X_train, X_test, threads, epochs, repeats, n_draws):
    """Time both sides alternately, seed i for the i-th repeat; score every fit."""
    case = f"digits/16 bernoulli, {epochs} epochs, {threads} thread(s)"
    ours_models, ref_models = [], []

    def ours():
        vae = VAEEstimator(
            LATENT,
            hidden_layer_sizes=(HIDDEN, HIDDEN),
            likelihood="bernoulli",
            batch_size=BATCH,
            learning_rate_init=LR,
            max_iter=epochs,
            n_iter_no_change=np.inf,  # always run every epoch, as the reference
            random_state=len(ours_models),
            n_threads=threads,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours_models.append(vae.fit(X_train))

    def reference():
        ref_models.append(reference_fit(X_train, epochs=epochs, seed=len(ref_models)))

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # the reference's threads; ours sets n_threads
    try:
        # Untimed first calls: torch initialises kernels lazily on first use.
        ours(), reference()
        ours_models.clear(), ref_models.clear()
        timing = compare(ours, reference, repeats=repeats, case=case)
        ours_elbo, ours_iwae = zip(
            *(held_out(v.module_.encoder, v.module_.decoder, X_test, n_draws)
              for v in ours_models),
            strict=True,
        )  # fmt: skip
        ref_elbo, ref_iwae = zip(
            *(held_out(*m, X_test, n_draws) for m in ref_models), strict=True
        )
        # The estimator's own deterministic ELBO, as a cross-check of held_out.
        ours_self_score = ours_models[-1].score(X_test)
    finally:
        torch.set_num_threads(previous)
    return {
        "case": case,
        "ours_s": timing["ours_s"],
        "ref_s": timing["ref_s"],
        "speedup": timing["speedup"],
        "ours_score": statistics.mean(ours_elbo),
        "ref_score": statistics.mean(ref_elbo),
        "ours_score_sd": _sd(ours_elbo),
        "ref_score_sd": _sd(ref_elbo),
        "ours_iwae": statistics.mean(ours_iwae),
        "ref_iwae": statistics.mean(ref_iwae),
        "ours_self_score": ours_self_score,
        "seeds": repeats,
    }


def _sd(values):
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def main(argv):
    rows = run(quick="--quick" in argv)
    print(
        f"{'case':45} {'ours_s':>6} {'ref_s':>6} {'ref/ours':>8} "
        f"{'ELBO ours':>14} {'ELBO ref':>14} {'IWAE ours':>9} {'IWAE ref':>9}"
    )
    for r in rows:
        print(
            f"{r['case']:45} {r['ours_s']:6.2f} {r['ref_s']:6.2f} {r['speedup']:8.2f} "
            f"{r['ours_score']:8.2f} ±{r['ours_score_sd']:4.2f} "
            f"{r['ref_score']:8.2f} ±{r['ref_score_sd']:4.2f} "
            f"{r['ours_iwae']:9.2f} {r['ref_iwae']:9.2f}"
        )
    print(f"(± is the sd over {rows[0]['seeds']} seeds; nats per digit, held out)")


if __name__ == "__main__":
    main(sys.argv[1:])
