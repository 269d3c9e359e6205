"""Checkpoint files. A checkpoint directory holds:

- ``state.pt``: nets, optimisers, schedulers, step, rank 0's RNG states, the config (JSON) and the method name;
- ``rng_rank{r}.pt``: every other rank's RNG states (Ray merges the ranks' files into one checkpoint directory);
- ``model.pt``: only the inference nets plus the config, what ``raytrain denoise`` and ``eval`` need;
- ``meta.json``: the step, method, metrics and config in plain text, for people (and for the launcher's re-run
  check, which reads the config here rather than unpickling the full state).

Checkpoints are read from any location (:mod:`raytrain.locations`): a local folder, one every node mounts, or a URI of
Ray's storage (``s3://bucket/runs/NAME/checkpoint_...``), never through a ``Path`` of Ray's ``Checkpoint.path``.

Files are written to a temporary name and renamed, so a crash never leaves half a file; everything loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from raytrain import locations
from raytrain.errors import RaytrainError
from raytrain.files import atomic_save, atomic_write_text, load_torch

STATE, MODEL, META = "state.pt", "model.pt", "meta.json"
FORMAT = 1


def capture_rng() -> dict:
    """torch, numpy's global and python's RNG states in types ``weights_only`` loading accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, method, step: int, config_json: str, metrics: dict[str, float]) -> None:
    """Rank 0's part of a checkpoint: full state, inference weights and meta."""
    d = Path(directory)
    state = {"format": FORMAT, "method": method.name, "step": step, "config": config_json,
             "rng": capture_rng(), **method.state_dict()}  # fmt: skip
    atomic_save(state, d / STATE)
    export_inference(d / MODEL, method, config_json, metrics)
    meta = {"method": method.name, "step": step, "metrics": {k: float(v) for k, v in metrics.items()},
            "config": json.loads(config_json)}  # fmt: skip
    atomic_write_text(json.dumps(meta, indent=2), d / META)


def save_rank_rng(directory: str | Path, rank: int) -> None:
    atomic_save(capture_rng(), Path(directory) / f"rng_rank{rank}.pt")


def export_inference(path: str | Path, method, config_json: str, metrics: dict[str, float] | None = None) -> None:
    """The inference nets with the config and the metrics of the step they come from (synthesis reads the noise
    model's content floor there)."""
    atomic_save({"format": FORMAT, "kind": "inference", "method": method.name, "config": config_json,
                 "nets": method.inference_state(), "metrics": {k: float(v) for k, v in (metrics or {}).items()}},
                path)  # fmt: skip


