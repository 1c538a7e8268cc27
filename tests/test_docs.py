"""The README and the docs' generated tables: the README starts with the set-up commands, its
Python example (and the ops page's) runs, its links resolve, and the tables fail loudly when
their result files do not say what they claim (docs/gen_tables.py). The Sphinx build itself is
`make docs` (CI)."""

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def gen_tables():
    spec = importlib.util.spec_from_file_location("gen_tables", ROOT / "docs" / "gen_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_tables"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gen_tables"]


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_starts_with_the_two_setup_commands_and_stays_short():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    first = text.split("```", 2)
    assert first[0].strip() == "# fastgcn_denoise"  # nothing but the title before the commands
    commands = [line.split("#")[0].strip() for line in _code_blocks(text, "bash")[0].splitlines()]
    assert commands == ["make demo", "make test"]
    assert not re.search(r"\bissue \d+|#\d+\b", text), "no issue numbers in the README"


def test_readme_links_point_to_files_that_exist():
    targets = re.findall(r"\]\(([^)#]+)\)", README.read_text())
    assert any(t.startswith("docs/") for t in targets)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).is_file()]
    assert not missing


def test_readme_python_example_runs(tmp_path):
    example = _code_blocks(README.read_text(), "python")[0]
    assert len(example.splitlines()) <= 12
    # The same calls on a one-epoch budget (the README's 30 epochs take minutes), in tmp_path.
    short = example.replace("epochs=30", "epochs=1")
    assert short != example
    (tmp_path / "example.py").write_text(short)
    run = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "noise found with ROC AUC" in run.stdout
    summary = json.loads((tmp_path / "runs" / "example-clean" / "denoise.json").read_text())
    assert 0.0 <= summary["planted_noise"]["roc_auc"] <= 1.0
    assert (tmp_path / "runs" / "example" / "metrics.json").is_file()


def test_ops_page_example_runs(tmp_path):
    example = _code_blocks((ROOT / "docs" / "ops.md").read_text(), "python")[0]
    (tmp_path / "example.py").write_text(example)
    run = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_every_table_and_the_readme_figures_come_from_bench_results(gen_tables, tmp_path):
    written = gen_tables.generate(out=tmp_path)
    assert {p.stem for p in written} == {t.name for t in gen_tables.TABLES}
    for path, table in zip(written, gen_tables.TABLES):
        text = path.read_text()
        assert f"bench/results/{table.source}" in text
        rows = [line for line in text.splitlines() if line.startswith("| ")]
        assert len(rows) >= 2  # the header and at least one row
    gen_tables.readme_figures()  # README.md's block is what the JSON says


def test_a_missing_result_file_fails_loudly(gen_tables, tmp_path):
    table = dataclasses.replace(gen_tables.TABLES[0], source="no_such_result.json")
    with pytest.raises(gen_tables.TableError, match="no_such_result.json is missing"):
        gen_tables.generate([table], out=tmp_path)
    assert not list(tmp_path.glob("*.md"))  # nothing written when one table fails


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cols": (("renamed field", "no_such_field", "f4"),)}, "is in no row"),
        ({"where": {"denoiser": "no_such_denoiser"}}, "no row matches"),
        ({"rows": "no_such_rows"}, "no 'no_such_rows'"),
        ({"pages": ("getting-started.md",)}, "does not include"),
    ],
)
def test_a_table_that_does_not_match_its_file_fails_loudly(gen_tables, tmp_path, change, message):
    if "cols" in change:
        change = {"cols": tuple(gen_tables.Col(*c) for c in change["cols"])}
    table = dataclasses.replace(gen_tables.TABLES[0], **change)
    with pytest.raises(gen_tables.TableError, match=message):
        gen_tables.generate([table], out=tmp_path)


def test_a_stale_readme_figure_fails_loudly(gen_tables, tmp_path):
    stale = tmp_path / "README.md"
    end = gen_tables.FIGURES_END
    stale.write_text(README.read_text().replace(end, "| a figure typed by hand | 1 | | |\n" + end))
    with pytest.raises(gen_tables.TableError, match="differ from bench/results"):
        gen_tables.readme_figures(stale)
    gen_tables.readme_figures(stale, write=True)
    gen_tables.readme_figures(stale)
