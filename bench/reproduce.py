"""The reproduction table of issue 23: every seed method against its paper and the baseline it
must beat, one row per (method, data), written to ``bench/results/reproduction.json``:

    {"environment": {...}, "rows": [{"method", "data", "metric", "ours", "ours_std", "seeds",
     "epochs", "baseline", "baseline_value", "paper", "command", "status", ...}, ...]}

``ours`` and ``ours_std`` are the mean and the sample std (null below two seeds) over the seeds
done of the test metric of the validation-selected model; ``epochs`` the most epochs a seed ran;
``baseline_value`` the baseline row's mean over the seeds both rows have (all of the baseline's
when they share none); ``status`` is ``met`` / ``missed`` against the row's ``target`` (the
issue's bar), ``reported`` for a row without one, ``not run`` for a row with no result yet (it is
printed and written, never dropped) and ``running`` for one whose first seed has not finished.

Where the rows come from:

- The Yelp-split rows (``ROWS``): ``fastgcn-denoise train`` runs, one folder per seed,
  ``RUNS/<method>/seed<S>`` (``--runs``, default ``runs/reproduce``), read from their
  ``metrics.json``. ``most-popular`` is the popularity baseline every LightGCN run reports.
- ``lightgnn-student``: the three-stage pipeline's report, ``bench/results/lightgnn_yelp_cpu.json``.
- The GRCN and L0-SIGN rows: the files their studies write, ``bench/results/reproduction_grcn.json``
  and ``reproduction_l0sign.json`` (rows of the same shape, taken as they are); a missing file
  leaves its rows ``not run``.

    python -m bench.reproduce                 # collect, print, write the JSON
    python -m bench.reproduce --run simgcl    # train the row's seeds (resuming), then collect
    python -m bench.reproduce --run simgcl --device cuda   # the same on a GPU
    python -m bench.reproduce --list          # each row's exact command from a fresh clone

The commands run from the repository root with the shared data beside it (``../shared/data``,
or ``FASTGCN_SHARED_DATA``); a seed whose folder holds ``metrics.json`` is done and skipped, one
with only ``checkpoint.pt`` resumes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .common import RESULTS, ROOT, SHARED_DATA, environment, write_json

RUNS = ROOT / "runs" / "reproduce"
METRIC = "recall@20"
YELP = "yelp_lightgnn"
# The protocol for every Yelp row: <= 300 epochs, valid Recall@20 every 5 epochs (a row's
# ``eval_every``), stop after 5 evaluations without a better one, the selected epoch tested once.
TRAIN = (
    "python -m fastgcn_denoise train --data {data} --epochs 300 --eval-every {eval_every} "
    "--patience 5"
)
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Row:
    """One Yelp-split row trained by ``fastgcn-denoise train``.

    ``target``: "gain:F" (ours >= (1 + F) x baseline), "above" (ours > baseline), "paper"
    (ours >= paper) or None (reported beside the others, no bar). ``paper``: the paper's figure on
    this split (null where the paper has none; ``paper_note`` says what it reports instead).
    """

    method: str
    flags: str
    baseline: str | None = None
    target: str | None = None
    paper: float | None = None
    paper_note: str | None = None
    seeds: tuple[int, ...] = SEEDS
    eval_every: int = 5

    def command(self, seed, runs: str = "runs/reproduce", data: str = "../shared/data") -> str:
        train = TRAIN.format(data=f"{data}/{YELP}", eval_every=self.eval_every)
        return f"{train} {self.flags} --seed {seed} --out {runs}/{self.method}/seed{seed}"

    def fresh_clone_command(self) -> str:
        seeds = " ".join(map(str, self.seeds))
        return f"for s in {seeds}; do {self.command('$s')}; done"


ROWS = (
    Row(
        "lightgcn",
        "--model lightgcn",
        paper=0.0761,
        paper_note="LightGCN on this split in the LightGNN paper (Table 2)",
    ),
    Row(
        "lightgcn+dgr",
        "--model lightgcn --dgr",
        "lightgcn",
        "gain:0.02",
        paper_note="DGR paper: +2.9 % over LightGCN on its Yelp2018 split (0.0650 -> 0.0669)",
    ),
    Row(
        "lightgcn+dgr-paper",
        "--model lightgcn --dgr --dgr-self-loops --dgr-z degree_sum --dgr-alpha 0.1,1.1,0 "
        "--lec-pos-weight 1e-2 --lec-neg-weight 5e-6",
        "lightgcn",
        "gain:0.02",
        paper_note="DGR with the paper's GMP and the official ML-1M alpha and LEC weights (the "
        "defaults before issue 23)",
    ),
    # lambda 0.2, not SimGCL's Yelp2018 0.5: chosen on this split's validation Recall@20 (seed 0,
    # best epoch: 0.0886 at lambda 0.2 against 0.0761 at 0.5; the paper tunes lambda per data
    # set over {0.01, ..., 1}). DGR's SimGCL rows use the same backbone. Both are validated every
    # epoch: SimGCL + DGR peaks at epochs 6-7 and falls after (valid 0.0902 at 7, 0.0875 at 10,
    # seed 0), which a 5-epoch grid misses (test 0.0870 / 0.0850 / 0.0845 on seeds 0-2 at epochs
    # 10 / 5 / 5, against 0.0893 / 0.0884 / 0.0868 at 7 / 7 / 6); SimGCL alone peaks at 15-16.
    Row(
        "simgcl",
        "--model simgcl --cl-weight 0.2",
        "lightgcn",
        "above",
        paper_note="SimGCL paper: above LightGCN on Yelp2018 (0.0721 vs 0.0639, its split)",
        eval_every=1,
    ),
    Row(
        "simgcl+dgr",
        "--model simgcl --cl-weight 0.2 --dgr",
        "simgcl",
        "gain:0.02",
        paper_note="DGR paper: +4.2 % over SimGCL on its Yelp2018 split (0.0717 -> 0.0747)",
        eval_every=1,
    ),
    # The same two with SimGCL's own Yelp2018 lambda 0.5, the backbone as the DGR paper ran it.
    Row(
        "simgcl-l05",
        "--model simgcl",
        "lightgcn",
        paper_note="SimGCL with the authors' Yelp2018 setting, lambda 0.5 (reported)",
    ),
    Row(
        "simgcl+dgr-l05",
        "--model simgcl --dgr",
        "simgcl-l05",
        "gain:0.02",
        paper_note="DGR paper: +4.2 % over SimGCL on its Yelp2018 split (0.0717 -> 0.0747)",
    ),
    Row(
        "xsimgcl",
        "--model xsimgcl",
        "lightgcn",
        "above",
        paper_note="XSimGCL paper: above LightGCN on Yelp2018 (its split)",
    ),
    Row(
        "s-lightgcn",
        "--model s-lightgcn",
        "lightgcn",
        paper_note="SGCN paper: no Yelp figure; shown beside LightGCN",
    ),
)
# Rows of other files: (file under bench/results, the (method, data, metric) rows it should hold).
EXTERNAL = (
    ("reproduction_grcn.json", (("grcn", "tiktok", METRIC), ("most-popular", "tiktok", METRIC))),
    (
        "reproduction_l0sign.json",
        tuple(
            (m, d, "auc") for d in ("twitter", "dblp") for m in ("l0-sign", "sign", "naive-bayes")
        ),
    ),
)
LIGHTGNN = "lightgnn_yelp_cpu.json"
LIGHTGNN_PAPER = 0.0879


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def read_run(folder: Path) -> dict | None:
    """{"value", "epochs", "most_popular"} of a finished run folder; {"running": epoch,
    "valid_so_far": best valid Recall@20 or None} for one that has started (a log, no
    metrics.json); None for none."""
    metrics = folder / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        pop = m.get("baselines", {}).get("most_popular", {}).get("test", {}).get(METRIC)
        return {"value": m["test"][METRIC], "epochs": m["epochs_run"], "most_popular": pop}
    log = folder / "log.jsonl"
    if log.is_file():
        records = [json.loads(line) for line in log.read_text().splitlines() if line]
        valid = [r["valid"][METRIC] for r in records if "valid" in r]
        return {
            "running": records[-1]["epoch"] if records else 0,
            "valid_so_far": max(valid, default=None),
        }
    return None


def _status(ours, baseline_value, paper, target) -> str:
    if ours is None:
        return "not run"
    if target is None:
        return "reported"
    if target == "paper":
        ok = paper is not None and ours >= paper
    elif target == "above":
        ok = baseline_value is not None and ours > baseline_value
    elif target.startswith("gain:"):
        ok = baseline_value is not None and ours >= (1 + float(target[5:])) * baseline_value
    else:
        raise ValueError(f"bench/reproduce.py: unknown target {target!r} (gain:F, above, paper)")
    return "met" if ok else "missed"


def collect_yelp(runs: Path) -> list[dict]:
    """The ``ROWS`` (and Yelp's most-popular row) from their run folders under ``runs``."""
    per_seed = {
        row.method: {s: read_run(runs / row.method / f"seed{s}") for s in row.seeds} for row in ROWS
    }
    done = {
        m: {s: r for s, r in seeds.items() if r and "value" in r} for m, seeds in per_seed.items()
    }
    out = []
    for row in ROWS:
        mine = done[row.method]
        ours, std = _mean_std([r["value"] for r in mine.values()])
        base = done.get(row.baseline, {})
        shared = [s for s in mine if s in base] or list(base)
        base_value, _ = _mean_std([base[s]["value"] for s in shared])
        running = [r for r in per_seed[row.method].values() if r and "running" in r]
        status = _status(ours, base_value, row.paper, row.target)
        if ours is None and running:
            last = max(running, key=lambda r: r["running"])
            best = last["valid_so_far"]
            status = f"running (epoch {last['running']}" + (
                f", best valid {best:.4f})" if best is not None else ")"
            )
        out.append(
            {
                "method": row.method,
                "data": YELP,
                "metric": METRIC,
                "ours": ours,
                "ours_std": std,
                "seeds": len(mine),
                "epochs": max((r["epochs"] for r in mine.values()), default=None),
                "baseline": row.baseline,
                "baseline_value": base_value if row.baseline else None,
                "paper": row.paper,
                "command": row.fresh_clone_command(),
                "status": status,
                "target": row.target,
                "paper_note": row.paper_note,
                "seed_values": {str(s): r["value"] for s, r in mine.items()},
            }
        )
    # Every LightGCN run also ranks by popularity: Yelp's most-popular row, same seeds.
    pop, _ = _mean_std([r["most_popular"] for r in done["lightgcn"].values()])
    lightgcn = out[0]
    out.insert(
        1,
        {
            **dict.fromkeys(lightgcn),
            "method": "most-popular",
            "data": YELP,
            "metric": METRIC,
            "ours": pop,
            "seeds": lightgcn["seeds"],
            "epochs": 0,
            "command": lightgcn["command"] + "  # its metrics.json: baselines.most_popular",
            "status": "reported" if pop is not None else "not run",
            "paper_note": "every user's unseen items ranked by training popularity",
        },
    )
    return out


def collect_lightgnn(results: Path, lightgcn: dict) -> dict:
    """The LightGNN student row from the pipeline's report (``LIGHTGNN``)."""
    row = {
        "method": "lightgnn-student",
        "data": YELP,
        "metric": METRIC,
        "ours": None,
        "ours_std": None,
        "seeds": 0,
        "epochs": None,
        "baseline": "lightgcn",
        "baseline_value": lightgcn["ours"],
        "paper": LIGHTGNN_PAPER,
        "command": None,
        "status": "not run",
        "target": "paper",
        "paper_note": "LightGNN paper Table 2 at <= 77 % graph and <= 33 % embedding entries",
    }
    path = results / LIGHTGNN
    if not path.is_file():
        return row
    doc = json.loads(path.read_text())
    student = doc["table_test"]["student"]
    runs = doc["stages"]["student"]["runs"]
    row.update(
        ours=student[METRIC],
        seeds=1,
        epochs=sum(r["epochs_run"] for r in runs),
        command=doc.get("command"),
        kept=student.get("kept"),
        schedule=doc.get("note"),
    )
    row["status"] = _status(row["ours"], row["baseline_value"], LIGHTGNN_PAPER, "paper")
    return row


REQUIRED = (
    "method",
    "data",
    "metric",
    "ours",
    "ours_std",
    "seeds",
    "epochs",
    "baseline",
    "baseline_value",
    "paper",
)


def collect_external(results: Path) -> list[dict]:
    """The rows of the other studies' files (``EXTERNAL``), each expected pair present: a missing
    file or pair becomes a ``not run`` row; a row missing a field raises ValueError."""
    out = []
    for name, expected in EXTERNAL:
        path = results / name
        rows = json.loads(path.read_text())["rows"] if path.is_file() else []
        for i, r in enumerate(rows):
            missing = [k for k in REQUIRED if k not in r]
            if missing:
                raise ValueError(f"{path}: rows[{i}] has no {', '.join(missing)}")
            status = r.get("status") or _status(
                r["ours"], r["baseline_value"], r["paper"], "paper" if r["paper"] else None
            )
            beside = {k: v for k, v in (r.get("baselines") or {}).items() if k != r["method"]}
            if r["paper"] and beside:  # issue 23: the paper's figure and never below a baseline
                r = {**r, "target": "paper and " + " and ".join(sorted(beside))}
                if status == "met" and r["ours"] < max(beside.values()):
                    status = "missed"
            out.append({**r, "status": status, "source": name})
        have = {(r["method"], r["data"]) for r in rows}
        for method, data, metric in expected:
            if (method, data) not in have:
                out.append(
                    {
                        **dict.fromkeys(REQUIRED),
                        "method": method,
                        "data": data,
                        "metric": metric,
                        "seeds": 0,
                        "status": "not run",
                        "source": name,
                    }
                )
    return out


def collect(runs: Path = RUNS, results: Path | None = None) -> list[dict]:
    """Every row, in the issue's order: GRCN, L0-SIGN/SIGN, then the Yelp split (``results``:
    the other studies' files, default ``bench/results``)."""
    results = RESULTS if results is None else results
    yelp = collect_yelp(runs)
    lightgcn = next(r for r in yelp if r["method"] == "lightgcn")
    return collect_external(results) + yelp + [collect_lightgnn(results, lightgcn)]


def _fmt(v, digits=4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(rows: list[dict]) -> str:
    """The rows as an aligned text table."""
    head = (
        "method",
        "data",
        "metric",
        "ours",
        "std",
        "seeds",
        "epochs",
        "baseline",
        "base",
        "paper",
        "status",
    )
    body = [
        (
            r["method"],
            r["data"],
            r["metric"] or "-",
            _fmt(r["ours"]),
            _fmt(r["ours_std"]),
            _fmt(r["seeds"]),
            _fmt(r["epochs"]),
            r["baseline"] or "-",
            _fmt(r["baseline_value"]),
            _fmt(r["paper"]),
            r["status"],
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join(
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in (head, *body)
    )


def run_row(name: str, runs: Path, seeds=None, device: str | None = None) -> None:
    """Train ``name``'s seeds (a Yelp row: each seed's command, resuming a started one, on
    ``device`` if given; another study's row: its ``command`` as it is, from the repository
    root)."""
    row = next((r for r in ROWS if r.method == name), None)
    if row is None:
        external = [
            r for r in collect_external(RESULTS) if r["method"] == name and r.get("command")
        ]
        if not external:
            known = [r.method for r in ROWS] + sorted(
                {m for _, expected in EXTERNAL for m, _, _ in expected}
            )
            raise SystemExit(
                f"bench/reproduce.py: --run {name}: no row with a command "
                f"(rows: {', '.join(known)})"
            )
        for r in external:
            print(f"$ {r['command']}", flush=True)
            subprocess.run(r["command"], shell=True, cwd=ROOT, check=True)
        return
    for seed in seeds if seeds is not None else row.seeds:
        out = runs / row.method / f"seed{seed}"
        if (out / "metrics.json").is_file():
            print(f"{out}: done", flush=True)
            continue
        cmd = row.command(seed, str(runs), str(SHARED_DATA))
        cmd += f" --device {device}" if device else ""
        cmd += " --resume" if (out / "checkpoint.pt").is_file() else ""
        print(f"$ {cmd}", flush=True)
        argv = shlex.split(cmd)
        subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, check=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.reproduce", description=__doc__.split("\n")[0]
    )
    p.add_argument("--runs", type=Path, default=RUNS, help="the Yelp rows' run folders")
    p.add_argument("--run", metavar="METHOD", help="train this row's seeds first (resumable)")
    p.add_argument("--seeds", type=int, nargs="+", help="with --run: only these seeds")
    p.add_argument("--device", help="with --run: train the Yelp rows on this device (cuda)")
    p.add_argument("--list", action="store_true", help="print each row's command and exit")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of reproduction.json")
    args = p.parse_args(argv)
    if args.run:
        run_row(args.run, args.runs, args.seeds, args.device)
    rows = collect(args.runs)
    if args.list:
        for r in rows:
            print(f"{r['method']} ({r['data']}): {r.get('command') or 'no command yet'}")
        return 0
    print(table(rows))
    payload = {"environment": {**environment(), "runs": str(args.runs)}, "rows": rows}
    print(f"wrote {write_json('reproduction', payload, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
