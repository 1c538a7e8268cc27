"""Self-describing configs: option checks, the dict round trip, and make_config's routing."""

from dataclasses import dataclass

import pytest

import fastgcn_denoise.denoisers  # noqa: F401  (registers the denoisers' models and plug-ins)
from fastgcn_denoise import config
from fastgcn_denoise.config import option
from fastgcn_denoise.models import MODELS, PLUGINS
from fastgcn_denoise.pipelines.train import TrainConfig, make_config


@dataclass
class Example:
    layers: int = option(3, "layers", min=0)
    rate: float = option(0.5, "a rate", min=0, max=1, max_open=True)
    mode: str = option("a", "mode", choices=("a", "b"))
    ks: tuple = option((20, 50), "cut-offs", min=1)
    names: tuple = option((), "names", item=str)
    lr: float = option(None, "optional lr", kind=float, min=0, min_open=True)
    flag: bool = option(False, "a switch")

    def check_rules(self):
        if self.mode == "b" and self.layers == 0:
            raise ValueError("example: mode b needs layers > 0")


@pytest.mark.parametrize(
    "values,message",
    [
        ({"layers": -1}, "layers = -1: must be >= 0"),
        ({"layers": 2.5}, "layers = 2.5: must be an integer"),
        ({"rate": 1.0}, "rate = 1.0: must be >= 0 and < 1"),
        ({"rate": float("nan")}, "must be finite"),
        ({"mode": "c"}, "mode = 'c': choose one of a, b"),
        ({"ks": (5, 0)}, "ks = 0: must be >= 1"),
        ({"ks": ()}, "must not be empty"),
        ({"ks": "20"}, "must be a sequence of int"),
        ({"lr": 0.0}, "lr = 0.0: must be > 0"),
        ({"flag": 1}, "must be true or false"),
        ({"mode": "b", "layers": 0}, "mode b needs layers > 0"),
        ({"depth": 3}, "unknown option(s) depth; known:"),
    ],
)
def test_checks_name_the_field(values, message):
    with pytest.raises(ValueError, match=None) as exc:
        config.from_dict(Example, values, "example")
    assert message in str(exc.value)


def test_normalises_and_round_trips():
    ex = config.from_dict(Example, {"layers": 2.0, "rate": 0, "ks": [5, 10], "names": []})
    assert ex.layers == 2 and isinstance(ex.layers, int) and ex.rate == 0.0
    assert ex.ks == (5, 10) and ex.names == () and ex.lr is None
    assert config.from_dict(Example, config.to_dict(ex)) == ex


@pytest.mark.parametrize(
    "text,field,value",
    [
        ("7", "layers", 7),
        ("1e-3", "rate", 1e-3),
        ("5,10,20", "ks", (5, 10, 20)),
        ("none", "lr", None),
        ("yes", "flag", True),
        ("", "names", ()),
        ("a,b", "names", ("a", "b")),
    ],
)
def test_parse_text(text, field, value):
    meta = {f.name: f.metadata for f in config.fields(Example)}[field]
    assert config.parse_text(text, meta) == value


def test_make_config_routes_options_and_fills_defaults():
    cfg = make_config("s-lightgcn", dim=8, lr=0.01, beta=0.1, mask_lr=0.05)
    assert cfg.lr == 0.01 and cfg.model_config["dim"] == 8 and cfg.model_config["beta"] == 0.1
    assert cfg.model_config["gamma"] == 0.001  # a default filled in
    assert cfg.model_options().mask_lr == 0.05
    with pytest.raises(ValueError, match="unknown option 'beta' for model 'lightgcn'"):
        make_config("lightgcn", beta=0.1)
    with pytest.raises(ValueError, match="unknown model 'mf'"):
        make_config("mf")
    with pytest.raises(ValueError, match="model lightgcn: dim = 0: must be >= 1"):
        make_config("lightgcn", dim=0)
    with pytest.raises(ValueError, match="unknown plug-in 'nope'"):
        make_config("lightgcn", plugins=("nope",))


