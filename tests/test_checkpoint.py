"""Checkpoints load without running code: a crafted pickle is refused on every path that reads
one (issue 28, item 1), and every checkpoint the trainer writes still loads."""

import builtins

import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from fastgcn_denoise.cli import main
from fastgcn_denoise.data import make_synthetic, save_npz
from fastgcn_denoise.pipelines.train import make_config, train


class _Payload:
    """Unpickled with weights_only=False, this calls open(marker, "w"): the file appears."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(make_synthetic(num_users=50, num_items=40, dim=4, avg_degree=8, seed=2), path)
    return path


def _evil_run(tmp_path):
    """A run directory whose checkpoint.pt carries the payload (marker: the file it would make)."""
    run, marker = tmp_path / "evil", tmp_path / "PWNED"
    run.mkdir()
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": {"out": str(tmp_path / "victim")},
            "state": _Payload(marker),
        },
        run / "checkpoint.pt",
    )
    return run, marker


def test_load_checkpoint_refuses_a_pickle_payload(tmp_path):
    run, marker = _evil_run(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"refused: it holds Python objects that could run code "
        r"when loaded \((io|builtins).open\)",
    ):
        load_checkpoint(run / "checkpoint.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--checkpoint", "{run}"],
        ["denoise", "--checkpoint", "{run}/checkpoint.pt", "--out", "{tmp}/dn"],
        ["train", "--resume", "--out", "{run}"],
        [
            "train",
            "--model",
            "lightgnn-intermediate",
            "--teacher",
            "{run}",
            "--data",
            "{data}",
            "--out",
            "{tmp}/inter",
            "--epochs",
            "1",
        ],
    ],
)
def test_every_command_that_reads_a_checkpoint_refuses_the_payload(tmp_path, capsys, tiny, argv):
    run, marker = _evil_run(tmp_path)
    argv = [a.format(run=run, tmp=tmp_path, data=tiny) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused: it holds Python objects" in err, err
    assert not marker.exists() and not (tmp_path / "victim").exists()


@pytest.mark.parametrize(
    "model,plugins",
    [("lightgcn", ("mask",)), ("s-lightgcn", ()), ("ngcf", ("dgr",)), ("simgcl", ())],
)
def test_trainer_checkpoints_hold_only_plain_data(tmp_path, tiny, model, plugins):
    """weights_only=True reads what the trainer wrote (and resume continues from it)."""
    base = {
        "data": str(tiny),
        "out": str(tmp_path / "run"),
        "dim": 8,
        "layers": 3,
        "batch_size": 64,
        "eval_every": 1,
        "ks": (5,),
        "device": str(DEVICE),
        "progress": False,
        "verbose": False,
    }
    train(make_config(model, plugins=plugins, epochs=1, **base))
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert raw["state"]["epoch"] == 1 and set(raw["data_fingerprint"]) >= {"train interactions"}
    result = train(make_config(model, plugins=plugins, epochs=2, resume=True, **base))
    assert result["epochs_run"] == 2
