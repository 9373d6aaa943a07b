"""
=====================================================
Past memory: online EM and dask arrays
=====================================================

Three ways to fit a Gaussian mixture to more rows than fit comfortably in
memory, all built on the same statistics, which add over blocks of rows:

- ``partial_fit`` over a stream of batches: stepwise (online) EM, whose
  memory is set by the batch;
- ``learning_method="online"`` in ``fit``: passes of the same steps over
  mini-batches of data that are at hand;
- a dask array: exact batch EM, each E-step mapped over the blocks and the
  statistics tree-reduced, on whichever dask scheduler is active (a
  ``distributed.Client("scheduler-address")`` puts the work on a cluster).
"""

# %%
# A stream of batches
# -------------------
# Batches of 2,000 rows arrive from a known mixture of four Gaussians. Each
# ``partial_fit`` blends the batch's statistics into running ones; the
# held-out log-likelihood approaches that of batch EM on all the rows.
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

from sklearn_latent import EMGaussianMixture

rng = np.random.RandomState(0)
centres = 4 * rng.randn(4, 5)


def batch(n_rows, seed):
    draw = np.random.RandomState(seed)
    return centres[draw.randint(4, size=n_rows)] + draw.randn(n_rows, 5)


X_test = batch(20_000, seed=1000)
online = EMGaussianMixture(4, random_state=0)
scores = []
for t in range(40):
    online.partial_fit(batch(2_000, seed=t))
    scores.append(online.score(X_test))

X_all = np.concatenate([batch(2_000, seed=t) for t in range(40)])
batch_em = EMGaussianMixture(4, random_state=0).fit(X_all)
print(f"online, after 40 batches: {scores[-1]:.4f} nats per sample")
print(f"batch EM on all 80,000 rows: {batch_em.score(X_test):.4f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.arange(1, 41), scores, "o-", label="partial_fit, after each batch")
ax.axhline(batch_em.score(X_test), color="k", ls="--", label="batch EM, all rows")
ax.set_xlabel("batches of 2,000 rows")
ax.set_ylabel("held-out log-likelihood per sample")
ax.legend()
fig.tight_layout()

# %%
# Online passes in ``fit``
# ------------------------
# The same steps, driven by ``fit``: each iteration is one pass over
# mini-batches of ``batch_size`` rows, and a pass or two comes close to the
# batch optimum.
passes = EMGaussianMixture(
    4, learning_method="online", batch_size=1_000, random_state=0
).fit(X_all)
print(
    f"learning_method='online': {passes.n_iter_} passes, "
    f"{passes.n_batch_iter_} steps, {passes.score(X_test):.4f} nats per sample"
)

# %%
# A dask array
# ------------
# A dask array of 8 blocks; ``fit`` runs exact EM block by block and never
# gathers the rows (the start uses a uniform sample of at most 10,000 of
# them). From the same initial parameters it equals the numpy fit to
# rounding. Outputs for dask input are lazy dask arrays chunked like X.
X_dask = da.from_array(X_all, chunks=10_000)
start = dict(
    weights_init=batch_em.weights_,
    means_init=batch_em.means_,
    precisions_init=batch_em.precisions_,
)
on_dask = EMGaussianMixture(4, **start).fit(X_dask)
in_memory = EMGaussianMixture(4, **start).fit(X_all)
print(
    "largest difference of the means:", np.abs(on_dask.means_ - in_memory.means_).max()
)
labels = on_dask.predict(X_dask)
print(type(labels).__name__, labels.chunks[0][:3], "...")
print("first labels:", labels[:10].compute())
