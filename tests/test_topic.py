"""The PLSA topic detector against a plain numpy EM, its leave-one-out scores against a refit
without the pair, and the choice of the number of topics on validation."""

import numpy as np
import pytest
import torch
from conftest import random_graph

from fastgcn_denoise.data import make_synthetic
from fastgcn_denoise.denoisers import topic
from fastgcn_denoise.denoisers.noise_model import EXPONENTS
from fastgcn_denoise.denoisers.topic import TopicFit, topic_pair_scores, topic_scores
from fastgcn_denoise.pipelines.denoise import roc_auc


def graph_of(seed):
    """A random 25 x 18 graph, its last user and item without edges."""
    return random_graph(25, 18, 0.35, seed=seed)


def numpy_em(users, items, num_users, num_items, k, theta, phi, steps):
    """MAP EM of PLSA written out with dense arrays: the expected counts (n [U, K], m [I, K])
    of the E-step after ``steps`` M-steps from (θ, φ)."""
    for step in range(steps + 1):
        p = theta[users] * phi[items]
        r = p / p.sum(1, keepdims=True)
        n, m = np.zeros((num_users, k)), np.zeros((num_items, k))
        np.add.at(n, users, r)
        np.add.at(m, items, r)
        if step < steps:
            theta = (n + topic.ALPHA_USER) / (n + topic.ALPHA_USER).sum(1, keepdims=True)
            phi = (m + topic.ALPHA_ITEM) / (m + topic.ALPHA_ITEM).sum(0, keepdims=True)
    return n, m


@pytest.mark.parametrize("seed,k,steps", [(0, 2, 1), (1, 3, 5), (2, 5, 20)])
def test_fit_matches_a_dense_em(seed, k, steps):
    graph = graph_of(seed)
    fit = TopicFit(graph, k, seed=seed, iterations=steps)
    # the same initial point as the fit's
    gen = torch.Generator().manual_seed(seed)
    theta = (torch.rand(graph.num_users, k, generator=gen, dtype=torch.float64) + 0.5).numpy()
    phi = (torch.rand(graph.num_items, k, generator=gen, dtype=torch.float64) + 0.5).numpy()
    theta, phi = theta / theta.sum(1, keepdims=True), phi / phi.sum(0, keepdims=True)
    users, items = (t.numpy() for t in graph.edges())
    # the fit runs ``steps`` EM steps (fewer if it converged first) plus a final E-step
    n, m = numpy_em(users, items, graph.num_users, graph.num_items, k, theta, phi, steps)
    np.testing.assert_allclose(fit.n.numpy(), n, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.m.numpy(), m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.theta().sum(1).numpy(), 1.0)
    np.testing.assert_allclose(fit.phi().sum(0).numpy(), 1.0)
    # every edge carries one unit of responsibility
    assert fit.n.sum().item() == pytest.approx(graph.num_edges)


def test_leave_one_out_is_the_counts_without_the_pair():
    graph = graph_of(3)
    fit = TopicFit(graph, 4, iterations=30)
    users, items = (t.numpy() for t in graph.edges())
    loo = fit.leave_one_out()
    theta, phi = (x.numpy() for x in fit.e_step_params)
    n, m = fit.n.numpy(), fit.m.numpy()
    # the responsibilities taken out are exactly those that make up the counts
    every_r = theta[users] * phi[items]
    every_r /= every_r.sum(1, keepdims=True)
    np.testing.assert_allclose(
        np.add.reduceat(every_r, np.r_[0, np.flatnonzero(np.diff(users)) + 1]),
        n[np.unique(users)],
        rtol=1e-9,
    )
    for e in range(0, graph.num_edges, 7):
        u, i = users[e], items[e]
        r = every_r[e]
        n_u = n[u] - r + topic.ALPHA_USER
        m_minus = m.copy()
        m_minus[i] -= r
        phi_minus = (m_minus + topic.ALPHA_ITEM) / (m_minus + topic.ALPHA_ITEM).sum(0)
        assert loo[e] == pytest.approx((n_u / n_u.sum() * phi_minus[i]).sum(), rel=1e-9)
    # a pair scored as a non-edge keeps its own count: it scores higher than without it
    assert (fit.pair_scores(users, items) > loo).all()


def test_pair_scores_are_the_fitted_probabilities():
    graph = graph_of(4)
    users, items = np.array([0, 3, 7]), np.array([1, 2, 5])
    got = topic_pair_scores(graph, 3, users, items)
    fit = TopicFit(graph, 3)
    np.testing.assert_allclose(got, (fit.theta()[users] * fit.phi()[items]).sum(1).numpy())
    # P(. | u) is a distribution over the items
    every = topic_pair_scores(graph, 3, np.zeros(18, int), np.arange(18))
    assert every.sum() == pytest.approx(1.0)


def test_finds_planted_noise_and_chooses_the_generator_s_topics():
    data = make_synthetic(
        num_users=600,
        num_items=300,
        dim=6,
        avg_degree=25,
        noise_ratio=0.2,
        seed=0,
        noise_mix="uniform",
    )
    graph = data.train_graph()
    keep, info = topic_scores(graph, data.split_graph("valid"), candidates=(3, 6, 12))
    assert info["topics"] == 6
    assert set(info["valid_loglik"]) == {3, 6, 12}
    assert info["popularity_exponent"] in EXPONENTS
    assert keep.shape == (graph.num_edges,)
    assert roc_auc(-keep, data.noise_per_edge(graph) > 0) > 0.8


def test_without_validation_the_default_and_no_popularity_exponent():
    graph = graph_of(5)
    keep, info = topic_scores(graph)
    assert info == {
        "topics": topic.DEFAULT_TOPICS,
        "valid_loglik": None,
        "popularity_exponent": 0.0,
        "exponent_share": None,
    }
    assert np.isfinite(keep).all() and (keep > 0).all()


@pytest.mark.parametrize("topics", [0, -2])
def test_bad_number_of_topics_is_refused(topics):
    with pytest.raises(ValueError, match="topics must be >= 1"):
        topic_scores(graph_of(6), topics=topics)
