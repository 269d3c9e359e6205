"""Loading a run config: YAML files (with ``extends``), ``--set`` overrides, validation with one-line
errors, weight-file checks, flattening for MLflow."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from raytrain.config.run import (
    DEFAULT_METHOD,
    RunConfig,
)
from raytrain.config.sections import DataConfig
from raytrain.errors import ConfigError
from raytrain.methods.registry import specs


def format_validation_error(err: ValidationError, origin: str) -> str:
    """One line naming each failing key: ``cfg.yaml: data.noise.sigma: Input should be >= 0 (got -5)``."""
    parts: dict[str, str] = {}
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not _is_branch_name(p))
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (got {got!r})"
        msg = e["msg"].replace(" found using get()", "").removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and (near := suggest(str(e["loc"][-1]))):
            msg += f" (did you mean {near!r}?)"
        parts.setdefault(loc or "<root>", f"{msg}{shown}")  # a union reports each branch: keep the first
    return f"{origin}: " + "; ".join(f"{k}: {v}" for k, v in parts.items())


def _field_names() -> set[str]:
    """Every key any config section has (the run's sections and every registered method's)."""
    from raytrain.config.sections import Strict

    seen, todo, names = set(), [Strict], set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        names.update(getattr(cls, "model_fields", {}))
        todo.extend(cls.__subclasses__())
    return names


def suggest(key: str) -> str | None:
    """The known config key closest to an unknown ``key`` (a typo), or None."""
    import difflib

    near = difflib.get_close_matches(key, sorted(_field_names()), n=1, cutoff=0.75)
    return near[0] if near else None


def _is_branch_name(part: Any) -> bool:
    """pydantic puts union branch names (tags, ``constrained-float``, ``tuple[...]``) into error locations."""
    return isinstance(part, str) and (
        part in _UNION_TAGS or "[" in part or part.startswith(("constrained-", "function-"))
    )


_UNION_TAGS = {"awgn", "poisson", "poisson_gaussian", "camera", *specs()}


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], yaml-parsed c)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.steps=100")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return path, value


def default_mix() -> dict[str, float]:
    return DataConfig.model_fields["mix"].default_factory()


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of ``raw`` with each ``a.b=c`` applied; the result is validated by :func:`load_config`."""
    out = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:  # a section not given yet; data.mix starts from its default weights, so that one
                # domain's weight can be set without zeroing the others (the mix weighs unnamed domains 0)
                nxt = node[part] = default_mix() if tuple(path[: i + 1]) == ("data", "mix") else {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = nxt
        if retagged(tuple(path[:-1]), node, {path[-1]: value}):
            node.clear()  # another noise kind / method: the old one's keys do not apply
        for other in EXCLUSIVE.get(tuple(path), ()):
            node.pop(other, None)  # paired.fraction replaces paired.count and vice versa
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; ``extends: base.yaml`` (relative to the file) deep-merges it over that base."""
    return _read_yaml(Path(path), ())


def load_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """The parsed YAML of a file; a missing file or bad YAML is one ConfigError naming the file (and line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None


def _read_yaml(p: Path, chain: tuple[Path, ...]) -> dict:
    if not p.is_file():
        where = f" (extended by {chain[-1]})" if chain else ""
        raise ConfigError(f"{p}: config file not found{where}")
    if p.resolve() in chain:
        raise ConfigError(f"{p}: `extends` loops back to itself ({' -> '.join(str(c) for c in chain)})")
    data = load_yaml_file(p)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{p}: extends: expected a file name, got {base!r}")
    return deep_merge(_read_yaml(p.parent / base, (*chain, p.resolve())), data)


def deep_merge(base: dict, over: dict, path: tuple[str, ...] = ()) -> dict:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces; a tagged section switched to
    another kind (``data.noise``, ``method``) is replaced whole."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        sub = (*path, k)
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and not retagged(sub, out[k], v)
        out[k] = deep_merge(out[k], v, sub) if merge else copy.deepcopy(v)
    return out


# Tagged unions: section path -> (tag key, the kind a section without the key means)
TAGGED = {("data", "noise"): ("kind", "awgn"), ("method",): ("name", DEFAULT_METHOD),
          ("pipeline", "downstream", "method"): ("name", DEFAULT_METHOD)}  # fmt: skip


EXCLUSIVE = {("data", "paired", "fraction"): ("count",), ("data", "paired", "count"): ("fraction",)}


def retagged(path: tuple[str, ...], old: dict, new: dict) -> bool:
    """Whether ``new`` switches the tagged section at ``path`` to another kind (the old kind's keys then go)."""
    if path not in TAGGED:
        return False
    tag, default = TAGGED[path]
    return tag in new and new[tag] != old.get(tag, default)


def validate(raw: dict, origin: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None


def weight_files(cfg: RunConfig) -> dict[str, str]:
    """The local weight files the run's method will load (config key -> path)."""
    m, out = cfg.method, {}
    if getattr(m, "scm", False) and getattr(m, "scm_backbone", "") == "pretrained" and m.scm_weights:
        out["method.scm_weights"] = m.scm_weights
    if getattr(m, "perceptual", "none") != "none" and m.perceptual_backbone == "pretrained":
        out["method.perceptual_weights"] = m.perceptual_weights
        if m.perceptual == "lpips":
            out["method.lpips_weights"] = m.lpips_weights
    return {k: v for k, v in out.items() if v}


def check_weight_files(cfg: RunConfig) -> None:
    """Refuse (one line, before any worker starts) a run whose weight files are not on this node (a local file or a
    URI; on a cluster every worker node is checked too: raytrain/train/cluster.py)."""
    from raytrain import locations

    for key, path in weight_files(cfg).items():
        if not locations.is_file(path):
            raise ConfigError(f"{key}: {locations.display(path)} not found (a file or a URI; no download happens)")
    start = getattr(cfg.method, "init_from", None)
    if start and not locations.exists(start):
        raise ConfigError(f"method.init_from: {locations.display(start)} not found (a checkpoint folder or exported "
                          "model.pt)")  # fmt: skip


def recipe_deviations(cfg: RunConfig, recipe: dict[str, Any]) -> list[str]:
    """``key: got X, official Y`` for each entry of a method's ``OFFICIAL_RECIPE`` the config does not match."""
    flat = flatten(cfg) | {"global_batch": cfg.train.batch_size * cfg.scaling.num_workers}
    out = []
    for key, want in recipe.items():
        got = flat.get(key)
        same = (list(got) == list(want)) if isinstance(want, list) and isinstance(got, (list, tuple)) else (
            math.isclose(got, want, rel_tol=1e-9) if isinstance(want, float) and isinstance(got, (int, float))
            else got == want)  # fmt: skip
        if not same:
            out.append(f"{key}: {got!r} (official {want!r})")
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    return validate(raw, str(path) if path is not None else "defaults")


def to_raw(cfg: RunConfig) -> dict:
    """The JSON-able form that re-validates to the same config: only what the user set (defaults refill on load),
    so checks that depend on which keys were given (LIR's ablation sanity checks) hold after a round trip."""
    return cfg.model_dump(mode="json", exclude_unset=True)


def resolved_yaml(cfg: RunConfig) -> str:
    """Every value of ``cfg``, defaults filled in, as YAML (``train --dry-run``, the run's ``config_resolved.yaml``
    artifact); :func:`to_raw` is the form that loads again (``config.yaml``)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_yaml(cfg: RunConfig) -> str:
    """The keys the user set, as YAML that ``raytrain train FILE`` loads back to the same config."""
    return yaml.safe_dump(to_raw(cfg), sort_keys=False)


def flatten(cfg: BaseModel | dict, prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config, for MLflow params and search spaces."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    out: dict[str, Any] = {}
    for key, val in data.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict) and val:
            out.update(flatten(val, name + "."))
        else:
            out[name] = val
    return out


__all__ = [
    "format_validation_error",
    "_is_branch_name",
    "_UNION_TAGS",
    "parse_override",
    "apply_overrides",
    "read_yaml",
    "load_yaml_file",
    "_read_yaml",
    "deep_merge",
    "TAGGED",
    "EXCLUSIVE",
    "retagged",
    "validate",
    "weight_files",
    "check_weight_files",
    "recipe_deviations",
    "load_config",
    "to_raw",
    "resolved_yaml",
    "config_yaml",
    "suggest",
    "flatten",
]
