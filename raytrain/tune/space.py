"""Search spaces: ``search_spaces/*.yaml`` keyed by dotted config paths, checked against the method's typed config.

    method: senm                      # optional: the method the space is written for
    metric: val_kld                   # optional defaults for --metric / --mode
    mode: min
    params:
      method.kl_z_weight: {loguniform: [1.0e-7, 1.0e-6]}
      data.paired.fraction: {choice: [0.01, 0.1, 1.0]}
      method.bcm_weights.0: {uniform: [0.1, 1.0]}     # an element of a tuple field
      train.batch_size: {int: [8, 32]}
      seed: {grid: [0, 1, 2]}                          # grid: every value (ablate); a categorical under Optuna

Validation happens before any trial starts: every path must exist, both ends of every range (and every choice) must
be accepted by the typed config, so a range outside what the method allows is an error naming the key and value.
No Ray here: the conversion to Tune / Optuna objects is in :func:`to_tune`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raytrain.config import apply_overrides, load_yaml_file, validate
from raytrain.errors import ConfigError

KINDS = ("loguniform", "uniform", "int", "choice", "grid")


@dataclass(frozen=True)
class Param:
    path: str
    kind: str
    values: tuple  # (low, high) for ranges, the options for choice/grid

    def extremes(self) -> tuple:
        return self.values


@dataclass
class Space:
    params: dict[str, Param]
    metric: str | None = None
    mode: str | None = None
    method: str | None = None
    origin: str = "space"

    @property
    def grid(self) -> dict[str, Param]:
        return {k: p for k, p in self.params.items() if p.kind == "grid"}


def parse_param(path: str, spec: Any, origin: str) -> Param:
    where = f"{origin}: params.{path}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: expected one of {{{', '.join(KINDS)}: ...}} (got {spec!r})")
    kind, vals = next(iter(spec.items()))
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown distribution {kind!r} (known: {', '.join(KINDS)})")
    if not isinstance(vals, list) or not vals:
        raise ConfigError(f"{where}: {kind} needs a list (got {vals!r})")
    if kind in ("choice", "grid"):
        return Param(path, kind, tuple(vals))
    if len(vals) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        raise ConfigError(f"{where}: {kind} needs [low, high] numbers (got {vals!r})")
    lo, hi = vals
    if lo > hi:
        raise ConfigError(f"{where}: low {lo} > high {hi}")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform needs low > 0 (got {lo})")
    if kind == "int" and (int(lo) != lo or int(hi) != hi):
        raise ConfigError(f"{where}: int bounds must be integers (got {vals!r})")
    return Param(path, kind, (int(lo), int(hi)) if kind == "int" else (float(lo), float(hi)))


def load_space(path: str | Path) -> Space:
    return parse_space(load_yaml_file(path, "search space file"), str(path))


def parse_space(raw: Any, origin: str = "space") -> Space:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping with a 'params' section")
    unknown = sorted(set(raw) - {"params", "metric", "mode", "method"})
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(unknown)} (known: params, metric, mode, method)")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{origin}: 'params' must map dotted config paths to distributions")
    mode = raw.get("mode")
    if mode is not None and mode not in ("min", "max"):
        raise ConfigError(f"{origin}: mode must be min or max (got {mode!r})")
    parsed = {k: parse_param(str(k), v, origin) for k, v in params.items()}
    return Space(parsed, raw.get("metric"), mode, raw.get("method"), origin)


def assign(raw: dict, values: dict[str, Any]) -> dict:
    """``raw`` with each dotted path set; a numeric last part indexes a tuple/list field (``method.bcm_weights.0``)
    whose other elements keep the config's current values (``defaults``: the validated config's own)."""
    out = copy.deepcopy(raw)
    plain, indexed = [], {}
    for path, val in values.items():
        head, _, last = path.rpartition(".")
        if last.isdigit() and head:
            indexed.setdefault(head, {})[int(last)] = val
        else:
            plain.append(f"{path}={_yaml_value(val)}")
    if indexed:
        full = validate(apply_overrides(out, []), "config").model_dump(mode="json")
        for head, items in indexed.items():
            node: Any = full
            for part in head.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"{head}: no such config key")
                node = node[part]
            if not isinstance(node, list) or max(items) >= len(node):
                raise ConfigError(f"{head}.{max(items)}: {head} is not a list with that index")
            seq = list(node)
            for i, v in items.items():
                seq[i] = v
            plain.append(f"{head}={_yaml_value(seq)}")
    return apply_overrides(out, plain)


def variants_of(method: str) -> dict[str, tuple[str, ...]]:
    """A method's named ablation variants (its papers' tables), as config overrides."""
    from raytrain.methods.registry import specs

    if method not in specs():
        raise ConfigError(f"method.name: unknown method {method!r} (known: {', '.join(specs())})")
    return specs()[method].variants


def trial_raw(base_raw: dict, params: dict[str, Any]) -> dict:
    """A trial's raw config: the searched values set, then its ``variant``'s switches (ablate) applied."""
    params = dict(params)
    variant = params.pop("variant", None)
    raw = assign(base_raw, params)
    if variant is not None:
        method = validate(raw, "config").method.name
        known = variants_of(method)
        if variant not in known:
            raise ConfigError(f"variant {variant!r} is unknown for {method} (known: {', '.join(known)})")
        raw = apply_overrides(raw, list(known[variant]))
    return raw


def _yaml_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def check_space(space: Space, base_raw: dict, origin: str = "config") -> None:
    """Every path exists and every end of every range is a value the typed config accepts; the method matches."""
    base = validate(base_raw, origin)
    if space.method and space.method != base.method.name:
        raise ConfigError(f"{space.origin}: written for method {space.method}, the config trains {base.method.name}")
    for p in space.params.values():
        for v in p.extremes():
            try:
                validate(trial_raw(base_raw, {p.path: v}), "x")
            except ConfigError as exc:
                msg = str(exc).split(": ", 1)[-1]
                raise ConfigError(
                    f"{space.origin}: params.{p.path} = {v!r} is not accepted by the config ({msg})"
                ) from None


def metrics_of(cfg) -> list[str]:
    """The validation metrics a run of ``cfg`` reports (what --metric may name)."""
    from raytrain.methods import method_class

    keys = method_class(cfg.method.name).val_keys
    return [f"val_{k}" for k in keys]


def check_metric(cfg, metrics: list[str], modes: list[str]) -> None:
    known = metrics_of(cfg)
    for m in metrics:
        if m not in known:
            raise ConfigError(f"metric {m!r} is never reported by {cfg.method.name} (it reports {', '.join(known)})")
    if len(modes) != len(metrics) or any(m not in ("min", "max") for m in modes):
        raise ConfigError(f"--mode needs one of min/max per metric (metrics {metrics}, modes {modes})")


def to_tune(space: Space, grid_as_search: bool) -> dict:
    """The Tune param space ({path: domain}). ``grid_as_search``: grid params become ``tune.grid_search`` (ablate);
    otherwise categorical (Optuna cannot enumerate grids)."""
    from ray import tune

    out = {}
    for k, p in space.params.items():
        if p.kind == "loguniform":
            out[k] = tune.loguniform(*p.values)
        elif p.kind == "uniform":
            out[k] = tune.uniform(*p.values)
        elif p.kind == "int":
            out[k] = tune.randint(p.values[0], p.values[1] + 1)
        elif p.kind == "grid" and grid_as_search:
            out[k] = tune.grid_search(list(p.values))
        else:
            out[k] = tune.choice(list(p.values))
    return out


def grid_size(space: Space) -> int:
    return math.prod(len(p.values) for p in space.grid.values()) if space.grid else 1