def test_every_registered_model_has_a_checked_default_config():
    for name, entry in MODELS.items():
        assert entry.summary and entry.task in ("ranking", "classification"), name
        try:
            cfg = config.check(entry.config(), name)
        except ValueError as e:  # e.g. LightGNN's later stages need the run they build on
            assert "is required" in str(e) and name.startswith("lightgnn-"), (name, e)
            cfg = entry.config()
        for f in config.fields(cfg):
            assert f.metadata["help"], (name, f.name)
    TrainConfig().validate()


# ---------------------------------------------------------------------- TOML run files
@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        2**40,
        0.1 + 0.2,
        1e-5,
        -2.5e300,
        5e-324,
        True,
        False,
        "",
        "plain",
        'quote " and \\',
        "tab\tnew\nline\x01\x7f",
        "ünïcode ✓",
        [],
        (5, 10),
        ["a", "b"],
        [0.1, 1e-3],
        [[1, 2], [3]],
    ],
)
def test_toml_writer_round_trips_through_tomllib(value):
    import tomllib

    text = config.to_toml({"t": {"key": value, "weird key.x": 1}})
    read = tomllib.loads(text)["t"]
    expect = (
        [list(v) if isinstance(v, tuple) else v for v in value]
        if isinstance(value, (list, tuple))
        else value
    )
    assert read == {"key": expect, "weird key.x": 1} and type(read["key"]) is type(expect)


def test_toml_writer_comments_none_and_nests_dotted_tables():
    import tomllib

    text = config.to_toml(
        {"train": {"a": None, "b": 1}, "plugins.mask": {}, "plugins.dgr": {"z": 2}},
        header="line one\nline two",
    )
    assert text.startswith("# line one\n# line two\n") and "# a: not set" in text
    assert tomllib.loads(text) == {"train": {"b": 1}, "plugins": {"mask": {}, "dgr": {"z": 2}}}
    with pytest.raises(TypeError, match=r"train.c = \{'x': 1\}: a run file holds"):
        config.to_toml({"train": {"c": {"x": 1}}})


def test_run_file_round_trips_a_train_config(tmp_path):
    cfg = make_config(
        "s-lightgcn",
        plugins={"dgr": {"dgr_alpha": (0.1, 0.5)}},
        dim=8,
        beta=0.25,
        ks=(5, 10),
        lr=3e-4,
        data="synthetic",
    )
    path = tmp_path / "config.toml"
    config.save_run_file(path, cfg)
    train, model, plugins = config.read_run_file(path)
    assert "data" not in train and train["model"] == "s-lightgcn"  # None: left to its default
    again = TrainConfig(model_config=model, plugins=plugins, **train).validate()
    assert again == cfg and again.ks == (5, 10) and again.lr == 3e-4


@pytest.mark.parametrize(
    "text,message",
    [
        ("[train\n", "run.toml: not valid TOML"),
        ("x = 1\n", "run.toml: unknown key 'x' at the top level"),
        ("[data]\nx = 1\n", "run.toml: unknown key 'data' at the top level"),
        ("[plugins]\nmask = 1\n", "run.toml: plugins.mask must be a table [plugins.mask]"),
    ],
)
def test_run_file_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as exc:
        config.read_run_file(path)
    assert message in str(exc.value)
    with pytest.raises(FileNotFoundError, match="nothing.toml: no such file"):
        config.read_run_file(tmp_path / "nothing.toml")


@pytest.mark.parametrize(
    "kind,name",
    [("model", n) for n in sorted(MODELS)]
    + [("plug-in", n) for n in sorted(PLUGINS)]
    + [("loop", "train")],
)
def test_every_models_and_plugins_defaults_fit_a_run_file(kind, name):
    import tomllib

    cls = (
        {"model": MODELS, "plug-in": PLUGINS}[kind][name].config if kind != "loop" else TrainConfig
    )
    # A run file leaves None out (TOML has no null): replaying is exact only if None is the
    # default wherever it is allowed.
    assert all(f.default is None for f in config.fields(cls) if f.metadata["none_ok"])
    values = config.to_dict(cls())
    read = tomllib.loads(config.to_toml({"t": values}))["t"]
    assert read == {
        k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None
    }
    meta = {f.name: f.metadata for f in config.fields(cls)}
    assert {k: config.check_value(k, v, meta[k], name) for k, v in read.items()} == {
        k: v for k, v in values.items() if v is not None
    }
