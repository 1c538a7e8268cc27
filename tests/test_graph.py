import numpy as np
import pytest
import torch

from fastgcn_denoise import BipartiteGraph


def test_dedup_and_edge_order():
    g = BipartiteGraph([2, 0, 0, 2, 1, 0], [1, 3, 1, 1, 0, 3], num_users=4, num_items=5)
    assert g.num_edges == 4 and g.num_users == 4 and g.num_items == 5
    users, items = g.edges()
    assert users.tolist() == [0, 0, 1, 2] and items.tolist() == [1, 3, 0, 1]
    assert g.rowptr_u.tolist() == [0, 2, 3, 4, 4]
    assert g.deg_u.tolist() == [2, 1, 1, 0] and g.deg_i.tolist() == [1, 2, 0, 1, 0]
    # CSR(R^T): item-major, users ascending, perm gives the edge id of each position.
    assert g.rowptr_i.tolist() == [0, 1, 3, 3, 4, 4]
    assert g.col_user.tolist() == [1, 0, 2, 0]
    assert items[g.perm].tolist() == [0, 1, 1, 3]
    assert users[g.perm].tolist() == g.col_user.tolist()


def test_sizes_default_to_max_id():
    g = BipartiteGraph(np.array([0, 5]), torch.tensor([7, 2]))
    assert (g.num_users, g.num_items) == (6, 8)


@pytest.mark.parametrize(
    "users, items, kwargs, message",
    [
        ([0, 1], [0], {}, "user_ids has 2 entries but item_ids has 1"),
        ([], [], {}, "no interactions"),
        ([0, -1], [0, 1], {}, r"user_ids\[1\] = -1 is negative"),
        ([0, 1], [0, 9], {"num_items": 5}, r"item_ids\[1\] = 9 is out of range: num_items = 5"),
        ([0, 4], [0, 1], {"num_users": 4}, r"user_ids\[1\] = 4 is out of range"),
        ([0.0, 1.5], [0, 1], {}, "user_ids must hold integer ids.*1.5 at position 1"),
        (
            torch.tensor([0.0, 1.0]),
            [0, 1],
            {},
            "user_ids must hold integer ids, got a tensor of dtype",
        ),
        ([[0, 1]], [[0, 1]], {}, "user_ids must be 1-D"),
        (["a", "b"], [0, 1], {}, "user_ids must hold integer ids"),
        ([0], [0], {"num_users": 0}, "num_users must be positive"),
    ],
)
def test_bad_input_raises_with_location(users, items, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BipartiteGraph(users, items, **kwargs)


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    g = BipartiteGraph(rng.integers(0, 50, 300), rng.integers(0, 40, 300), 60, 45)
    path = tmp_path / "g.npz"
    g.save(path)
    h = BipartiteGraph.load(path)
    assert (h.num_users, h.num_items, h.num_edges) == (60, 45, g.num_edges)
    for name in BipartiteGraph._TENSORS:
        assert torch.equal(getattr(g, name), getattr(h, name)), name


def test_load_rejects_foreign_npz(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="not a BipartiteGraph file"):
        BipartiteGraph.load(path)


def test_to_same_device_is_identity_and_copies_otherwise():
    g = BipartiteGraph([0, 1], [1, 0])
    assert g.to("cpu") is g
    if torch.cuda.is_available():
        h = g.to("cuda")
        assert h.device.type == "cuda" and torch.equal(h.perm.cpu(), g.perm)


@pytest.mark.parametrize(
    "rowptr, col, num_items, message",
    [
        # The case: accepted, then masked_spmm read col/rowptr out of bounds (segfault).
        ([0, 3, 100000], [0, 1, 2], 3, r"rowptr_u\[-1\] = 100000 but col_item has 3 entries"),
        ([0, 2, 3], [0, 1, 7], 3, r"col_item\[2\] = 7 is outside \[0, 3\)"),
        ([0, 2, 3], [0, -1, 2], 3, r"col_item\[1\] = -1 is outside \[0, 3\)"),
        ([0, 2, 1, 3], [0, 1, 2], 3, r"rowptr_u\[2\] = 1 is below rowptr_u\[1\] = 2"),
        ([1, 2, 3], [0, 1, 2], 3, r"rowptr_u\[0\] = 1, must be 0"),
        ([], [], 3, "rowptr_u is empty"),
        ([0, 2], [1, 0], 3, r"col_item\[1\] = 0 does not follow col_item\[0\] = 1"),
        ([0, 2], [1, 1], 3, r"col_item\[1\] = 1 does not follow"),
        ([0, 2], [0.0, 1.5], 3, "col_item must hold integers, got dtype float64"),
        ([0, 2], [[0, 1]], 3, "col_item must be 1-D"),
        ([0, 2], [0, 1], -3, "num_items must be a non-negative integer, got -3"),
        ([0, 2], [0, 1], 2.0, "num_items must be a non-negative integer, got 2.0"),
    ],
)
def test_from_csr_checks_indices(rowptr, col, num_items, message):
    with pytest.raises(ValueError, match="BipartiteGraph.from_csr: " + message):
        BipartiteGraph.from_csr(rowptr, col, num_items)


def test_from_csr_accepts_rows_that_restart_and_empty_rows():
    g = BipartiteGraph.from_csr([0, 2, 2, 4, 4], [1, 2, 0, 2], 3)
    assert g.edges()[0].tolist() == [0, 0, 2, 2] and g.num_users == 4


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"rowptr_u": [0, 2], "num_items": 3}, r"missing \['col_item'\]"),
        (
            {"rowptr_u": [0, 2], "col_item": [0.0, 1.0], "num_items": 3},
            "col_item must hold integers",
        ),
        ({"rowptr_u": [0, 2], "col_item": [-1, 1], "num_items": 3}, r"col_item\[0\] = -1"),
        ({"rowptr_u": [0, 2], "col_item": [0], "num_items": 3}, r"rowptr_u\[-1\] = 2 but col_item"),
        ({"rowptr_u": [0, 2], "col_item": [0, 1], "num_items": 2.5}, "num_items must be a non-neg"),
        (
            {"rowptr_u": [0, 2], "col_item": [0, 1], "num_items": [3, 3]},
            "num_items must be a non-neg",
        ),
    ],
)
def test_load_crafted_npz_names_file_and_entry(tmp_path, arrays, message):
    path = tmp_path / "g.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(ValueError, match=f"g.npz: .*{message}"):
        BipartiteGraph.load(path)


def test_load_of_a_non_npz_names_the_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="broken.npz: "):
        BipartiteGraph.load(path)
