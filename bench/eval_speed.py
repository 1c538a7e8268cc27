"""Time full-ranking evaluation (Recall/NDCG@20,50,100) of all Gowalla test users.

Random d=64 embeddings: the cost does not depend on the values. Run from the repository root:

    python bench/eval_speed.py [--device cpu|cuda] [--batch-users 512] [--repeat 1]

Writes bench/results/eval_speed_<device type>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import SHARED_DATA, environment, sync, write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-users", type=int, default=512,
                    help="users scored at once (default 512)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs, best reported (default 1)")
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args(argv)

    from fastgcn_denoise.data import load_lightgcn
    from fastgcn_denoise.eval import evaluate_embeddings

    path = SHARED_DATA / "gowalla"
    if not (path / "test.txt").exists():
        print(f"skipping: {path}/test.txt not found (set FASTGCN_SHARED_DATA)")
        return 0
    device = torch.device(args.device)
    data = load_lightgcn(path)
    train = data.train_graph().to(device)
    test = data.split_graph("test").to(device)
    gen = torch.Generator().manual_seed(0)
    user = (0.1 * torch.randn(data.num_users, args.dim, generator=gen)).to(device)
    item = (0.1 * torch.randn(data.num_items, args.dim, generator=gen)).to(device)

    def run():
        return evaluate_embeddings(user, item, test, [train], batch_users=args.batch_users)

    run_times = []
    for _ in range(args.repeat):
        sync(device)
        t0 = time.perf_counter()
        metrics = run()
        sync(device)
        run_times.append(time.perf_counter() - t0)
    payload = {**environment(device), "benchmark": "full-ranking evaluation, Gowalla test users",
               "users": metrics["users"], "items": data.num_items, "dim": args.dim,
               "ks": [20, 50, 100], "batch_users": args.batch_users,
               "seconds": min(run_times), "all_seconds": run_times,
               "metrics_random_embeddings": metrics}
    out = write_json(f"eval_speed_{device.type}", payload)
    print(f"{metrics['users']} users x {data.num_items} items on {payload['device']}: "
          f"{min(run_times):.2f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
