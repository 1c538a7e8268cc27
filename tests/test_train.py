"""End-to-end training on a tiny synthetic data set: logs, metrics, checkpoints, resume."""
import json

import pytest
import torch

from conftest import DEVICE
from fastgcn_denoise.data import make_synthetic, save_npz
from fastgcn_denoise.train import TrainConfig, evaluate_checkpoint, load_checkpoint, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(make_synthetic(num_users=60, num_items=45, dim=4, avg_degree=8, seed=1), path)
    return str(path)


def config(tiny_data, out, **kw):
    base = dict(data=tiny_data, out=str(out), dim=8, layers=2, batch_size=64, epochs=4,
                eval_every=2, patience=10, ks=(5, 10), device=str(DEVICE), progress=False,
                verbose=False, lr=5e-3)
    return TrainConfig(**{**base, **kw})


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model", ["lightgcn", "ngcf"])
def test_train_writes_logs_metrics_and_checkpoint(tiny_data, tmp_path, model):
    result = train(config(tiny_data, tmp_path, model=model, noise=0.1))
    log = read_log(tmp_path)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert all({"loss", "bpr", "reg", "seconds"} <= set(r) for r in log)
    assert [("valid" in r) for r in log] == [False, True, False, True]
    assert all(r["loss"] == pytest.approx(r["bpr"] + r["reg"]) for r in log)
    assert log[-1]["loss"] < log[0]["loss"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert metrics["best_epoch"] in (2, 4) and metrics["epochs_run"] == 4
    for split in ("valid", "test"):
        for m in (metrics[split], metrics["most_popular"][split]):
            assert set(m) == {"recall@5", "ndcg@5", "recall@10", "ndcg@10", "users"}
            assert 0 <= m["recall@5"] <= m["recall@10"] <= 1 and m["users"] > 0
    assert metrics["valid"] == log[metrics["best_epoch"] - 1]["valid"]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["state"]["epoch"] == 4 and ckpt["model_name"] == model
    # Re-evaluating the checkpoint reproduces the run's test metrics.
    again = evaluate_checkpoint(tmp_path / "checkpoint.pt")
    assert again["epoch"] == metrics["best_epoch"]
    assert again["metrics"] == pytest.approx(metrics["test"])
    assert again["most_popular"] == pytest.approx(metrics["most_popular"]["test"])
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
    with pytest.raises(ValueError, match="model = 'mf'"):
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
