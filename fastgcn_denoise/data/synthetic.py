"""The built-in benchmark: a seeded topic-model recommender data set with planted noise.

Generative story (``K = dim`` latent topics):

- item ``i`` has a long-tailed popularity ``pop_i`` (lognormal) and a topic profile
  ``q_i ~ Dirichlet(item_concentration)`` (mostly one topic); topic ``k`` picks item ``i`` with
  probability ``P(i | k) ∝ pop_i q_ik``;
- user ``u`` has a topic mixture ``θ_u ~ Dirichlet(user_concentration)`` (a few topics) and an
  activity ``n_u`` (lognormal with mean ``avg_degree``, at least ``min_degree``);
- the user's true preferences are ``n_u`` distinct items drawn from ``Σ_k θ_uk P(i | k)`` (a
  rank-``K`` model), split per user into train and test (``test_fraction``): test is clean;
- planted noise: ``round(noise_ratio * |train_u|)`` extra training items drawn from global
  popularity ``∝ pop_i`` regardless of preference (clicks on whatever is popular), flagged in
  ``noise``. They are false positives a denoiser should find: popular, but off-topic;
- item content: per modality (``features``), a noisy linear view of the topic profile ``q_i``
  (``features.synthetic_item_features``), so content can expose the off-topic clicks.

Generation is vectorised (inverse-CDF sampling with ``searchsorted``) and runs in chunks of users,
so memory stays bounded and it scales to tens of millions of interactions.
"""
from __future__ import annotations

import numpy as np

from .dataset import InteractionData
from .features import SYNTHETIC_MODALITIES, synthetic_item_features
from .noise import per_user_count
from .sampling import draw_distinct_items
from .split import holdout_mask

# Users per chunk are chosen so a chunk holds about this many interactions.
_CHUNK_INTERACTIONS = 2_000_000


def _dirichlet_rows(rng: np.random.Generator, alpha: float, rows: int, dim: int) -> np.ndarray:
    """float64 [rows, dim] Dirichlet(alpha) rows via normalised gammas (safe for small alpha)."""
    g = rng.gamma(alpha, size=(rows, dim))
    total = g.sum(axis=1)
    # With a tiny alpha every gamma can underflow to 0: give such a row one random topic.
    empty = np.flatnonzero(total == 0)
    g[empty, rng.integers(dim, size=empty.shape[0])] = 1.0
    return g / g.sum(axis=1, keepdims=True)


def _stacked_cdf(probs: np.ndarray) -> np.ndarray:
    """Row ``r``'s CDF shifted by ``r`` and flattened: one sorted array for all rows.

    Sampling row ``r`` is then ``searchsorted(cdf, r + uniform, 'right') - r * width``.
    """
    rows, width = probs.shape
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0  # guards rounding: the last bin must close the row exactly
    return (cdf + np.arange(rows, dtype=np.float64)[:, None]).ravel()


def _sample_rows(cdf: np.ndarray, rows: np.ndarray, width: int,
                 rng: np.random.Generator) -> np.ndarray:
    """One column index per entry of ``rows`` from the stacked CDF (int64)."""
    idx = np.searchsorted(cdf, rows + rng.random(rows.shape[0]), side="right") - rows * width
    return np.minimum(idx, width - 1)


