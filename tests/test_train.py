"""End-to-end training on a tiny synthetic data set: logs, metrics, checkpoints, resume."""

import json

import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise.data import make_synthetic, save_npz
from fastgcn_denoise.pipelines.train import evaluate_checkpoint, load_checkpoint, make_config, train


def config(tiny_data, out, **kw):
    base = dict(
        data=str(tiny_data),
        out=str(out),
        dim=8,
        layers=2,
        batch_size=64,
        epochs=4,
        eval_every=2,
        patience=10,
        ks=(5, 10),
        device=str(DEVICE),
        progress=False,
        verbose=False,
        lr=5e-3,
    )
    return make_config(**{**base, **kw})


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model", ["lightgcn", "ngcf"])
def test_train_writes_logs_metrics_and_checkpoint(tiny_data, tmp_path, model):
    result = train(config(tiny_data, tmp_path, model=model, noise=0.1))
    log = read_log(tmp_path)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert all({"loss", "bpr", "reg", "seconds"} <= set(r) for r in log)
    assert all("valid" in r or "eval_seconds" not in r for r in log)
    assert [("valid" in r) for r in log] == [False, True, False, True]
    assert all(r["loss"] == pytest.approx(r["bpr"] + r["reg"]) for r in log)
    assert log[-1]["loss"] < log[0]["loss"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert metrics["best_epoch"] in (2, 4) and metrics["epochs_run"] == 4
    assert metrics["selection"] == {
        "rule": "best validation recall@5",
        "epoch": metrics["best_epoch"],
    }
    ranking = {"recall@5", "ndcg@5", "recall@10", "ndcg@10", "users"}
    for split in ("valid", "test"):
        # A model's evaluations also measure how smooth its embeddings are (oversmoothing.py).
        assert set(metrics[split]) == ranking | {"row_diff", "row_diff_se", "mad"}
        assert metrics[split]["row_diff"] > 0 and 0 < metrics[split]["mad"] <= 2
        for m in (metrics[split], metrics["baselines"]["most_popular"][split]):
            assert ranking <= set(m)
            assert 0 <= m["recall@5"] <= m["recall@10"] <= 1 and m["users"] > 0
    assert metrics["valid"] == log[metrics["best_epoch"] - 1]["valid"]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["state"]["epoch"] == 4 and ckpt["model_name"] == model
    # Re-evaluating the checkpoint reproduces the run's test metrics.
    again = evaluate_checkpoint(tmp_path / "checkpoint.pt")
    assert again["epoch"] == metrics["best_epoch"]
    assert again["metrics"] == pytest.approx(metrics["test"])
    assert again["baselines"]["most_popular"] == pytest.approx(
        metrics["baselines"]["most_popular"]["test"]
    )
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "recall.png").exists()


def test_resume_continues_at_the_right_epoch_and_matches_a_straight_run(tiny_data, tmp_path):
    straight = train(config(tiny_data, tmp_path / "a", epochs=6))
    train(config(tiny_data, tmp_path / "b", epochs=4))
    with open(tmp_path / "b" / "log.jsonl", "a") as f:  # an epoch logged after the checkpoint
        f.write(json.dumps({"epoch": 5, "loss": 0.0, "bpr": 0.0, "reg": 0.0, "seconds": 0}) + "\n")
    resumed = train(config(tiny_data, tmp_path / "b", epochs=6, resume=True))
    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["epoch"] for r in log_b] == [1, 2, 3, 4, 5, 6]
    # RNG states are restored, so the resumed run is the straight run.
    for ra, rb in zip(log_a, log_b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6)
    assert resumed["test"] == pytest.approx(straight["test"], rel=1e-6)
    assert resumed["epochs_run"] == 6


def test_early_stopping(tiny_data, tmp_path):
    # lr = 1e-9: nothing changes, so validation never improves after the first evaluation.
    result = train(config(tiny_data, tmp_path, epochs=20, eval_every=1, patience=2, lr=1e-9))
    assert result["stopped_early"] and result["best_epoch"] == 1 and result["epochs_run"] == 3


def test_bad_config_and_resume_errors(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="batch_size = 0"):
        train(config(tiny_data, tmp_path, batch_size=0))
    with pytest.raises(ValueError, match="unknown model 'mf'"):
        train(config(tiny_data, tmp_path, model="mf"))
    with pytest.raises(ValueError, match="no checkpoint at"):
        train(config(tiny_data, tmp_path / "none", resume=True))
    with pytest.raises(ValueError, match="no such file or directory"):
        train(config(str(tmp_path / "missing"), tmp_path / "x"))
    assert not (tmp_path / "x").exists()  # nothing created for a run that cannot start
    train(config(tiny_data, tmp_path / "r", epochs=2))
    with pytest.raises(ValueError, match=r"dim=16 \(checkpoint: 8\)"):
        train(config(tiny_data, tmp_path / "r", epochs=4, dim=16, resume=True))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(config(tiny_data, tmp_path, device="cuda"))


def _data_with_valid(tmp_path, valid_pairs):
    """The tiny data set with its own validation split (``valid_pairs``: (users, items))."""
    import dataclasses

    import numpy as np

    data = make_synthetic(num_users=60, num_items=45, dim=4, avg_degree=8, seed=1)
    data = dataclasses.replace(
        data, valid=tuple(np.asarray(v, dtype=np.int64) for v in valid_pairs)
    )
    path = tmp_path / "with_valid.npz"
    save_npz(data, path)
    return str(path)


