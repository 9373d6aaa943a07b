"""
=====================================================
EM and the VAE on the same data: one quantity
=====================================================

:class:`~sklearn_latent.EMFactorAnalysis` fits factor analysis by EM, which
maximises the log-likelihood log p(x) exactly. A
:class:`~sklearn_latent.VAEEstimator` with no hidden layers and a Gaussian
likelihood is the same model, z ~ N(0, I) and x | z ~ N(C z + c, diag(noise)),
trained instead on the evidence lower bound, ELBO = log p(x) - KL[q(z|x) ||
p(z|x)]. Both ``score`` methods return nats per sample of the same quantity
(exact for EM, a lower bound for the VAE), so they can be put on one axis.

For this linear VAE log p(x) is also available in closed form from its
decoder, which splits the distance between the two models in two:

- the VAE's **inference gap**, log p(x) - ELBO, the KL divergence of its
  encoder from the exact posterior, which the importance-weighted estimate
  ``log_likelihood(X, n_draws=K)`` closes as K grows:
  ELBO <= IWAE_K <= log p(x);
- the **optimisation gap** between the VAE's decoder and EM's maximum
  likelihood parameters.

See :doc:`/theory` for the proofs.
"""

# %%
# Fit both models
# ---------------
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import multivariate_normal
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_latent import EMFactorAnalysis, VAEEstimator

X = StandardScaler().fit_transform(load_wine().data)  # 178 wines, 13 features
X_train, X_test = train_test_split(X, random_state=0)

fa = EMFactorAnalysis(n_components=2).fit(X_train)
vae = VAEEstimator(n_components=2, hidden_layer_sizes=(), random_state=0)
vae.fit(X_train)
print(f"EM: {fa.n_iter_} iterations; VAE: {vae.n_iter_} epochs")

# %%
# Learning curves
# ---------------
# ``lower_bounds_`` is EM's exact log-likelihood per sample after each
# iteration, and the VAE's training ELBO per sample after each epoch (the mean
# over the epoch's mini-batches, each with fresh noise: hence the jitter).
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(np.arange(1, fa.n_iter_ + 1), fa.lower_bounds_, "o-", label="EM: log p(x)")
ax.plot(np.arange(1, vae.n_iter_ + 1), vae.lower_bounds_, label="VAE: ELBO")
ax.axhline(fa.lower_bound_, color="k", ls="--", lw=1, label="EM's maximum")
ax.set(
    xscale="log",
    xlabel="iteration (EM) or epoch (VAE)",
    ylabel="nats per sample, training data",
    ylim=(fa.lower_bound_ - 6, fa.lower_bound_ + 0.5),
)
ax.legend()
fig.tight_layout()
plt.show()

# %%
# ELBO <= IWAE <= log p(x)
# ------------------------
# The decoder of a linear VAE is an affine map with a learned noise variance
# per feature (``module_`` holds the fitted networks): its marginal is
# x ~ N(c, C C^T + diag(noise)), so its exact log p(x) can be computed.
decoder = vae.module_.decoder[0]
C = decoder.weight.detach().double().numpy()
c = decoder.bias.detach().double().numpy()
noise = vae.module_.log_var.detach().double().exp().numpy()
vae_marginal = multivariate_normal(c, C @ C.T + np.diag(noise))

# %%
# Left, each held-out wine: its ELBO (``score_samples``) lies below its exact
# log p(x) by the KL divergence of the encoder from the posterior, and the
# importance-weighted estimate with 1000 draws (``log_likelihood``) closes
# the gap. Right, the mean over the held-out wines of the estimate with K
# draws. The draws are fixed and shared by all rows; with K = 32 they are
# the ELBO's own, and the estimate is then at least the ELBO, row by row
# (Jensen's inequality). As K grows it settles on log p(x), up to the Monte
# Carlo error of K shared draws.
log_px = vae_marginal.logpdf(X_test)
elbo = vae.score_samples(X_test)
iwae_1000 = vae.log_likelihood(X_test, n_draws=1000)
n_draws = [32, 64, 128, 256, 512, 1024, 2048, 4096]
iwae = [vae.log_likelihood(X_test, n_draws=k).mean() for k in n_draws]

fig, (ax_rows, ax_k) = plt.subplots(1, 2, figsize=(11, 4))
order = np.argsort(log_px - elbo)
rows = np.arange(len(order))
ax_rows.plot(rows, (log_px - elbo)[order], "o", ms=4, label="log p(x) - ELBO = KL")
ax_rows.plot(rows, (log_px - iwae_1000)[order], ".", label="log p(x) - IWAE (K = 1000)")
ax_rows.axhline(0, color="k", lw=1)
ax_rows.set(xlabel="held-out wine, by its KL", ylabel="nats below log p(x)")
ax_rows.legend()
ax_k.plot(n_draws, iwae, "o-", label="IWAE, log_likelihood(X, n_draws=K)")
ax_k.axhline(log_px.mean(), color="k", label="exact log p(x)")
ax_k.axhline(elbo.mean(), color="C2", label="ELBO, score(X)")
ax_k.set(xscale="log", xlabel="K", ylabel="nats per wine, held-out mean")
ax_k.legend(fontsize=8)
fig.tight_layout()
plt.show()

print("held-out, nats per wine:")
print(f"  VAE ELBO              {elbo.mean():.3f}")
print(f"  VAE IWAE, K = 1000    {iwae_1000.mean():.3f}")
print(f"  VAE exact log p(x)    {log_px.mean():.3f}")
print(f"  EM  exact log p(x)    {fa.score(X_test):.3f}")

# %%
# The two gaps
# ------------
# On the training data, the VAE's inference gap (its ELBO below its own
# log p(x)) and its optimisation gap (its log p(x) below EM's maximum):
train_elbo, train_log_px = vae.score(X_train), vae_marginal.logpdf(X_train).mean()
print(f"inference gap    {train_log_px - train_elbo:.3f} nats per sample")
print(f"optimisation gap {fa.score(X_train) - train_log_px:.3f} nats per sample")

# %%
# On held-out rows EM's maximum-likelihood parameters need not score highest
# (here they score a little below the VAE's): they are the best fit of the
# training rows. What holds for every row and any parameters is
# ELBO <= log p(x), the importance-weighted estimate reaching log p(x) as K
# grows.
