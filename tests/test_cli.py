"""The command line: help, info, train/evaluate on a tiny data set, one-line user errors."""
import json
import os
import subprocess
import sys

import pytest

from fastgcn_denoise import __version__
from fastgcn_denoise.cli import COMMANDS, main
from fastgcn_denoise.data import make_synthetic, save_npz


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_explains_every_flag_with_defaults(capsys, command):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fastgcn-denoise" in out
    if command == "train":
        for flag in ("--model", "--data", "--epochs", "--device", "--out", "--dim", "--layers",
                     "--lr", "--decay", "--batch-size", "--seed", "--eval-every", "--patience",
                     "--resume", "--backend", "--noise"):
            assert flag in out, flag
        flat = " ".join(out.split())  # a default may wrap onto the next line
        assert "(default: lightgcn)" in flat and "(default: 0.001)" in flat
        assert "(default: synthetic)" in out
    if command == "evaluate":
        assert "--checkpoint" in out and "(default: test)" in out


def test_info_lists_backends_with_reasons(capsys):
    code, out, _ = run_main(capsys, "info")
    assert code == 0
    assert f"fastgcn-denoise {__version__}" in out and "torch" in out
    assert "backends for cpu tensors:" in out
    assert "reference  available" in out
    # Every backend line says available, or why not.
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(lines) >= 4 and all("available" in line for line in lines)


@pytest.mark.parametrize("argv,message", [
    (["train", "--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["train", "--lr", "abc"], "argument --lr: expected a number, got 'abc'"),
    (["train", "--noise", "-1"], "argument --noise: expected a number in [0, 10], got -1"),
    (["train", "--model", "mf"], "argument --model: invalid choice: 'mf'"),
    (["train", "--data", "/nonexistent/dir", "--out", "{tmp}/o"], "/nonexistent/dir"),
    (["train", "--resume", "--out", "{tmp}/none"], "no such file"),
    (["evaluate", "--checkpoint", "{tmp}/missing.pt"], "missing.pt': no such file"),
    (["evaluate"], "the following arguments are required: --checkpoint"),
    (["train", "--model", "lightgcn", "--beta", "0.1", "--out", "{tmp}/o"],
     "--beta does not apply to --model lightgcn (it is an option of s-lightgcn, s-ngcf)"),
    (["train", "--device", "gpu", "--out", "{tmp}/o"], "device = 'gpu': choose cpu, cuda or cuda:N"),
    (["train", "--valid-fraction", "0", "--out", "{tmp}/o"], "add --select last"),
    (["evaluate", "--checkpoint", "{tmp}"], "is a directory without a checkpoint.pt"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "choose a command"),
])
def test_user_errors_are_one_line_exit_2(capsys, tmp_path, argv, message):
    code, _, err = run_main(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("fastgcn-denoise: error: "), err
    assert message in err and "Traceback" not in err


def test_train_then_evaluate(capsys, tmp_path):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=50, num_items=40, dim=4, avg_degree=8, seed=2), data)
    out = tmp_path / "run"
    code, stdout, _ = run_main(capsys, "train", "--data", str(data), "--out", str(out),
                               "--epochs", "2", "--eval-every", "1", "--dim", "8", "--layers", "1",
                               "--batch-size", "64", "--ks", "5,10", "--quiet")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "Recall@5" in stdout and "most popular" in stdout
    assert f"{metrics['test']['recall@5']:10.4f}" in stdout
    # --resume takes the saved settings; only --epochs changes.
    code, stdout, _ = run_main(capsys, "train", "--out", str(out), "--resume", "--epochs", "3",
                               "--quiet")
    assert code == 0 and "of 3" in stdout
    code, stdout, _ = run_main(capsys, "evaluate", "--checkpoint", str(out / "checkpoint.pt"),
                               "--split", "valid", "--json")
    assert code == 0
    res = json.loads(stdout)
    assert res["split"] == "valid" and set(res["metrics"]) >= {"recall@5", "ndcg@10"}
    # The run directory works as --checkpoint; the table shows the model beside the baseline.
    code, stdout, _ = run_main(capsys, "evaluate", "--checkpoint", str(out))
    assert code == 0 and "most popular" in stdout and "recall@5" in stdout
    code, _, err = run_main(capsys, "evaluate", "--checkpoint", str(out), "--device", "gpu")
    assert code == 2 and "device = 'gpu': choose cpu, cuda or cuda:N" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_python_dash_m_entry_point():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "fastgcn_denoise", "--version"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastgcn-denoise {__version__}"


# ---------------------------------------------------------------------- issue 28: trust
def _tiny(tmp_path):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=50, num_items=40, dim=4, avg_degree=8, seed=2), data)
    return data


