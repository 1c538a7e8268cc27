"""Noise types: the generator's planted types and clean validation, typed injection, the
generator's latent model (the noise detectors' ceiling)."""

import numpy as np
import pytest

from fastgcn_denoise.data import (
    InteractionData,
    inject_noise,
    load_npz,
    make_synthetic,
    save_npz,
    validation_split,
)
from fastgcn_denoise.data.noise import NOISE_CODE, NOISE_TYPES, noise_mix_weights
from fastgcn_denoise.data.synthetic import GeneratorModel, item_topics, user_topics
from fastgcn_denoise.pipelines.denoise import roc_auc

SMALL = dict(num_users=400, num_items=300, dim=8, avg_degree=20)
MIX = {"popularity": 1.0, "uniform": 1.0, "near_topic": 2.0}


def keyset(data, split):
    u, i = getattr(data, split)
    return set((u * data.num_items + i).tolist())


def test_noise_mix_weights():
    assert noise_mix_weights("uniform") == {"uniform": 1.0}
    assert noise_mix_weights({"popularity": 3, "uniform": 1}) == {
        "popularity": 0.75,
        "uniform": 0.25,
    }
    assert noise_mix_weights([("uniform", 1), ("uniform", 1), ("near_topic", 0)]) == {
        "uniform": 1.0
    }
    for bad, message in (
        ("typo", "unknown noise type"),
        ({"uniform": -1}, ">= 0"),
        ({"uniform": 0}, "positive weight"),
    ):
        with pytest.raises(ValueError, match=message):
            noise_mix_weights(bad)


@pytest.mark.parametrize("mix", ["popularity", "near_topic", MIX])
def test_planted_types_counts_and_flags(mix):
    d = make_synthetic(noise_ratio=0.3, seed=2, noise_mix=mix, **SMALL)
    assert d.noise_type.dtype == np.int8 and d.noise_type.shape == d.noise.shape
    assert np.array_equal(d.noise, d.noise_type > 0)
    clean = d.noise_type == 0
    clean_deg = np.bincount(d.train[0][clean], minlength=d.num_users)
    noise_deg = np.bincount(d.train[0][~clean], minlength=d.num_users)
    assert np.array_equal(noise_deg, np.floor(0.3 * clean_deg + 0.5))  # per user, all types
    weights = noise_mix_weights(mix)
    counts = d.meta["planted_noise_types"]
    assert sum(counts.values()) == d.meta["planted_noise"] == int(d.noise.sum())
    for kind in NOISE_TYPES:
        n = int((d.noise_type == NOISE_CODE[kind]).sum())
        assert counts.get(kind, 0) == n
        # the multinomial split per slot: within 5 standard deviations of the weight
        p = weights.get(kind, 0.0)
        total = d.meta["planted_noise"]
        assert abs(n - p * total) <= 5 * np.sqrt(total * p * (1 - p)) + 1e-9
    keys = d.train[0] * d.num_items + d.train[1]
    assert np.unique(keys).size == keys.size


def test_types_have_their_character():
    """Uniform noise hits unpopular items, popularity noise popular ones; near-topic noise lies
    closer to the user's taste than either (its preference probability is higher)."""
    d = make_synthetic(noise_ratio=0.5, seed=1, noise_mix=MIX, **SMALL)
    model = GeneratorModel.of(d)
    u, i = d.train
    pref = model.preference(u, i)
    by = {kind: d.noise_type == code for kind, code in NOISE_CODE.items()}
    clean = d.noise_type == 0
    pop = model.pop[i]
    assert pop[by["popularity"]].mean() > pop[clean].mean() * 0.8
    assert pop[by["uniform"]].mean() < 0.5 * pop[by["popularity"]].mean()
    assert np.median(pref[by["near_topic"]]) > 3 * np.median(pref[by["popularity"]])
    assert np.median(pref[clean]) > np.median(pref[by["near_topic"]])


def test_generator_model_matches_the_draws():
    d = make_synthetic(seed=4, noise_mix=MIX, **SMALL)
    p = d.meta["generator"]
    pop, q = item_topics(p["num_items"], p["dim"], p["seed"])
    assert pop.shape == (300,) and q.shape == (300, 8) and np.allclose(q.sum(1), 1)
    theta = user_topics(p["num_users"], p["dim"], p["seed"], p["avg_degree"])
    assert theta.shape == (400, 8) and np.allclose(theta.sum(1), 1)
    model = GeneratorModel.of(d)
    assert np.array_equal(model.theta, theta) and np.array_equal(model.q, q)
    users = np.repeat(np.arange(3), 300)
    items = np.tile(np.arange(300), 3)
    for probs in (
        model.preference(users, items),
        model.noise("near_topic", users, items),
        model.noise("popularity", users, items),
    ):
        assert np.allclose(probs.reshape(3, 300).sum(1), 1)  # distributions over the items
    # the likelihood ratio separates each type from the clean pairs; near-topic is the hardest
    u, i = d.train
    clean = d.noise_type == 0
    auc = {}
    for kind, code in NOISE_CODE.items():
        sel = clean | (d.noise_type == code)
        auc[kind] = roc_auc(model.noise_odds(kind, u[sel], i[sel]), d.noise_type[sel] == code)
    assert auc["uniform"] > 0.85 and auc["popularity"] > 0.8
    assert 0.55 < auc["near_topic"] < min(auc["uniform"], auc["popularity"])
    with pytest.raises(ValueError, match="generator"):
        GeneratorModel.of(
            InteractionData(
                "x", 1, 2, (np.array([0]), np.array([1])), (np.array([0]), np.array([0]))
            )
        )


