"""Feature-graph data (L0-SIGN): the `label node node ...` loader, its errors, the seeded
70/15/15 split, subsets and batches."""

import numpy as np
import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise.data.feature_graphs import FeatureGraphs, load_feature_graphs, split_indices


def write(tmp_path, text, name="g.data"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_with_empty_graphs_and_repeats(tmp_path):
    path = write(tmp_path, "1.0 0 1 2 3\n0.0\n\n1 4 4 7\n0.0 2\n")
    g = load_feature_graphs(path)
    assert g.num_graphs == 4 and g.num_features == 8 and g.name == "g"
    assert g.ptr.tolist() == [0, 4, 4, 7, 8]
    assert g.nodes.tolist() == [0, 1, 2, 3, 4, 4, 7, 2]
    assert g.labels.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert g.sizes().tolist() == [4, 0, 3, 1]
    assert load_feature_graphs(path, num_features=20).num_features == 20


@pytest.mark.parametrize(
    "text,message",
    [
        ("1.0 0 1\n0.5 2\n", r"g.data, line 2: label '0.5' is not 0 or 1"),
        ("1.0 0 1\nyes 2\n", r"g.data, line 2: label 'yes' is not a number"),
        ("1.0 0 1\n\n0.0 3 x 2\n", r"g.data, line 3: node 'x' is not a non-negative integer"),
        ("0.0 1 2.5\n", r"g.data, line 1: node '2.5' is not a non-negative integer"),
        ("0.0 1 -2\n", r"g.data, line 1: node -2 is negative"),
        ("\n\n", r"g.data: no graphs"),
    ],
)
def test_load_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_feature_graphs(write(tmp_path, text))


def test_load_missing_and_too_few_features(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_feature_graphs(tmp_path / "absent.data")
    with pytest.raises(ValueError, match=r"feature id 7 is outside \[0, 5\)"):
        load_feature_graphs(write(tmp_path, "1 7\n"), num_features=5)


def test_split_is_seeded_partition():
    parts = split_indices(1001, seed=3)
    sizes = [parts[k].shape[0] for k in ("train", "valid", "test")]
    assert sizes == [701, 150, 150]
    merged = np.sort(np.concatenate(list(parts.values())))
    assert (merged == np.arange(1001)).all()
    again = split_indices(1001, seed=3)
    assert all((parts[k] == again[k]).all() for k in parts)
    assert not (split_indices(1001, seed=4)["train"] == parts["train"]).all()
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(10, 0, (0.5, 0.5, 0.5))
    small = split_indices(2, 0)
    assert sum(v.shape[0] for v in small.values()) == 2


def test_subset_batch_and_split():
    ptr = np.array([0, 2, 2, 5, 6])
    g = FeatureGraphs("t", ptr, np.array([3, 1, 0, 2, 4, 1]), np.array([1, 0, 1, 0], np.float32), 5)
    sub = g.subset([2, 1, 0])
    assert sub.ptr.tolist() == [0, 3, 3, 5] and sub.nodes.tolist() == [0, 2, 4, 3, 1]
    assert sub.labels.tolist() == [1.0, 0.0, 1.0]
    batch = g.batch([3, 1], device=DEVICE)
    assert batch.ptr.tolist() == [0, 1, 1] and batch.nodes.tolist() == [1]
    assert batch.labels.dtype == torch.float32 and batch.index.tolist() == [3, 1]
    assert batch.num_graphs == 2
    seen = [b.index.tolist() for b in g.batches(3, order=[3, 2, 1, 0])]
    assert seen == [[3, 2, 1], [0]]
    parts = g.split(seed=0)
    assert sum(p.num_graphs for p in parts.values()) == 4
    with pytest.raises(ValueError, match="graph index out of range"):
        g.subset([4])
    with pytest.raises(ValueError, match="feature ids must lie in"):
        FeatureGraphs("t", ptr, np.array([3, 1, 0, 2, 4, 5]), g.labels, 5)
    with pytest.raises(ValueError, match="ptr must start at 0"):
        FeatureGraphs("t", np.array([0, 2, 1]), np.array([1]), np.zeros(2, np.float32), 5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,graphs,features,nodes_per_graph",
    [("twitter", 144_033, 1_323, 4.03), ("DBLP_v1", 19_456, 41_325, 10.48)],
)
def test_shared_data_sets(name, graphs, features, nodes_per_graph):
    from pathlib import Path

    path = (
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "l0sign" / f"{name}.data"
    )
    if not path.exists():
        pytest.skip(f"{path} not present")
    g = load_feature_graphs(path)
    assert g.num_graphs == graphs and g.num_features == features
    assert abs(g.sizes().mean() - nodes_per_graph) < 0.005


def test_load_skips_a_bom(tmp_path):
    path = tmp_path / "bom.data"
    path.write_bytes(b"\xef\xbb\xbf1.0 0 1\n0.0 2\n")
    g = load_feature_graphs(path)
    assert g.labels.tolist() == [1.0, 0.0] and g.nodes.tolist() == [0, 1, 2]


def test_load_refuses_a_sparse_feature_id(tmp_path):
    # One feature id 1e11 asked for a 1e11-row embedding table (terabytes).
    lines = [f"{i % 2} {i % 40} {(i + 3) % 40}" for i in range(200)] + ["1 100000000000 3"]
    with pytest.raises(
        ValueError,
        match=r"g\.data, line 201: feature id 100,000,000,000, but "
        r"only 41 distinct features occur",
    ):
        load_feature_graphs(write(tmp_path, "\n".join(lines) + "\n"))