def make_synthetic(num_users: int = 3000, num_items: int = 2000, dim: int = 16,
                   avg_degree: float = 30.0, noise_ratio: float = 0.2, test_fraction: float = 0.2,
                   seed: int = 0, *, user_concentration: float = 0.1,
                   item_concentration: float = 0.05, popularity_sigma: float = 1.2,
                   activity_sigma: float = 0.6, min_degree: int = 5,
                   name: str = "synthetic",
                   features: tuple = SYNTHETIC_MODALITIES) -> InteractionData:
    """Generate the synthetic benchmark (see the module docstring for the model).

    Args:
        num_users, num_items: id space sizes. dim: number of latent topics ``K``.
        avg_degree: mean number of true-preference interactions per user (train + test).
        noise_ratio: planted noise per user, as a fraction of its clean training items.
        test_fraction: per-user share of the preferences held out as (clean) test.
        seed: everything is a deterministic function of the arguments.
        user_concentration, item_concentration: Dirichlet parameters; smaller = more focused.
        popularity_sigma: lognormal sigma of item popularity (long tail).
        activity_sigma: lognormal sigma of user activity. min_degree: lower clip of activity.
        features: item content modalities, (name, width, noise level) triples: each a noisy
            view of the item's topic profile (``features.synthetic_item_features``); () for none.

    Returns:
        ``InteractionData`` with ``noise`` flags, ``meta["format"] = "lightgcn"`` and the
        generator parameters in ``meta["generator"]``. Users whose taste is too narrow for their
        activity may get fewer preferences than drawn (``meta["preference_shortfall"]``).
    """
    params = dict(num_users=num_users, num_items=num_items, dim=dim, avg_degree=avg_degree,
                  noise_ratio=noise_ratio, test_fraction=test_fraction, seed=seed,
                  user_concentration=user_concentration, item_concentration=item_concentration,
                  popularity_sigma=popularity_sigma, activity_sigma=activity_sigma,
                  min_degree=min_degree, features=[list(m) for m in features])
    if num_users < 1 or num_items < 2 or dim < 1:
        raise ValueError(f"need num_users >= 1, num_items >= 2 and dim >= 1, got {params}")
    if not 1 <= min_degree <= avg_degree < num_items:
        raise ValueError(f"need 1 <= min_degree <= avg_degree < num_items, got min_degree="
                         f"{min_degree}, avg_degree={avg_degree}, num_items={num_items}")
    item_rng = np.random.default_rng([seed, 0])
    pop = item_rng.lognormal(0.0, popularity_sigma, num_items)
    item_topics = _dirichlet_rows(item_rng, item_concentration, num_items, dim)  # [I, K]
    topic_items = item_topics.T * pop  # [K, I]
    item_cdf = _stacked_cdf(topic_items)
    pop_cdf = _stacked_cdf(pop[None, :])

    mu = np.log(avg_degree) - activity_sigma ** 2 / 2  # so the lognormal's mean is avg_degree
    chunk = max(1, int(_CHUNK_INTERACTIONS // avg_degree))
    parts, shortfall = [], 0
    for c, lo in enumerate(range(0, num_users, chunk)):
        n = min(chunk, num_users - lo)
        rng = np.random.default_rng([seed, 1, c])
        theta_cdf = _stacked_cdf(_dirichlet_rows(rng, user_concentration, n, dim))
        want = np.clip(np.rint(rng.lognormal(mu, activity_sigma, n)), min_degree, num_items // 2)
        want = want.astype(np.int64)

        def preference(users, _taken):
            return _sample_rows(item_cdf, _sample_rows(theta_cdf, users, dim, rng), num_items, rng)

        def popularity(users, _taken):
            return _sample_rows(pop_cdf, np.zeros_like(users), num_items, rng)

        users, items = draw_distinct_items(want, np.zeros(0, dtype=np.int64), num_items, preference)
        shortfall += int(want.sum()) - users.shape[0]
        test = holdout_mask(users, test_fraction, rng)
        taken = users * num_items + items  # sorted: draw_distinct_items returns key order
        noise_want = np.minimum(per_user_count(noise_ratio, users[~test], n),
                                num_items - np.bincount(users, minlength=n))
        nu, ni = draw_distinct_items(noise_want, taken, num_items, popularity)
        parts.append((lo + users[~test], items[~test], lo + nu, ni, lo + users[test], items[test]))

    def cat(j):
        return np.concatenate([p[j] for p in parts])

    clean_u, clean_i, noise_u, noise_i = cat(0), cat(1), cat(2), cat(3)
    noise = np.concatenate([np.zeros(clean_u.shape[0], bool), np.ones(noise_u.shape[0], bool)])
    return InteractionData(
        name=name, num_users=num_users, num_items=num_items,
        train=(np.concatenate([clean_u, noise_u]), np.concatenate([clean_i, noise_i])),
        test=(cat(4), cat(5)), noise=noise,
        meta={"format": "lightgcn", "generator": params, "preference_shortfall": shortfall,
              "planted_noise": int(noise_u.shape[0])},
        features=synthetic_item_features(item_topics, features, seed) if features else None)