TINY_FLAGS = ["--epochs", "1", "--dim", "8", "--layers", "1", "--batch-size", "64", "--ks", "5",
              "--quiet"]


@pytest.mark.parametrize("argv,message", [
    (["train", "--seed", "4294967296", "--out", "{tmp}/o"],
     "argument --seed: expected an integer >= 0 and <= 4294967295, got 4294967296"),
    (["train", "--seed", "-1", "--out", "{tmp}/o"], "argument --seed: expected an integer >= 0"),
    (["train", "--data", "{data}", "--out", "{tmp}/file"], "is a file, not a directory"),
    (["train", "--data", "{data}", "--out", "{tmp}/file/run"], "file is a file, not a directory"),
    (["train", "--data", "{data}", "--out", "{tmp}/done"],
     ("already holds a run (checkpoint.pt, log.jsonl or metrics.json): continue it with "
      "--resume, or replace it with --overwrite")),
    (["denoise", "--model", "l0-sign", "--data", "{data}", "--out", "{tmp}/dn"],
     ("--model l0-sign is a classification model: denoise scores the interactions of a "
      "ranking denoiser")),
])
def test_trust_errors_are_one_line_exit_2(capsys, tmp_path, argv, message):
    data = _tiny(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.json").write_text("{}")
    code, _, err = run_main(capsys, *[a.format(tmp=tmp_path, data=data) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("fastgcn-denoise: error: "), err
    assert message in err and "Traceback" not in err
    assert "add --mask" not in err  # l0-sign refuses plug-ins: never suggest one
    assert (tmp_path / "done" / "metrics.json").read_text() == "{}"


def test_overwrite_replaces_a_run(capsys, tmp_path):
    data, out = _tiny(tmp_path), tmp_path / "run"
    assert run_main(capsys, "train", "--data", str(data), "--out", str(out), *TINY_FLAGS)[0] == 0
    code, _, _ = run_main(capsys, "train", "--data", str(data), "--out", str(out),
                          "--overwrite", *TINY_FLAGS, "--lr", "0.01")
    assert code == 0 and json.loads((out / "metrics.json").read_text())["config"]["lr"] == 0.01


def test_resume_writes_where_the_checkpoint_was_read_never_where_it_says(capsys, tmp_path,
                                                                         monkeypatch):
    # A checkpoint copied from another run still names that run's --out inside: `train --resume`
    # (default --out runs/train) must continue in runs/train and leave the other run alone.
    data, victim = _tiny(tmp_path), tmp_path / "victim"
    assert run_main(capsys, "train", "--data", str(data), "--out", str(victim), *TINY_FLAGS)[0] == 0
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "train").mkdir(parents=True)
    (tmp_path / "runs" / "train" / "checkpoint.pt").write_bytes(before["checkpoint.pt"])
    code, stdout, _ = run_main(capsys, "train", "--resume", "--epochs", "2", "--quiet")
    assert code == 0 and "written to runs/train/metrics.json" in stdout
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    assert json.loads((tmp_path / "runs" / "train" / "metrics.json").read_text())["epochs_run"] == 2


def test_an_export_into_a_file_is_one_line(capsys, tmp_path):
    data, run = _tiny(tmp_path), tmp_path / "run"
    assert run_main(capsys, "denoise", "--data", str(data), "--out", str(run), *TINY_FLAGS)[0] == 0
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        code, _, err = run_main(capsys, "denoise", "--checkpoint", str(run), "--out", str(out))
        assert code == 2 and err.count("\n") == 1 and str(tmp_path / "file") in err, err
