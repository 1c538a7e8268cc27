"""The built-in benchmark: a seeded topic-model recommender data set with planted noise.

Generative story (``K = dim`` latent topics):

- item ``i`` has a long-tailed popularity ``pop_i`` (lognormal) and a topic profile
  ``q_i ~ Dirichlet(item_concentration)`` (mostly one topic); topic ``k`` picks item ``i`` with
  probability ``P(i | k) ∝ pop_i q_ik``;
- user ``u`` has a topic mixture ``θ_u ~ Dirichlet(user_concentration)`` (a few topics) and an
  activity ``n_u`` (lognormal with mean ``avg_degree``, at least ``min_degree``);
- the user's true preferences are ``n_u`` distinct items drawn from ``Σ_k θ_uk P(i | k)`` (a
  rank-``K`` model), split per user into test (``test_fraction``), a clean validation split
  (``clean_validation``, drawn like test) and train: test and validation are clean;
- planted noise: ``round(noise_ratio * |clean train_u|)`` extra training items per user, each of
  a noise *type* drawn from ``noise_mix`` (``noise.NOISE_TYPES``), flagged in ``noise`` with the
  type in ``noise_type``. They are false positives a denoiser should find:

  * ``popularity`` (the default): drawn from global popularity ``∝ pop_i`` regardless of taste
    (clicks on whatever is shown): popular, but mostly off-topic;
  * ``uniform``: uniform over the items (random misclicks): mostly unpopular and off-topic;
  * ``near_topic``: one of the user's own topics ``k ~ θ_u``, then an item only loosely related
    to it, ``P_near(i | k) ∝ pop_i q_ik^τ`` (``τ = near_topic_temperature`` < 1 flattens the
    topic's profile, so items carrying a little of topic ``k`` are drawn far more often than the
    preference model would): close to the user's taste, the hardest type to tell apart.
- item content: per modality (``features``), a noisy linear view of the topic profile ``q_i``
  (``features.synthetic_item_features``), so content can expose the off-topic clicks.

``item_topics``, ``user_topics`` and ``GeneratorModel`` recompute the generator's latent
variables from ``meta["generator"]``, so the true preference and noise probabilities of any pair
are known (the likelihood-ratio ceiling of a noise detector, ``GeneratorModel.noise_odds``).

Generation is vectorised (inverse-CDF sampling with ``searchsorted``) and runs in chunks of users,
so memory stays bounded and it scales to tens of millions of interactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import InteractionData
from .features import SYNTHETIC_MODALITIES, synthetic_item_features
from .noise import NOISE_CODE, NOISE_TYPES, noise_mix_weights, per_user_count
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


def _sample_rows(
    cdf: np.ndarray, rows: np.ndarray, width: int, rng: np.random.Generator
) -> np.ndarray:
    """One column index per entry of ``rows`` from the stacked CDF (int64)."""
    idx = np.searchsorted(cdf, rows + rng.random(rows.shape[0]), side="right") - rows * width
    return np.minimum(idx, width - 1)


def item_topics(
    num_items: int,
    dim: int,
    seed: int,
    item_concentration: float = 0.05,
    popularity_sigma: float = 1.2,
) -> tuple[np.ndarray, np.ndarray]:
    """The items' latent variables: (popularity ``pop`` float64 [I], topic profiles ``q`` [I, K]).

    The same values ``make_synthetic`` draws with these arguments (its ``[seed, 0]`` stream), for
    anything built from the items' topics (per-modality item features, the noise ceiling).
    """
    rng = np.random.default_rng([seed, 0])
    pop = rng.lognormal(0.0, popularity_sigma, num_items)
    return pop, _dirichlet_rows(rng, item_concentration, num_items, dim)


def _chunk_size(avg_degree: float) -> int:
    return max(1, int(_CHUNK_INTERACTIONS // avg_degree))


def user_topics(
    num_users: int, dim: int, seed: int, avg_degree: float = 30.0, user_concentration: float = 0.1
) -> np.ndarray:
    """The users' topic mixtures θ, float64 [U, K], as ``make_synthetic`` draws them.

    θ is the first draw of each user chunk's stream ``[seed, 1, chunk]``, so it is recomputed
    here without replaying the rest of the generation.
    """
    chunk = _chunk_size(avg_degree)
    return np.concatenate(
        [
            _dirichlet_rows(
                np.random.default_rng([seed, 1, c]),
                user_concentration,
                min(chunk, num_users - lo),
                dim,
            )
            for c, lo in enumerate(range(0, num_users, chunk))
        ]
    )


@dataclass
class GeneratorModel:
    """The generator's latent variables for one data set and the probabilities they imply.

    ``preference(u, i)`` is the probability that one preference draw of user ``u`` is item ``i``;
    ``noise(kind, u, i)`` the probability that one noise draw of that type is ``i``. Both ignore
    the without-replacement correction (items already drawn), which is small at these degrees.
    """

    pop: np.ndarray  # [I]
    q: np.ndarray  # [I, K]
    theta: np.ndarray  # [U, K]
    near_topic_temperature: float

    @classmethod
    def of(cls, data_or_params) -> "GeneratorModel":
        """From an ``InteractionData`` made by ``make_synthetic`` or its ``meta["generator"]``."""
        p = (
            data_or_params.meta.get("generator")
            if isinstance(data_or_params, InteractionData)
            else data_or_params
        )
        if not p:
            raise ValueError("not a data set of the built-in generator (no meta['generator'])")
        pop, q = item_topics(
            p["num_items"], p["dim"], p["seed"], p["item_concentration"], p["popularity_sigma"]
        )
        theta = user_topics(
            p["num_users"], p["dim"], p["seed"], p["avg_degree"], p["user_concentration"]
        )
        return cls(pop, q, theta, float(p.get("near_topic_temperature", 0.3)))

    def _topic_mixture(self, weights: np.ndarray, users, items) -> np.ndarray:
        """Σ_k θ_uk P(i | k) for item weights [I, K] (each topic's column normalised)."""
        p_ik = weights / weights.sum(axis=0, keepdims=True)
        return np.einsum("nk,nk->n", self.theta[users], p_ik[items])

    def preference(self, users, items) -> np.ndarray:
        return self._topic_mixture(self.pop[:, None] * self.q, users, items)

    def noise(self, kind: str, users, items) -> np.ndarray:
        if kind == "popularity":
            return self.pop[items] / self.pop.sum()
        if kind == "uniform":
            return np.full(np.shape(items), 1.0 / self.pop.shape[0])
        if kind == "near_topic":
            return self._topic_mixture(
                self.pop[:, None] * self.q**self.near_topic_temperature, users, items
            )
        raise ValueError(f"unknown noise type {kind!r}; choose one of {', '.join(NOISE_TYPES)}")

    def noise_odds(self, kind: str, users, items) -> np.ndarray:
        """Likelihood ratio P_noise / P_preference per pair: the Bayes-optimal score for telling
        noise of type ``kind`` from clean pairs (its ROC AUC is the ceiling of any detector)."""
        return self.noise(kind, users, items) / np.maximum(self.preference(users, items), 1e-300)


def make_synthetic(
    num_users: int = 3000,
    num_items: int = 2000,
    dim: int = 16,
    avg_degree: float = 30.0,
    noise_ratio: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    noise_mix="popularity",
    near_topic_temperature: float = 0.3,
    clean_validation: float = 0.1,
    user_concentration: float = 0.1,
    item_concentration: float = 0.05,
    popularity_sigma: float = 1.2,
    activity_sigma: float = 0.6,
    min_degree: int = 5,
    name: str = "synthetic",
    features: tuple = SYNTHETIC_MODALITIES,
) -> InteractionData:
    """Generate the synthetic benchmark (see the module docstring for the model).

    Args:
        num_users, num_items: id space sizes. dim: number of latent topics ``K``.
        avg_degree: mean number of true-preference interactions per user (all splits).
        noise_ratio: planted noise per user, as a fraction of its clean training items.
        test_fraction: per-user share of the preferences held out as (clean) test.
        seed: everything is a deterministic function of the arguments.
        noise_mix: the planted noise's types: a type name, or a mapping / sequence of
            (type, weight) pairs (``noise.NOISE_TYPES``); each noisy pair's type is drawn from
            the normalised weights.
        near_topic_temperature: τ in (0, 1] of the ``near_topic`` type (1 = the preference model).
        clean_validation: per-user share of the remaining (clean) preferences held out as a
            validation split drawn like test, so that model selection does not reward fitting
            the noise. 0: no validation split here; a trainer then takes one from the observed
            training pairs, noise included (``validation_split``), as it must on real data.
        user_concentration, item_concentration: Dirichlet parameters; smaller = more focused.
        popularity_sigma: lognormal sigma of item popularity (long tail).
        activity_sigma: lognormal sigma of user activity. min_degree: lower clip of activity.
        features: item content modalities, (name, width, noise level) triples: each a noisy
            view of the item's topic profile (``features.synthetic_item_features``); () for none.

    Returns:
        ``InteractionData`` with ``noise`` flags and ``noise_type`` codes, the clean ``valid``
        split (when ``clean_validation`` > 0), ``meta["format"] = "lightgcn"`` and the generator
        parameters in ``meta["generator"]``; ``meta["planted_noise"]`` counts per type. Users
        whose taste is too narrow for their activity may get fewer preferences than drawn
        (``meta["preference_shortfall"]``).
    """
    mix = noise_mix_weights(noise_mix)
    params = dict(
        num_users=num_users,
        num_items=num_items,
        dim=dim,
        avg_degree=avg_degree,
        noise_ratio=noise_ratio,
        test_fraction=test_fraction,
        seed=seed,
        noise_mix=mix,
        near_topic_temperature=near_topic_temperature,
        clean_validation=clean_validation,
        user_concentration=user_concentration,
        item_concentration=item_concentration,
        popularity_sigma=popularity_sigma,
        activity_sigma=activity_sigma,
        min_degree=min_degree,
        features=[list(m) for m in features],
    )
    if num_users < 1 or num_items < 2 or dim < 1:
        raise ValueError(f"need num_users >= 1, num_items >= 2 and dim >= 1, got {params}")
    if not 1 <= min_degree <= avg_degree < num_items:
        raise ValueError(
            f"need 1 <= min_degree <= avg_degree < num_items, got min_degree="
            f"{min_degree}, avg_degree={avg_degree}, num_items={num_items}"
        )
    if not 0.0 < near_topic_temperature <= 1.0:
        raise ValueError(f"near_topic_temperature must be in (0, 1], got {near_topic_temperature}")
    if not 0.0 <= clean_validation < 1.0:
        raise ValueError(f"clean_validation must be in [0, 1), got {clean_validation}")
    pop, q = item_topics(num_items, dim, seed, item_concentration, popularity_sigma)
    item_cdf = _stacked_cdf(q.T * pop)  # P(i | k), [K, I]
    near_cdf = _stacked_cdf(q.T**near_topic_temperature * pop)  # P_near(i | k)
    pop_cdf = _stacked_cdf(pop[None, :])
    types = [t for t in NOISE_TYPES if mix.get(t, 0.0) > 0]

    mu = np.log(avg_degree) - activity_sigma**2 / 2  # so the lognormal's mean is avg_degree
    chunk = _chunk_size(avg_degree)
    # Per split, the chunks' arrays: users, items (and the noise's type codes).
    out = {split: ([], [], []) for split in ("clean", "noise", "valid", "test")}
    shortfall = 0
    for c, lo in enumerate(range(0, num_users, chunk)):
        n = min(chunk, num_users - lo)
        rng = np.random.default_rng([seed, 1, c])
        theta_cdf = _stacked_cdf(_dirichlet_rows(rng, user_concentration, n, dim))  # first draw
        want = np.clip(np.rint(rng.lognormal(mu, activity_sigma, n)), min_degree, num_items // 2)
        want = want.astype(np.int64)

        def topic_draw(cdf):
            def draw(users, _taken):
                topics = _sample_rows(theta_cdf, users, dim, rng)
                return _sample_rows(cdf, topics, num_items, rng)

            return draw

        draws = {
            "popularity": lambda users, _t: _sample_rows(
                pop_cdf, np.zeros_like(users), num_items, rng
            ),
            "uniform": lambda users, _t: rng.integers(num_items, size=users.shape[0]),
            "near_topic": topic_draw(near_cdf),
        }

        users, items = draw_distinct_items(
            want, np.zeros(0, dtype=np.int64), num_items, topic_draw(item_cdf)
        )
        shortfall += int(want.sum()) - users.shape[0]
        test = holdout_mask(users, test_fraction, rng)
        # The clean validation split comes from its own stream: the test split is the same
        # whether or not one is drawn.
        valid = np.zeros_like(test)
        # (items given: no item loses its last training pair to it, which would make its
        # validation pairs unlearnable and dropped by the data checks.)
        valid[~test] = holdout_mask(
            users[~test], clean_validation, np.random.default_rng([seed, 2, c]), items[~test]
        )
        train = ~(test | valid)
        for split, sel in (("clean", train), ("valid", valid), ("test", test)):
            out[split][0].append(lo + users[sel])
            out[split][1].append(items[sel])
        taken = users * num_items + items  # sorted: draw_distinct_items returns key order
        noise_want = np.minimum(
            per_user_count(noise_ratio, users[train], n),
            num_items - np.bincount(users, minlength=n),
        )
        # One type per noisy slot, from the mix (its own stream; none needed for a single type).
        per_type = (
            noise_want[:, None]
            if len(types) <= 1
            else np.random.default_rng([seed, 3, c]).multinomial(
                noise_want, [mix[t] for t in types]
            )
        )
        for t, kind in enumerate(types):
            nu, ni = draw_distinct_items(per_type[:, t], taken, num_items, draws[kind])
            taken = np.sort(np.concatenate([taken, nu * num_items + ni]), kind="stable")
            out["noise"][0].append(lo + nu)
            out["noise"][1].append(ni)
            out["noise"][2].append(np.full(nu.shape[0], NOISE_CODE[kind], np.int8))

    def cat(split, j, dtype=np.int64):
        parts = out[split][j]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    noise_type = np.concatenate(
        [np.zeros(cat("clean", 0).shape[0], np.int8), cat("noise", 2, np.int8)]
    )
    planted = {t: int((noise_type == NOISE_CODE[t]).sum()) for t in types}
    return InteractionData(
        name=name,
        num_users=num_users,
        num_items=num_items,
        train=(
            np.concatenate([cat("clean", 0), cat("noise", 0)]),
            np.concatenate([cat("clean", 1), cat("noise", 1)]),
        ),
        test=(cat("test", 0), cat("test", 1)),
        valid=(cat("valid", 0), cat("valid", 1)) if clean_validation > 0 else None,
        noise=noise_type > 0,
        noise_type=noise_type,
        meta={
            "format": "lightgcn",
            "generator": params,
            "preference_shortfall": shortfall,
            "planted_noise": int(sum(planted.values())),
            "planted_noise_types": planted,
            **({"validation": "clean"} if clean_validation > 0 else {}),
        },
        features=synthetic_item_features(q, features, seed) if features else None,
    )
