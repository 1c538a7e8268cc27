"""Choosing a backend through FASTGCN_BACKEND (issue 10 item 13): errors name the variable, and
``info`` shows what it selects."""

import pytest
import torch
from conftest import DEVICE, random_graph

from fastgcn_denoise import ops
from fastgcn_denoise.cli import main
from fastgcn_denoise.ops import BackendUnavailable, availability
from fastgcn_denoise.tasks.evaluation import evaluate_embeddings


def spmm(graph):
    x_u = torch.ones(graph.num_users, 2, device=DEVICE)
    x_i = torch.ones(graph.num_items, 2, device=DEVICE)
    return ops.masked_spmm(graph, x_u, x_i, None, mode="ones")


def test_unknown_backend_in_the_environment_is_named(monkeypatch):
    g = random_graph(5, 4, 0.5)
    monkeypatch.setenv("FASTGCN_BACKEND", "bogus")
    for call in (
        lambda: spmm(g),
        lambda: evaluate_embeddings(torch.ones(5, 2), torch.ones(4, 2), g.to("cpu")),
    ):
        with pytest.raises(
            BackendUnavailable,
            match=r"^unknown backend 'bogus' in FASTGCN_BACKEND; "
            r"choose one of reference, cpu, triton, cuda "
            r"\(or unset FASTGCN_BACKEND",
        ):
            call()
    # An explicit argument is named as such, and wins over the variable.
    with pytest.raises(BackendUnavailable, match=r"^unknown backend 'nope'; choose one of"):
        ops.get_backend(DEVICE, "nope")
    assert ops.resolve_name(DEVICE, "reference") == "reference"


def test_unavailable_backend_from_the_environment_says_so(monkeypatch):
    name = next((b for b, why in availability(DEVICE).items() if why is not None), None)
    if name is None:
        pytest.skip(f"every backend runs on {DEVICE} here")
    monkeypatch.setenv("FASTGCN_BACKEND", name)
    with pytest.raises(BackendUnavailable) as exc:
        spmm(random_graph(5, 4, 0.5))
    msg = str(exc.value)
    assert msg.startswith(f"backend {name!r} is not available on {DEVICE} (FASTGCN_BACKEND={name})")
    assert availability(DEVICE)[name] in msg and msg.endswith(
        "unset FASTGCN_BACKEND to use the best available"
    )


def test_empty_variable_means_unset(monkeypatch):
    monkeypatch.setenv("FASTGCN_BACKEND", "")
    assert ops.resolve_name(torch.device("cpu")) == ops.resolve_name(torch.device("cpu"), None)


def test_info_honours_the_variable(monkeypatch, capsys):
    monkeypatch.delenv("FASTGCN_BACKEND", raising=False)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    best = ops.resolve_name(torch.device("cpu"))
    assert "FASTGCN_BACKEND: not set" in out and f"ops on cpu tensors run on: {best}" in out
    monkeypatch.setenv("FASTGCN_BACKEND", "reference")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "FASTGCN_BACKEND: 'reference'" in out and "ops on cpu tensors run on: reference" in out


def test_info_with_a_bogus_variable_fails_naming_it(monkeypatch, capsys):
    monkeypatch.setenv("FASTGCN_BACKEND", "bogus")
    assert main(["info"]) == 2
    out, err = capsys.readouterr()
    assert "backends for cpu tensors:" in out  # the report is still printed
    assert "ops on cpu tensors fail: unknown backend 'bogus' in FASTGCN_BACKEND" in out
    assert err.startswith("fastgcn-denoise: error: unknown backend 'bogus' in FASTGCN_BACKEND")


def test_train_with_a_bogus_variable_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FASTGCN_BACKEND", "bogus")
    code = main(["train", "--out", str(tmp_path / "o"), "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'bogus' in FASTGCN_BACKEND" in err
