"""Training checkpoints on disk: the format tag, an atomic save, a checked, safe load.

A checkpoint is a dict (``format``, the run's config, model and optimiser state, ...) written by
the trainer (``pipelines/train.py``); models that start from another run's weights (LightGNN's
stages) read it through ``load_checkpoint`` too, so it sits on the floor below them.

It holds only tensors, dicts, lists, tuples, strings, numbers, booleans and None, so it loads with
``torch.load(..., weights_only=True)``: unpickling a file never runs code from it (a crafted
``checkpoint.pt`` whose pickle names any other callable is refused before anything is built).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

CHECKPOINT_FORMAT = "fastgcn_denoise.checkpoint/2"


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file: a killed run never leaves a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
    except BaseException:  # Ctrl-C or a full disk mid-write: no half-written .tmp left behind
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by ``train`` (on CPU); ValueError saying what is wrong.

    ``path`` may be the run directory (its ``checkpoint.pt`` is read).
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "checkpoint.pt").is_file():
            raise ValueError(
                f"checkpoint {str(path)!r} is a directory without a checkpoint.pt "
                "(give a run's --out directory or its checkpoint.pt)"
            )
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise ValueError(
                f"checkpoint {str(path)!r} cannot be read: it is truncated or "
                f"corrupt ({exc}); re-run the training or pass another "
                "checkpoint"
            ) from None
        # torch's message is a page long (and suggests allow-listing); "GLOBAL x.y" names it.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise ValueError(
            f"checkpoint {str(path)!r} refused: it holds Python objects that could "
            "run code when loaded" + (f" ({found[1]})" if found else "") + "; a "
            "fastgcn_denoise checkpoint holds only tensors and plain data: pass one "
            "written by 'train'"
        ) from None
    except Exception as exc:  # noqa: BLE001  (torch raises many types for a corrupt file)
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read: it is truncated, corrupt or "
            f"not a PyTorch file ({type(exc).__name__}: {exc}); re-run the training "
            "or pass another checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith(
        "fastgcn_denoise.checkpoint/"
    ):
        raise ValueError(f"checkpoint {str(path)!r}: not a fastgcn_denoise training checkpoint")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {str(path)!r} was written by an older fastgcn_denoise "
            f"({ckpt['format']}; this version reads {CHECKPOINT_FORMAT}): re-train"
        )
    return ckpt
