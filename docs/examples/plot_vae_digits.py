"""
==========================================
The VAE's latent space of the digits
==========================================

A :class:`~sklearn_latent.VAEEstimator` with a two-dimensional latent space,
trained on scikit-learn's 8x8 digits scaled to [0, 1] with a Bernoulli
likelihood. Three views of the fitted model:

- ``transform``: the encoder's mean of q(z|x) for each digit, coloured by its
  label, which the VAE never saw;
- ``inverse_transform``: the decoder's mean of p(x|z) over a grid of latent
  points;
- ``sample``: draws from the model, z ~ p(z) and then x ~ p(x|z).
"""

# %%
# Fit
# ---
# One hidden layer of 128 units in the encoder (the decoder mirrors it), and
# settings that keep the example quick: a learning rate of 1e-2, and a plateau
# of 5 epochs without a gain of 0.01 nats per digit (the defaults are 3e-3, 20
# epochs and 1e-4; they train longer for a slightly higher ELBO).
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_latent import VAEEstimator

X, y = load_digits(return_X_y=True)
X = X / 16  # pixels in [0, 1], as the Bernoulli likelihood requires
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

vae = VAEEstimator(
    n_components=2,
    hidden_layer_sizes=(128,),
    likelihood="bernoulli",
    learning_rate_init=1e-2,
    tol=1e-2,
    n_iter_no_change=5,
    random_state=0,
)
vae.fit(X_train)
print(f"{vae.n_iter_} epochs, converged: {vae.converged_}")

# %%
# ``score`` is the mean ELBO, a lower bound on log p(x) in nats per digit;
# ``log_likelihood`` is the importance-weighted (IWAE) estimate of log p(x),
# which lies above it and approaches log p(x) as ``n_draws`` grows.
print(f"held-out ELBO: {vae.score(X_test):.2f}")
print(f"held-out IWAE, 200 draws: {vae.log_likelihood(X_test, n_draws=200).mean():.2f}")

# %%
# The latent space
# ----------------
# Each held-out digit at its encoder mean.
Z_test = vae.transform(X_test)
fig, ax = plt.subplots(figsize=(6, 5))
points = ax.scatter(*Z_test.T, c=y_test, cmap="tab10", s=8)
fig.colorbar(points, ax=ax, label="digit")
ax.set(xlabel="z1", ylabel="z2", title="transform: E_q[z | x] of held-out digits")
plt.show()

# %%
# What the decoder draws
# ----------------------
# The decoder's mean of p(x|z) over a grid of latent points, placed at
# quantiles of the standard normal prior so that each covers equal prior mass.
n = 12
quantiles = norm.ppf(np.linspace(0.04, 0.96, n))
grid = np.array([[z1, z2] for z2 in quantiles[::-1] for z1 in quantiles])
images = vae.inverse_transform(grid).reshape(n, n, 8, 8)
canvas = np.zeros((n, n, 10, 10))  # each digit with a white border
canvas[:, :, 1:9, 1:9] = images
canvas = canvas.transpose(0, 2, 1, 3).reshape(10 * n, 10 * n)
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(canvas, cmap="gray_r")
ax.set(title="inverse_transform over the latent grid", xticks=[], yticks=[])
plt.show()

# %%
# Samples
# -------
# ``sample`` returns the draws x ~ p(x|z) and the latent points z they came
# from. With a Bernoulli likelihood a draw is binary; the top row shows the
# decoder's mean for the same z, the usual way to display a VAE's samples.
X_new, Z_new = vae.sample(10)
fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
for i in range(10):
    mean = vae.inverse_transform(Z_new[i : i + 1]).reshape(8, 8)
    axes[0, i].imshow(mean, cmap="gray_r")
    axes[1, i].imshow(X_new[i].reshape(8, 8), cmap="gray_r")
for ax in axes.ravel():
    ax.set(xticks=[], yticks=[])
axes[0, 0].set_ylabel("mean", rotation=0, ha="right")
axes[1, 0].set_ylabel("draw", rotation=0, ha="right")
plt.show()