def _load(path: str | Path) -> dict:
    obj = load_torch(path, "a raytrain checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "method" not in obj:
        raise RaytrainError(f"{locations.display(path)}: not a raytrain checkpoint (no format/method fields)")
    return obj


def load_state(directory: str | Path) -> dict:
    """The full training state of a checkpoint folder: a local one, or one at a URI (``s3://...``)."""
    if not locations.is_file(locations.join(directory, STATE)):
        raise RaytrainError(f"{locations.display(directory)}: no {STATE} here; expected a raytrain checkpoint "
                            "directory")  # fmt: skip
    return _load(locations.join(directory, STATE))


def checkpoint_dirs(folder: str | Path, holding: str = STATE) -> list[str]:
    """The checkpoint folders (``checkpoint_*`` holding ``holding``) of a run's storage folder, oldest first: Ray
    names them by their time."""
    names = [n for n, is_dir in locations.list_dir(folder) if is_dir and n.startswith("checkpoint_")]
    dirs = [locations.join(folder, n) for n in sorted(names)]
    return [d for d in dirs if locations.is_file(locations.join(d, holding))]


def stored_run(folder: str | Path) -> tuple[str, int, dict] | None:
    """The newest checkpoint a run left in its Ray storage folder (``storage_path/name``, local or a URI): its
    location, step and config (from ``meta.json``; ``state.pt`` for checkpoints written before the config was
    there), or None."""
    dirs = checkpoint_dirs(folder)
    if not dirs:
        return None
    d = dirs[-1]
    try:
        meta = json.loads(locations.read_bytes(locations.join(d, META)))
        return d, int(meta["step"]), meta["config"]
    except (RaytrainError, ValueError, KeyError, TypeError):
        state = load_state(d)
        return d, int(state["step"]), json.loads(state["config"])


def best_metric(cfg) -> tuple[str, str] | None:
    """(metric, "min" | "max") that ``train.keep_best`` ranks checkpoints by, or None ("last": the newest)."""
    spec = cfg.train.keep_best
    if spec == "last":
        return None
    if spec == "auto":
        from raytrain.methods import method_class

        key, _, mode = method_class(cfg.method.name).headline
        return f"val_{key}", mode
    metric, _, mode = spec.partition(":")
    return metric, mode or ("max" if ("psnr" in metric or "ssim" in metric) else "min")


def pick_best(candidates: list[tuple[object, dict]], rank: tuple[str, str] | None):
    """The best of (checkpoint, its metrics) pairs by ``rank`` (metric, mode), among those that report a finite value
    of it; the newest (last) when ``rank`` is None or none does. Returns (checkpoint, its metrics) or None."""
    if not candidates:
        return None
    if rank is not None:
        metric, mode = rank
        scored = [(c, m) for c, m in candidates if np.isfinite(float((m or {}).get(metric, float("nan"))))]
        if scored:
            pick = max if mode == "max" else min
            return pick(scored, key=lambda cm: float(cm[1][metric]))
    return candidates[-1]


def describe_pick(metrics: dict | None, rank: tuple[str, str] | None) -> str:
    """How a checkpoint was picked, for the line and the tag that name it: "best val_kld 0.029 at step 250" (or
    "last, step 900")."""
    m = metrics or {}
    step = m.get("step", "?")
    step = int(step) if isinstance(step, (int, float)) else step
    if rank is not None and rank[0] in m:
        return f"best {rank[0]} {float(m[rank[0]]):.4g} at step {step}"
    return f"last, step {step}"


def best_dir(folder: str | Path) -> str | None:
    """The checkpoint folder of a run's storage folder that the run's ``train.keep_best`` picks (from each one's
    ``meta.json``), None when it has none."""
    dirs = checkpoint_dirs(folder, MODEL)
    if not dirs:
        return None
    metas = []
    for d in dirs:
        try:
            metas.append((d, json.loads(locations.read_bytes(locations.join(d, META)))))
        except (RaytrainError, ValueError):
            metas.append((d, {}))
    rank = None
    try:
        from raytrain.config import validate

        rank = best_metric(validate(metas[-1][1]["config"], "checkpoint config"))
    except (RaytrainError, KeyError, TypeError, ValueError):
        pass  # a checkpoint without meta: the newest
    d, _ = pick_best([(d, {**m.get("metrics", {}), "step": m.get("step")}) for d, m in metas], rank)
    return d


def picked_in_folder(folder: str | Path) -> tuple[str | None, str | None, str]:
    """(the checkpoint ``train.keep_best`` picks, the newest, how it was picked) among a run's stored checkpoints (a
    multi-worker Tune trial's TorchTrainer keeps them in its own folder, which Tune's result does not name)."""
    dirs = checkpoint_dirs(folder, MODEL)
    best = best_dir(folder)
    if best is None:
        return None, None, ""
    try:
        meta = json.loads(locations.read_bytes(locations.join(best, META)))
        from raytrain.config import validate

        how = describe_pick({**meta.get("metrics", {}), "step": meta.get("step")},
                            best_metric(validate(meta["config"], "checkpoint config")))  # fmt: skip
    except (RaytrainError, ValueError, KeyError, TypeError):
        how = ""
    return best, dirs[-1], how


def load_rank_rng(directory: str | Path, rank: int) -> dict | None:
    p = locations.join(directory, f"rng_rank{rank}.pt")
    return load_torch(p, "a raytrain checkpoint's RNG states") if locations.is_file(p) else None


def find_inference_file(path: str | Path) -> str:
    """A checkpoint directory, a run's storage folder (the checkpoint its ``train.keep_best`` picks) or an exported
    ``model.pt``, local or at a URI (``s3://bucket/runs/NAME``): the location of its inference file."""
    if locations.is_file(path):
        return str(path)
    if locations.is_file(locations.join(path, MODEL)):
        return locations.join(path, MODEL)
    if locations.is_dir(path):
        best = best_dir(path)  # a run's folder: the checkpoint its train.keep_best picks (the newest for "last")
        if best:
            return locations.join(best, MODEL)
    raise RaytrainError(f"{locations.display(path)}: no raytrain checkpoint (expected a model.pt file, a checkpoint "
                        "folder or a run's folder of checkpoints)")  # fmt: skip


def load_inference(path: str | Path) -> dict:
    """The inference payload (method, config JSON, nets) of a checkpoint dir or ``model.pt``/``state.pt`` file."""
    f = find_inference_file(path)
    obj = _load(f)
    if obj.get("kind") != "inference":  # a full state.pt also works
        obj = {
            "method": obj["method"],
            "config": obj["config"],
            "nets": obj["nets"],
            "kind": "inference",
            "metrics": obj.get("metrics", {}),
        }
    return obj
