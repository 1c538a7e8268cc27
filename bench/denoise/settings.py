"""A setting of the noise benchmark (noise type, ratio, seed) and its data: the built-in
generator or a real-data subsample with known noise, and the generator's two bounds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from fastgcn_denoise.data import InteractionData, inject_noise, load_dataset, make_synthetic
from fastgcn_denoise.data.noise import NOISE_CODE
from fastgcn_denoise.data.synthetic import GeneratorModel
from fastgcn_denoise.pipelines.denoise import roc_auc


@dataclass(frozen=True)
class Setting:
    kind: str  # a NOISE_TYPES entry ("clean" at ratio 0)
    ratio: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.ratio:g}-s{self.seed}"


def synthetic_data(
    setting: Setting, validation: str, sizes: dict, inject: bool = False
) -> InteractionData:
    """The built-in generator with planted noise of the setting's type and ratio; with
    ``inject``, the default data set (its planted popularity-matched noise, ratio 0.2) with the
    setting's noise injected on top (``inject_noise``), as the issue's diagnosis measured."""
    valid = 0.1 if validation == "clean" else 0.0
    if inject:
        data = make_synthetic(seed=setting.seed, clean_validation=valid, **sizes)
        if setting.ratio == 0:
            return data
        return inject_noise(data, setting.ratio, seed=setting.seed, kind=setting.kind)
    mix = "popularity" if setting.kind == "clean" else setting.kind
    return make_synthetic(
        seed=setting.seed, noise_ratio=setting.ratio, noise_mix=mix, clean_validation=valid, **sizes
    )


def subsample(data: InteractionData, users: int, min_item: int, seed: int) -> InteractionData:
    """``users`` random users (seeded) with their train and test pairs; items with fewer than
    ``min_item`` training pairs in the sample are dropped, then users without two training
    pairs; ids are made contiguous. Known noise flags are not carried (the source has none)."""
    rng = np.random.default_rng([seed, 7])
    chosen = np.zeros(data.num_users, bool)
    chosen[rng.choice(data.num_users, size=min(users, data.num_users), replace=False)] = True
    tu, ti = data.train
    keep = chosen[tu]
    item_count = np.bincount(ti[keep], minlength=data.num_items)
    items_ok = item_count >= min_item
    keep &= items_ok[ti]
    user_count = np.bincount(tu[keep], minlength=data.num_users)
    users_ok = chosen & (user_count >= 2)
    keep &= users_ok[tu]
    su, si = data.test
    keep_test = users_ok[su] & items_ok[si]
    umap = np.cumsum(users_ok) - 1
    imap = np.cumsum(items_ok) - 1
    meta = {
        "format": "lightgcn",
        "subsample": {
            "source": data.name,
            "users": int(users_ok.sum()),
            "items": int(items_ok.sum()),
            "min_item": min_item,
            "seed": seed,
        },
    }
    return InteractionData(
        f"{data.name}-sub{users}",
        int(users_ok.sum()),
        int(items_ok.sum()),
        (umap[tu[keep]], imap[ti[keep]]),
        (umap[su[keep_test]], imap[si[keep_test]]),
        meta=meta,
    )


def real_data(source, setting: Setting, users: int, min_item: int) -> InteractionData:
    data = subsample(load_dataset(source), users, min_item, seed=0)
    if setting.ratio > 0:
        data = inject_noise(data, setting.ratio, seed=setting.seed, kind=setting.kind)
    return data


def without_noise(data: InteractionData) -> InteractionData:
    keep = ~np.asarray(data.noise, bool)
    return dataclasses.replace(
        data,
        train=(data.train[0][keep], data.train[1][keep]),
        noise=np.zeros(int(keep.sum()), bool),
        noise_type=np.zeros(int(keep.sum()), np.int8),
        meta=dict(data.meta, oracle={"removed": int((~keep).sum())}),
    )


def _topic_mixture(theta: np.ndarray, weights: np.ndarray, users, items) -> np.ndarray:
    p_ik = weights / weights.sum(axis=0, keepdims=True)
    return np.einsum("nk,nk->n", theta[users], p_ik[items])


def known_items_odds(
    model: GeneratorModel, users, items, types, user_concentration: float, iterations: int = 30
) -> dict:
    """Noise odds per type with the items' latent variables known exactly but each user's topic
    mixture estimated from its own training pairs, leaving the scored pair out.

    The user mixtures come from EM on the mixture (1 - ρ) Σ_k θ_uk P(i | k) + Σ_t ρ_t P_t(i | u)
    with the true noise shares ρ_t and a Dirichlet(user_concentration) prior (posterior-mean
    update); a pair is then scored by P_t(i | u) / Σ_k θ^(-e)_uk P(i | k) with its own
    responsibility removed from θ. This is the best a detector that must learn the users' taste
    from their (noisy) interactions can hope for even with perfect item knowledge: the reachable
    bound, below the generator's ceiling.
    """
    weights = {
        "preference": model.pop[:, None] * model.q,
        "near_topic": model.pop[:, None] * model.q**model.near_topic_temperature,
    }
    shares = {
        name: float((types == code).mean())
        for name, code in NOISE_CODE.items()
        if (types == code).any()
    }
    clean_share = 1.0 - sum(shares.values())
    theta = np.full_like(model.theta, 1.0 / model.theta.shape[1])

    def components(th):
        noise = sum(
            rho
            * (
                _topic_mixture(th, weights["near_topic"], users, items)
                if name == "near_topic"
                else model.noise(name, users, items)
            )
            for name, rho in shares.items()
        )
        return _topic_mixture(th, weights["preference"], users, items), noise

    p_ik = weights["preference"] / weights["preference"].sum(axis=0, keepdims=True)
    for _ in range(iterations):
        pref, noise = components(theta)
        pk = theta[users] * p_ik[items]  # [E, K]
        resp = pk * (clean_share / (clean_share * pref + noise))[:, None]  # P(topic k, clean | e)
        counts = np.zeros_like(theta)
        np.add.at(counts, users, resp)
        theta = (counts + user_concentration) / (counts + user_concentration).sum(1, keepdims=True)
    own = counts[users] - resp
    theta_loo = (own + user_concentration) / (own + user_concentration).sum(1, keepdims=True)
    pref = np.einsum("nk,nk->n", theta_loo, p_ik[items])
    out = {}
    for name in shares:
        noise = (
            np.einsum(
                "nk,nk->n",
                theta_loo,
                (weights["near_topic"] / weights["near_topic"].sum(axis=0, keepdims=True))[items],
            )
            if name == "near_topic"
            else model.noise(name, users, items)
        )
        out[name] = noise / np.maximum(pref, 1e-300)
    return out


def generator_records(setting: Setting, data: InteractionData) -> list[dict]:
    """The generator's two bounds for the setting (built-in data only), as rows ``generator``
    (the likelihood-ratio ceiling: the true preferences known) and ``known items`` (the
    reachable bound of ``known_items_odds``: the users' taste estimated from their
    interactions)."""
    graph = data.train_graph()
    types = data.noise_types_per_edge(graph)
    users, items = (t.numpy() for t in graph.edges())
    model = GeneratorModel.of(data)
    estimated = known_items_odds(
        model, users, items, types, data.meta["generator"]["user_concentration"]
    )
    rows = [
        {
            "denoiser": name,
            "kind": setting.kind,
            "ratio": setting.ratio,
            "seed": setting.seed,
            "auc": {},
        }
        for name in ("generator", "known items")
    ]
    for name, code in NOISE_CODE.items():
        mine = types == code
        if mine.any():
            sel = (types == 0) | mine
            rows[0]["auc"][name] = roc_auc(
                model.noise_odds(name, users[sel], items[sel]), mine[sel]
            )
            rows[1]["auc"][name] = roc_auc(estimated[name][sel], mine[sel])
    return rows
