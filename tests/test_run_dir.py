"""Runs that cannot clobber each other or lose data (issue 28, items 2, 5, 6 and the traceback
cases): an existing run is refused without --resume/--overwrite, a lock stops a second writer,
a torn log line is dropped, resume checks the data by content, an interrupted save is reported
truthfully."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise.checkpoint import load_checkpoint
from fastgcn_denoise.data import load_dataset, save_npz
from fastgcn_denoise.pipelines.denoise import denoise_checkpoint
from fastgcn_denoise.pipelines.train import evaluate_checkpoint, make_config, train


def config(data, out, **kw):
    base = {
        "data": str(data),
        "out": str(out),
        "dim": 8,
        "layers": 1,
        "batch_size": 64,
        "epochs": 2,
        "eval_every": 1,
        "ks": (5,),
        "device": str(DEVICE),
        "progress": False,
        "verbose": False,
    }
    return make_config(**{**base, **kw})


# ---------------------------------------------------------------------- existing runs, --overwrite
def test_an_existing_run_is_refused_without_resume_or_overwrite(tiny_data, tmp_path):
    out = tmp_path / "run"
    first = train(config(tiny_data, out))
    before = {
        name: (out / name).read_bytes() for name in ("metrics.json", "log.jsonl", "checkpoint.pt")
    }
    with pytest.raises(
        ValueError,
        match=rf"--out {out} already holds a run .*--resume.*"
        r"--overwrite",
    ):
        train(config(tiny_data, out, lr=0.05))
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing touched
    with pytest.raises(ValueError, match="give one of them"):
        train(config(tiny_data, out, resume=True, overwrite=True))
    again = train(config(tiny_data, out, lr=0.05, overwrite=True, epochs=1))
    assert again["epochs_run"] == 1 and again["config"]["lr"] == 0.05 != first["config"]["lr"]
    assert [json.loads(r)["epoch"] for r in (out / "log.jsonl").read_text().splitlines()] == [1]
    assert not (out / "run.lock").exists()


def test_a_directory_without_a_run_is_fine(tiny_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "log.jsonl").write_text("")  # a run killed before its first epoch
    assert train(config(tiny_data, out, epochs=1))["epochs_run"] == 1
    assert (out / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------- the lock
def _holder_process():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_second_writer_stops_and_a_stale_lock_is_taken_over(tiny_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    other = _holder_process()
    try:
        (out / "run.lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        with pytest.raises(
            ValueError,
            match=rf"--out {out} is in use by another run \(process "
            rf"{other.pid} on {socket.gethostname()}\)",
        ):
            train(config(tiny_data, out))
        assert not (out / "log.jsonl").exists()
    finally:
        other.kill()
        other.wait()
    result = train(config(tiny_data, out, epochs=1))  # its process is gone: the lock is stale
    assert any(f"took over the lock of process {other.pid}" in w for w in result["warnings"])
    assert not (out / "run.lock").exists()


def test_a_lock_from_another_host_is_not_taken_over(tiny_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(
        ValueError,
        match=r"process 1 on elsewhere.example.*if that run is gone, "
        r"delete .*run.lock",
    ):
        train(config(tiny_data, out))


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_the_lock_is_released_when_the_run_fails(tiny_data, tmp_path, monkeypatch, error):
    from fastgcn_denoise.tasks import ranking

    def fail(*args):
        raise error("stop")

    monkeypatch.setattr(ranking.RankingTask, "train_epoch", staticmethod(fail))
    with pytest.raises(error):
        train(config(tiny_data, tmp_path / "run"))
    assert not (tmp_path / "run" / "run.lock").exists()


# ---------------------------------------------------------------------- the log
def test_a_torn_last_log_line_is_dropped_on_resume(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_data, out, epochs=2))
    with open(out / "log.jsonl", "a") as f:
        f.write('{"epoch": 3, "loss": 0.69')  # killed mid-line
    result = train(config(tiny_data, out, epochs=3, resume=True))
    assert any("log.jsonl, line 3: dropped a torn last line" in w for w in result["warnings"])
    assert [json.loads(r)["epoch"] for r in (out / "log.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]
    lines = (out / "log.jsonl").read_text().splitlines()
    (out / "log.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"log.jsonl, line 2: not a log record"):
        train(config(tiny_data, out, epochs=4, resume=True))


# ---------------------------------------------------------------------- --out
def test_out_that_is_a_file_or_read_only_is_refused(tiny_data, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--out .*file is a file, not a directory"):
        train(config(tiny_data, tmp_path / "file"))
    with pytest.raises(ValueError, match=r"--out .*file/run: .*file is a file, not a directory"):
        train(config(tiny_data, tmp_path / "file" / "run"))
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes anyway: make the filesystem refuse as it would a user

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "access", lambda *a: False)
        monkeypatch.setattr(Path, "mkdir", refuse)
    try:
        with pytest.raises(ValueError, match=r"--out .*ro/run: .*ro is not writable"):
            train(config(tiny_data, locked / "run"))
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------- an interrupted save
def test_ctrl_c_during_the_save_reports_the_epoch_the_checkpoint_holds(
    tiny_data, tmp_path, monkeypatch, capsys
):
    from fastgcn_denoise import checkpoint

    real, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # the save of epoch 3, half-written
            Path(path).write_bytes(b"torn")
            raise KeyboardInterrupt
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(
            make_config(
                data=str(tiny_data),
                out=str(out),
                dim=8,
                layers=1,
                batch_size=64,
                epochs=4,
                eval_every=1,
                ks=(5,),
                progress=False,
                verbose=True,
            )
        )
    err = capsys.readouterr().err
    assert f"interrupted in epoch 3: {out / 'checkpoint.pt'} holds epoch 2" in err, err
    assert load_checkpoint(out)["state"]["epoch"] == 2
    assert not (out / "checkpoint.pt.tmp").exists()


# ---------------------------------------------------------------------- the data fingerprint
def _same_counts_other_content(src: Path, dst: Path) -> Path:
    """The data set with two item ids swapped: every count is the same, the pairs are not."""
    data = load_dataset(str(src))
    swap = np.arange(data.num_items)
    swap[[0, 1]] = [1, 0]

    def split(pairs):
        return None if pairs is None else (pairs[0], swap[pairs[1]])

    save_npz(
        dataclasses.replace(
            data, train=split(data.train), valid=split(data.valid), test=split(data.test)
        ),
        dst,
    )
    return dst


def test_moved_data_resumes_and_other_content_is_refused(tiny_data, tmp_path):
    out = tmp_path / "run"
    data = tmp_path / "d.npz"
    data.write_bytes(tiny_data.read_bytes())
    train(config(data, out, epochs=1))
    moved = tmp_path / "moved" / "d.npz"
    moved.parent.mkdir()
    data.rename(moved)
    result = train(config(moved, out, epochs=2, resume=True))  # --data NEW: same content
    assert result["epochs_run"] == 2 and load_checkpoint(out)["config"]["data"] == str(moved)
    other = _same_counts_other_content(moved, tmp_path / "other.npz")
    with pytest.raises(
        ValueError,
        match=r"is not the data the checkpoint was trained on \(.*\): "
        r"same counts, other content \(.*train interactions.*"
        r"differ\)",
    ):
        train(config(other, out, epochs=3, resume=True))
    with pytest.raises(ValueError, match="same counts, other content"):
        evaluate_checkpoint(out, data=str(other))
    with pytest.raises(ValueError, match="same counts, other content"):
        denoise_checkpoint(out, tmp_path / "dn", data=str(other))
    moved.write_bytes(other.read_bytes())  # edited in place: the saved path, other content
    with pytest.raises(ValueError, match="same counts, other content"):
        evaluate_checkpoint(out)