def test_clean_validation_split():
    d = make_synthetic(seed=3, noise_mix=MIX, **SMALL)
    assert d.meta["validation"] == "clean" and d.valid is not None
    train, valid, test = keyset(d, "train"), keyset(d, "valid"), keyset(d, "test")
    assert not (train & valid) and not (valid & test) and not (train & test)
    # drawn like test: from the preferences, so a validation pair is never planted noise, and
    # about clean_validation of each user's remaining preferences
    clean_train = d.noise_type == 0
    share = len(valid) / (len(valid) + int(clean_train.sum()))
    assert 0.07 < share < 0.13
    assert np.all(np.bincount(d.train[0][clean_train], minlength=d.num_users) >= 1)
    # the test split does not depend on whether a validation split is drawn
    noisy = make_synthetic(seed=3, noise_mix=MIX, clean_validation=0.0, **SMALL)
    assert noisy.valid is None and "validation" not in noisy.meta
    assert keyset(noisy, "test") == test
    # the training set keeps its noise share: noise is counted on the final clean train
    assert abs(d.noise.mean() - noisy.noise.mean()) < 0.02
    # a trainer's validation_split leaves a data set with its own validation alone
    assert validation_split(d, 0.5) is d


def test_noisy_validation_carries_types():
    d = make_synthetic(seed=5, noise_mix=MIX, clean_validation=0.0, **SMALL)
    v = validation_split(d, 0.2, seed=1)
    assert v.noise_type.shape == v.noise.shape and np.array_equal(v.noise, v.noise_type > 0)
    # the pairs that stay in train keep their type
    code = dict(zip((d.train[0] * d.num_items + d.train[1]).tolist(), d.noise_type.tolist()))
    assert [
        code[k] for k in (v.train[0] * v.num_items + v.train[1]).tolist()
    ] == v.noise_type.tolist()


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_inject_noise_records_its_type(kind, tmp_path):
    d = make_synthetic(seed=6, noise_mix="near_topic", **SMALL)
    n = inject_noise(d, 0.2, seed=1, kind=kind)
    old = d.train[0].shape[0]
    assert np.array_equal(n.noise_type[:old], d.noise_type)
    assert np.all(n.noise_type[old:] == NOISE_CODE[kind]) and n.noise[old:].all()
    assert n.meta["injected_noise"]["kind"] == kind
    save_npz(n, tmp_path / "d.npz")
    assert np.array_equal(load_npz(tmp_path / "d.npz").noise_type, n.noise_type)
    # flags without types (a user's own bool array) are typed uniform
    bare = InteractionData("b", d.num_users, d.num_items, d.train, d.test, noise=d.noise)
    assert set(np.unique(inject_noise(bare, 0.1).noise_type).tolist()) <= {0, NOISE_CODE["uniform"]}
    with pytest.raises(ValueError, match="injected noise kind"):
        inject_noise(d, 0.1, kind="near_topic")


def test_inject_popularity_follows_degree():
    # items 0..3 with training degrees 1, 2, 3, 6 (users 0..5); user 6 draws one item per run
    users = np.array([0, 1, 1, 2, 2, 2] + [0, 1, 2, 3, 4, 5])
    items = np.array([0, 1, 1, 2, 2, 2] + [3] * 6)
    pairs = sorted(set(zip(users.tolist(), items.tolist())))
    u = np.array([p[0] for p in pairs] + [6, 6, 6, 6, 6])
    i = np.array([p[1] for p in pairs] + [4, 5, 6, 7, 8])
    d = InteractionData("p", 7, 9, (u, i), (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    deg = np.bincount(i, minlength=9).astype(float)
    picks = np.array(
        [inject_noise(d, 0.2, seed=s, kind="popularity").train[1][-1] for s in range(3000)]
    )
    freq = np.bincount(picks, minlength=9) / picks.size
    expected = deg[:4] / deg[:4].sum()
    assert np.all(freq[4:] == 0) and np.allclose(freq[:4], expected, atol=0.03)
