"""The command line: help (per model), info, train/evaluate on a tiny data set, --config and the
run's config.toml, one-line user errors."""

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


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 0
    return capsys.readouterr().out


def flags_in(text: str) -> set:
    """The flags a --help lists (each at the start of its line)."""
    return {line.split()[0].rstrip(",") for line in text.splitlines() if line.startswith("  --")}


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(make_synthetic(num_users=50, num_items=40, dim=4, avg_degree=8, seed=2), path)
    return path


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_explains_every_flag_with_defaults(capsys, command):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fastgcn-denoise" in out
    if command == "train":
        for flag in (
            "--model",
            "--data",
            "--epochs",
            "--device",
            "--out",
            "--dim",
            "--layers",
            "--lr",
            "--decay",
            "--batch-size",
            "--seed",
            "--eval-every",
            "--patience",
            "--resume",
            "--backend",
            "--noise",
        ):
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


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
        (["train", "--lr", "abc"], "argument --lr: expected a number, got 'abc'"),
        (["train", "--noise", "-1"], "argument --noise: expected a number in [0, 10], got -1"),
        (["train", "--model", "mf"], "argument --model: invalid choice: 'mf'"),
        (["train", "--data", "/nonexistent/dir", "--out", "{tmp}/o"], "/nonexistent/dir"),
        (["train", "--resume", "--out", "{tmp}/none"], "no such file"),
        (["evaluate", "--checkpoint", "{tmp}/missing.pt"], "missing.pt': no such file"),
        (["evaluate"], "the following arguments are required: --checkpoint"),
        (
            ["train", "--model", "lightgcn", "--beta", "0.1", "--out", "{tmp}/o"],
            "--beta does not apply to --model lightgcn (it is an option of s-lightgcn, s-ngcf)",
        ),
        (
            ["train", "--model", "grcn", "--svd-rank", "4", "--out", "{tmp}/o"],
            "--svd-rank does not apply to --model grcn (it is an option of s-lightgcn, s-ngcf)",
        ),
        (
            ["train", "--kd-triples", "8", "--out", "{tmp}/o"],
            "--kd-triples does not apply to --model lightgcn (it is an option of lightgnn-intermediate, "
            + "lightgnn-student)",
        ),
        (
            ["train", "--model", "l0-sign", "--mask", "--out", "{tmp}/o"],
            "plug-in 'mask' changes ranking backbones; model 'l0-sign' is a classification model",
        ),
        (
            ["train", "--target-keep", "0.5", "--out", "{tmp}/o"],
            "--target-keep is an option of the mask plug-in: add --mask",
        ),
        (
            ["train", "--device", "gpu", "--out", "{tmp}/o"],
            "device = 'gpu': choose cpu, cuda or cuda:N",
        ),
        (["train", "--valid-fraction", "0", "--out", "{tmp}/o"], "add --select last"),
        (["evaluate", "--checkpoint", "{tmp}"], "is a directory without a checkpoint.pt"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "choose a command"),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, tmp_path, argv, message):
    code, _, err = run_main(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("fastgcn-denoise: error: "), err
    assert message in err and "Traceback" not in err


def test_train_then_evaluate(capsys, tmp_path, cli_data):
    data = cli_data
    out = tmp_path / "run"
    code, stdout, _ = run_main(
        capsys,
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--eval-every",
        "1",
        "--dim",
        "8",
        "--layers",
        "1",
        "--batch-size",
        "64",
        "--ks",
        "5,10",
        "--quiet",
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "Recall@5" in stdout and "most popular" in stdout
    assert f"{metrics['test']['recall@5']:10.4f}" in stdout
    # --resume takes the saved settings; only --epochs changes.
    code, stdout, _ = run_main(
        capsys, "train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"
    )
    assert code == 0 and "of 3" in stdout
    code, stdout, _ = run_main(
        capsys, "evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--split", "valid", "--json"
    )
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
    proc = subprocess.run(
        [sys.executable, "-m", "fastgcn_denoise", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastgcn-denoise {__version__}"


GRCN_OWN = {"--grcn-routing", "--grcn-fusion"}
GRCN = GRCN_OWN | {"--dim"}
SGCN = {"--beta", "--svd-rank", "--mask-lr"}
LIGHTGNN = {"--kd-triples", "--hops", "--teacher"}
L0SIGN = {"--edge-prediction", "--gate-temperature"}
LOOP = {"--model", "--data", "--epochs", "--lr", "--out", "--config", "--resume", "--help-all"}
PLUGINS = {"--mask", "--target-keep", "--dgr", "--dgr-alpha", "--holdout"}


@pytest.mark.parametrize(
    "argv,shown,hidden",
    [
        (["train", "--model", "grcn"], LOOP | GRCN | PLUGINS, SGCN | LIGHTGNN | L0SIGN),
        (["train", "--model=grcn", "--epochs", "3"], LOOP | GRCN, SGCN | LIGHTGNN),
        (["train", "--model", "s-lightgcn"], LOOP | SGCN | PLUGINS, LIGHTGNN | {"--grcn-routing"}),
        (["train", "--model", "l0-sign"], LOOP | L0SIGN, PLUGINS | SGCN | GRCN_OWN),  # no plug-ins
        (["denoise", "--model", "s-ngcf"], LOOP | SGCN | {"--threshold", "--checkpoint"}, GRCN_OWN),
        (["train"], LOOP | {"--dim", "--layers"} | PLUGINS, SGCN | LIGHTGNN | {"--grcn-routing"}),
        (["train", "--help-all"], LOOP | GRCN | SGCN | LIGHTGNN | L0SIGN | PLUGINS, set()),
        (["denoise", "--model", "grcn", "--help-all"], LOOP | GRCN | SGCN | LIGHTGNN, set()),
    ],
)
def test_help_shows_the_loop_and_one_models_flags(capsys, argv, shown, hidden):
    flags = flags_in(help_text(capsys, *argv, "--help"))
    assert shown <= flags, shown - flags
    assert not hidden & flags, hidden & flags


def test_help_without_model_lists_the_models_and_how_to_see_their_flags(capsys):
    from fastgcn_denoise.models import MODELS

    text = help_text(capsys, "train", "--help")
    flat = " ".join(text.split())
    for name, entry in MODELS.items():
        assert f"  {name} " in text and " ".join(entry.summary.split()) in flat, name
    assert "fastgcn-denoise train --model NAME --help shows a model's flags" in flat
    assert "lightgcn options (the default model)" in text
    # One model's view is much shorter than every flag's; it names the other models. (The
    # plug-ins' flags are in both views, a ranking model's and all: they set the floor.)
    grcn = help_text(capsys, "train", "--model", "grcn", "--help")
    every = help_text(capsys, "train", "--help-all")
    assert len(grcn.splitlines()) < 0.65 * len(every.splitlines())
    assert "Shown: the flags of --model grcn. Other models:" in " ".join(grcn.split())
    assert "(default: 64 for lightgcn; grcn: 64, l0-sign: 8," in " ".join(every.split())  # --dim


def test_help_follows_the_model_of_a_config_file(capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nmodel = "s-lightgcn"\n')
    flags = flags_in(help_text(capsys, "train", "--config", str(path), "--help"))
    assert SGCN <= flags and not GRCN_OWN & flags


def test_python_dash_m_shows_one_models_help():
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100")
    proc = subprocess.run(
        [sys.executable, "-m", "fastgcn_denoise", "train", "--model", "grcn", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    flags = flags_in(proc.stdout)
    assert GRCN <= flags and not (SGCN | LIGHTGNN) & flags


TRAIN = [
    "--epochs",
    "2",
    "--eval-every",
    "1",
    "--dim",
    "8",
    "--layers",
    "2",
    "--batch-size",
    "64",
    "--ks",
    "5,10",
    "--quiet",
]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [
            "--dgr",
            "--dgr-alpha",
            "0.1,0.5",
            "--lec-similar",
            "3",
            "--lec-marginal",
            "2",
            "--seed",
            "3",
        ],
    ],
)
def test_a_run_replays_from_its_config_toml(capsys, tmp_path, cli_data, extra):
    import tomllib

    first, again = tmp_path / "first", tmp_path / "again"
    code, _, err = run_main(
        capsys, "train", "--data", str(cli_data), "--out", str(first), *TRAIN, *extra
    )
    assert code == 0, err
    saved = tomllib.loads((first / "config.toml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["model"]["dim"] == 8
    assert saved["train"]["data"] == str(cli_data.resolve())
    assert ("dgr" in saved.get("plugins", {})) == bool(extra)
    code, _, err = run_main(
        capsys, "train", "--config", str(first / "config.toml"), "--out", str(again), "--quiet"
    )
    assert code == 0, err
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, again))
    assert (
        a["test"] == b["test"] and a["valid"] == b["valid"] and a["best_epoch"] == b["best_epoch"]
    )
    replayed = tomllib.loads((again / "config.toml").read_text())
    assert replayed["train"].pop("out") == str(again) and saved["train"].pop("out") == str(first)
    assert replayed == saved


def test_config_file_with_flags_over_it(capsys, tmp_path, cli_data):
    import tomllib

    path = tmp_path / "run.toml"
    path.write_text(
        f'# a hand-written run\n[train]\nmodel = "ngcf"\ndata = "{cli_data}"\n'
        "epochs = 3\neval_every = 1\nbatch_size = 64\nks = [5]\nlr = 0.01\n\n"
        "[model]\ndim = 8\nlayers = 1\n\n[plugins.holdout]\n"
    )
    out = tmp_path / "o"
    code, _, err = run_main(
        capsys,
        "train",
        "--config",
        str(path),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--dim",
        "4",
        "--quiet",
    )
    assert code == 0, err
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert cfg["train"]["model"] == "ngcf" and cfg["train"]["lr"] == 0.01  # from the file
    assert cfg["train"]["epochs"] == 1 and cfg["model"]["dim"] == 4  # the flags over it
    assert cfg["model"]["layers"] == 1 and cfg["plugins"] == {"holdout": {}}
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1


@pytest.mark.parametrize(
    "text,extra,message",
    [
        (
            "[train]\nepoch = 3\n",
            [],
            "run.toml: unknown key 'epoch' in [train] (did you mean 'epochs'?)",
        ),
        (
            "epochs = 3\n",
            [],
            "run.toml: unknown key 'epochs' at the top level; a run file has the "
            + "tables [train], [model] and [plugins.NAME]",
        ),
        (
            '[train]\nmodel = "lightgcn"\n[model]\nbeta = 0.1\n',
            [],
            "run.toml: [model] beta is not an option of lightgcn (it is an option of s-lightgcn, s-ngcf)",
        ),
        (
            "[model]\ngrcn_routing = 2\n",
            ["--model", "ngcf"],
            "run.toml: [model] grcn_routing is not an option of ngcf (it is an option of grcn)",
        ),
        ("[model]\nwidth = 2\n", [], "run.toml: unknown key 'width' in [model]"),
        ("[plugins.nope]\n", [], "run.toml: unknown plug-in [plugins.nope]; the plug-ins: dgr, "),
        (
            "[plugins.mask]\ndgr_alpha = [1.0]\n",
            [],
            "run.toml: unknown key 'dgr_alpha' in [plugins.mask]",
        ),
        ('[train]\nepochs = "two"\n', [], "run.toml [train]: epochs = 'two': must be an integer"),
        ('[train]\nmodel = "mf"\n', [], "run.toml [train]: model = 'mf': choose one of"),
        ("[train\n", [], "run.toml: not valid TOML"),
        ("", ["--resume"], "--config and --resume do not go together"),
    ],
)
def test_config_file_errors_name_the_key_and_the_file(capsys, tmp_path, text, extra, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    code, _, err = run_main(
        capsys, "train", "--config", str(path), "--out", str(tmp_path / "o"), *extra
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_config_file_missing(capsys, tmp_path):
    code, _, err = run_main(capsys, "train", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "none.toml: no such file" in err


# ---------------------------------------------------------------------- issue 28: trust
def _tiny(tmp_path):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=50, num_items=40, dim=4, avg_degree=8, seed=2), data)
    return data


TINY_FLAGS = [
    "--epochs",
    "1",
    "--dim",
    "8",
    "--layers",
    "1",
    "--batch-size",
    "64",
    "--ks",
    "5",
    "--quiet",
]


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["train", "--seed", "4294967296", "--out", "{tmp}/o"],
            "argument --seed: expected an integer >= 0 and <= 4294967295, got 4294967296",
        ),
        (
            ["train", "--seed", "-1", "--out", "{tmp}/o"],
            "argument --seed: expected an integer >= 0",
        ),
        (["train", "--data", "{data}", "--out", "{tmp}/file"], "is a file, not a directory"),
        (
            ["train", "--data", "{data}", "--out", "{tmp}/file/run"],
            "file is a file, not a directory",
        ),
        (
            ["train", "--data", "{data}", "--out", "{tmp}/done"],
            (
                "already holds a run (checkpoint.pt, log.jsonl or metrics.json): continue it with "
                "--resume, or replace it with --overwrite"
            ),
        ),
        (
            ["denoise", "--model", "l0-sign", "--data", "{data}", "--out", "{tmp}/dn"],
            (
                "--model l0-sign is a classification model: denoise scores the interactions of a "
                "ranking denoiser"
            ),
        ),
    ],
)
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
    code, _, _ = run_main(
        capsys,
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--overwrite",
        *TINY_FLAGS,
        "--lr",
        "0.01",
    )
    assert code == 0 and json.loads((out / "metrics.json").read_text())["config"]["lr"] == 0.01


def test_resume_writes_where_the_checkpoint_was_read_never_where_it_says(
    capsys, tmp_path, monkeypatch
):
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
    assert (
        run_main(capsys, "train", "--mask", "--data", str(data), "--out", str(run), *TINY_FLAGS)[0]
        == 0
    )
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        code, _, err = run_main(capsys, "denoise", "--checkpoint", str(run), "--out", str(out))
        assert code == 2 and err.count("\n") == 1 and str(tmp_path / "file") in err, err


def test_user_and_item_columns_by_flag(tmp_path, capsys):
    # The header names the columns in another order, with a column between them: the flags pick
    # them by name or by 0-based position.
    rows = ["uid,score,iid"] + [f"{u},1,{(u * 7 + k) % 13}" for u in range(12) for k in range(6)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run_main(
        capsys,
        "train",
        "--data",
        str(tmp_path / "log.csv"),
        "--user-col",
        "uid",
        "--item-col",
        "2",
        "--epochs",
        "1",
        "--dim",
        "4",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert code == 0, err
    info = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert (info["users"], info["items"]) == (12, 13)
    code, _, err = run_main(
        capsys,
        "train",
        "--data",
        str(tmp_path / "log.csv"),
        "--item-col",
        "nope",
        "--out",
        str(tmp_path / "run2"),
    )
    assert code == 2 and "no column 'nope'" in err and err.count("\n") == 1, err