def test_degenerate_validation_warns(tmp_path):
    # One validation pair (to "train on all of train"): every evaluation is ~0 and the first
    # epoch stays selected. The run says so instead of reporting epoch 1 silently.
    data = _data_with_valid(tmp_path, ([0], [44]))
    result = train(config(data, tmp_path / "run", epochs=3, eval_every=1, lr=1e-9))
    text = " ".join(result["warnings"])
    assert "only 1 users and 1 interactions" in text and "too few to select" in text
    assert result["best_epoch"] == 1 and "is the first of 3 evaluations" in text
    assert (
        json.loads((tmp_path / "run" / "metrics.json").read_text())["warnings"]
        == result["warnings"]
    )
    healthy = train(config(tiny_data_path(tmp_path), tmp_path / "ok", epochs=2))
    assert healthy["warnings"] == []


def tiny_data_path(tmp_path):
    path = tmp_path / "tiny_ok.npz"
    if not path.exists():
        save_npz(make_synthetic(num_users=120, num_items=45, dim=4, avg_degree=8, seed=1), path)
    return str(path)


def test_train_on_all_of_train_without_validation(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="--select last"):
        config(tiny_data, tmp_path / "x", valid_fraction=0)
    result = train(config(tiny_data, tmp_path / "all", valid_fraction=0, select="last", epochs=3))
    held = train(config(tiny_data, tmp_path / "held", epochs=3))
    assert result["selection"] == {"rule": "the last epoch (no validation split)", "epoch": 3}
    assert result["valid"] is None and result["data"]["valid"] == 0
    assert result["data"]["train"] == held["data"]["train"] + held["data"]["valid"]
    assert not any("valid" in r for r in read_log(tmp_path / "all"))
    # The reported weights are the last epoch's: re-evaluating them gives the run's test metrics.
    again = evaluate_checkpoint(tmp_path / "all" / "checkpoint.pt", weights="last")
    assert again["metrics"] == pytest.approx(result["test"])
    with pytest.raises(ValueError, match="no validation split"):
        evaluate_checkpoint(tmp_path / "all" / "checkpoint.pt", split="valid")


def test_interrupted_run_resumes_to_the_straight_run(tiny_data, tmp_path, monkeypatch):
    from fastgcn_denoise.tasks import ranking

    straight = train(config(tiny_data, tmp_path / "a", epochs=4, eval_every=5))
    real = ranking.RankingTask.train_epoch

    def interrupt_in_epoch_3(model, optimizer, prep, cfg, epoch, sampler, progress):
        if epoch == 3:
            raise KeyboardInterrupt
        return real(model, optimizer, prep, cfg, epoch, sampler, progress)

    monkeypatch.setattr(ranking.RankingTask, "train_epoch", staticmethod(interrupt_in_epoch_3))
    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_data, tmp_path / "b", epochs=4, eval_every=5))
    # The default --eval-every 5 never evaluated, yet epochs 1-2 are checkpointed.
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["state"]["epoch"] == 2
    monkeypatch.setattr(ranking.RankingTask, "train_epoch", staticmethod(real))
    resumed = train(config(tiny_data, tmp_path / "b", epochs=4, eval_every=5, resume=True))
    assert [r["epoch"] for r in read_log(tmp_path / "b")] == [1, 2, 3, 4]
    for ra, rb in zip(read_log(tmp_path / "a"), read_log(tmp_path / "b")):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6)
    assert resumed["test"] == pytest.approx(straight["test"], rel=1e-6)


def test_checkpoint_stores_the_resolved_data_path(tiny_data, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tiny_data, work / "d.npz")
    monkeypatch.chdir(work)
    train(config("d.npz", "run", epochs=2))
    saved = load_checkpoint(work / "run" / "checkpoint.pt")["config"]["data"]
    assert saved == str((work / "d.npz").resolve())
    monkeypatch.chdir(tmp_path)  # another directory: the saved path still finds the data
    evaluate_checkpoint(work / "run")  # a run directory is accepted too
    (work / "d.npz").rename(tmp_path / "moved.npz")
    with pytest.raises(ValueError, match="pass its location with --data"):
        evaluate_checkpoint(work / "run" / "checkpoint.pt")
    evaluate_checkpoint(work / "run" / "checkpoint.pt", data=str(tmp_path / "moved.npz"))


def test_checkpoint_errors_in_the_users_words(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path / "run", epochs=1))
    with pytest.raises(ValueError, match="is a directory without a checkpoint.pt"):
        load_checkpoint(tmp_path)
    path = tmp_path / "run" / "checkpoint.pt"
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated, corrupt or not a PyTorch file"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(ValueError, match="no such file"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_progress_bars_cover_epochs_and_evaluation(tiny_data, tmp_path, capsys):
    # issue 10 item 17: with --progress, the epoch bar carries the metric so far and each
    # evaluation shows its own bar over the user batches.
    train(config(tiny_data, tmp_path, epochs=2, eval_every=1, progress=True))
    err = capsys.readouterr().err
    assert "evaluate" in err and "user" in err
    assert "recall@5=" in err and "best=2" in err  # the headline metric (first of --ks)
