"""DGR quality runs: a backbone with or without the DGR plug-in, selected on validation.

    python -m bench.dgr_quality --model lightgcn --dgr --data ../shared/data/yelp_lightgnn \
        --epochs 300 --out runs/q/lightgcn_dgr

Trains with BPR + Adam (the toolkit's defaults: d = 64, 3 layers, lr 1e-3, decay 1e-4, batch
2048), evaluates on validation every ``--eval-every`` epochs, stops after ``--patience``
evaluations without a better valid Recall@20, and tests the selected epoch once. Every model
gets the same budget and schedule. Writes ``<out>/log.jsonl`` (per epoch: each loss term, and
at evaluations the valid metrics and the over-smoothing measures of the final embeddings) and
``<out>/metrics.json`` (config, best epoch, valid and test metrics, row-diff / MAD of the
selected model, timings).

Interim driver: until the model-layer refactor lands on main (``train --model simgcl --dgr``),
this runs the backbones written against its interface (``models/_plugged.py``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from fastgcn_denoise.data import sample_bpr
from fastgcn_denoise.eval import evaluate_model
from fastgcn_denoise.models._plugged import Batch, PluggedLightGCN
from fastgcn_denoise.models.dgr import DGR, DGRConfig
from fastgcn_denoise.models.simgcl import SimGCL
from fastgcn_denoise.models.xsimgcl import XSimGCL
from fastgcn_denoise.oversmoothing import smoothness_metrics
from fastgcn_denoise.train import TrainConfig, _seed_everything, build_optimizer, prepare_data

from .common import environment

BACKBONES = {"lightgcn": PluggedLightGCN, "simgcl": SimGCL, "xsimgcl": XSimGCL}
KS = (20, 50, 100)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.dgr_quality", description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=list(BACKBONES), default="lightgcn")
    ap.add_argument("--dgr", action="store_true", help="add the DGR plug-in")
    ap.add_argument("--data", default="../shared/data/yelp_lightgnn")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--decay", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone-arg", action="append", default=[], metavar="NAME=VALUE",
                    help="a backbone constructor argument (e.g. cl_weight=0.5), repeatable")
    for f in dataclasses.fields(DGRConfig):  # the plug-in's flags from its dataclass
        flag, help_ = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if f.type == "bool":
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                            help=help_)
        elif f.type == "tuple":
            ap.add_argument(flag, type=float, nargs="+", default=list(f.default), help=help_)
        else:
            kind = {"int": int, "int | None": int, "float": float, "str": str}[f.type]
            ap.add_argument(flag, type=kind, default=f.default, help=help_)
    return ap.parse_args(argv)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build(args, prep):
    kwargs = dict(dim=args.dim, num_layers=args.layers, decay=args.decay)
    kwargs.update({k: _value(v) for k, v in (a.split("=", 1) for a in args.backbone_arg)})
    plugins = []
    dgr_config = None
    if args.dgr:
        dgr_config = DGRConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DGRConfig)})
        dgr_config.dgr_alpha = tuple(dgr_config.dgr_alpha)
        plugins.append(DGR(dgr_config, prep.train, args.layers))
    model = BACKBONES[args.model](prep.data.num_users, prep.data.num_items, plugins=plugins, **kwargs)
    return model, dgr_config, kwargs


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(data=args.data, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                         decay=args.decay, dim=args.dim, layers=args.layers, device=args.device,
                         progress=False)
    _seed_everything(args.seed)
    prep = prepare_data(config)
    t0 = time.perf_counter()
    model, dgr_config, kwargs = build(args, prep)
    model.to(torch.device(args.device))
    setup_s = time.perf_counter() - t0
    optimizer = build_optimizer(model, config)
    sampler = torch.Generator().manual_seed(args.seed)
    graph = prep.train
    steps = math.ceil(graph.num_edges / args.batch_size)
    print(f"{args.model}{' + DGR' if args.dgr else ''} on {prep.info}: {steps} steps/epoch "
          f"(setup {setup_s:.1f} s)", flush=True)
    best, best_state, since_best, history = None, None, 0, []
    train_s = eval_s = 0.0
    log = open(out / "log.jsonl", "w")
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        users, pos, neg = sample_bpr(graph, graph.num_edges, sampler)
        sums = {}
        for s in range(steps):
            sl = slice(s * args.batch_size, (s + 1) * args.batch_size)
            terms = model.loss(graph, Batch(users[sl], pos[sl], neg[sl]))
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * users[sl].shape[0]
        record = {"epoch": epoch, **{k: v / graph.num_edges for k, v in sums.items()},
                  "seconds": time.perf_counter() - t0}
        train_s += record["seconds"]
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"epoch {epoch}: loss {record['loss']}")
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            t1 = time.perf_counter()
            metrics = evaluate_model(model, graph, prep.valid, [graph], KS, 512)
            with torch.no_grad():
                model.eval()
                record["smoothness"] = smoothness_metrics(*model(graph))
            record["valid"] = metrics
            record["eval_seconds"] = time.perf_counter() - t1
            eval_s += record["eval_seconds"]
            if best is None or metrics["recall@20"] > best["valid"]["recall@20"]:
                best = {"epoch": epoch, "valid": metrics, "smoothness": record["smoothness"]}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                since_best = 0
            else:
                since_best += 1
            print(f"epoch {epoch:4d} loss {record['loss']:.4f} valid recall@20 "
                  f"{metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f} row_diff "
                  f"{record['smoothness']['row_diff']:.3f} ({record['seconds']:.1f} s/epoch, best "
                  f"{best['epoch']})", flush=True)
        history.append(record)
        log.write(json.dumps(record) + "\n")
        log.flush()
        if since_best >= args.patience:
            print(f"early stop after epoch {epoch}", flush=True)
            break
    log.close()
    model.load_state_dict(best_state)
    test = evaluate_model(model, graph, prep.test, [graph, prep.valid], KS, 512)
    result = {
        "model": args.model, "dgr": args.dgr, "data": prep.info, "args": vars(args),
        "backbone_kwargs": kwargs,
        "dgr_config": dataclasses.asdict(dgr_config) if dgr_config else None,
        "best_epoch": best["epoch"], "epochs_run": history[-1]["epoch"],
        "valid": best["valid"], "test": test, "smoothness": best["smoothness"],
        "curve": [{"epoch": r["epoch"], "valid_recall@20": r["valid"]["recall@20"],
                   "row_diff": r["smoothness"]["row_diff"]} for r in history if "valid" in r],
        "timing": {"setup_seconds": setup_s, "train_seconds": train_s, "eval_seconds": eval_s,
                   "seconds_per_epoch": train_s / len(history),
                   "threads": torch.get_num_threads()},
        "environment": environment(args.device),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"test recall@20 {test['recall@20']:.4f} ndcg@20 {test['ndcg@20']:.4f} "
          f"(best epoch {best['epoch']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
