"""The configuration reference (docs/config.md), generated from the typed configs: every section, key, type, default,
bounds, and the comment written beside the field in the source. ``raytrain config-reference`` regenerates it; a test
fails when the committed file is stale."""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any

from pydantic import BaseModel

from raytrain.tables import markdown_table

FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")
FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


def comments(cls: type) -> dict[str, str]:
    """The comments of each field in a class's own source: the ``# ...`` lines right above ``field: type = default``
    and the ``# comment`` beside it."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out, above = {}, []
    fields = getattr(cls, "model_fields", {})
    for line in src.splitlines():
        text = line.strip()
        if text.startswith("#"):  # a "# --- section" header belongs to no single field
            above = [] if text.lstrip("#").strip().startswith("---") else [*above, text.lstrip("#").strip()]
            continue
        m, name = FIELD_COMMENT.match(line), FIELD_LINE.match(line)
        key = name.group(1) if name else None
        if key in fields and (above or m):
            out[key] = " ".join([*above, m.group(2).strip() if m else ""]).strip()
        above = []
    return out


def type_name(t: Any) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if t is type(None):
        return "None"
    return getattr(t, "__name__", str(t))


def bounds(field) -> str:
    parts = []
    for m in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "len >=")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v}")
    return ", ".join(parts)


def default(field) -> str:
    if field.default_factory is not None:
        v = field.default_factory()
        return "(section)" if isinstance(v, BaseModel) else f"`{v}`"
    return f"`{field.default}`"


def models_in(t: Any) -> list[type[BaseModel]]:
    out = []
    for a in typing.get_args(t) or ():
        out += models_in(a)
    if isinstance(t, type) and issubclass(t, BaseModel):
        out.append(t)
    return out


def section(cls: type[BaseModel], path: str, seen: set) -> list[str]:
    if (cls, path) in seen:
        return []
    seen.add((cls, path))
    doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    notes = comments(cls)
    lines = [f"### `{path or 'top level'}`" + (f" ({cls.__name__})" if path.endswith("method") else ""), ""]
    if doc:
        lines += [doc, ""]
    rows, subs = [], []
    for name, f in cls.model_fields.items():
        nested = models_in(f.annotation)
        kind = type_name(f.annotation)
        if nested:
            kind = "section" if len(nested) == 1 else "section, one of: " + ", ".join(m.__name__ for m in nested)
        rows.append([f"`{name}`", kind, default(f), bounds(f), notes.get(name, "")])
        subs += [(m, f"{path + '.' if path else ''}{name}") for m in nested]
    lines += [*markdown_table(["key", "type", "default", "bounds", "notes"], rows, escape=True), ""]
    for m, p in subs:
        lines += section(m, p, seen)
    return lines


def method_tables() -> list[str]:
    """Each method's train defaults and the official recipes job specs are checked against."""
    from raytrain.config import OFFICIAL_RECIPES, TRAIN_DEFAULTS

    lines = ["### Each method's `train` defaults", "",
             "What the run's `train` section does not set comes from its method (the paper's or official optimiser);",
             "a `schedule` given in the config replaces the method's whole. `train.batch_size` is per worker: the",
             "global batch is `batch_size x scaling.num_workers`.", ""]  # fmt: skip

    def cell(d: dict, key: str) -> str:  # a key the method leaves to the train section's own default: "-"
        v = d.get(key)
        if v is None:
            return "–"
        return ", ".join(f"{k}: {x}" for k, x in v.items()) if isinstance(v, dict) else f"{v:g}"

    rows = [
        [f"`{name}`", *(cell(d, k) for k in ("lr", "weight_decay", "schedule"))] for name, d in TRAIN_DEFAULTS.items()
    ]
    lines += markdown_table(["method", "lr", "weight_decay", "schedule"], rows)
    lines += ["", "### Official recipes", "",
              "A job spec with `recipe: official` is refused unless its effective config (with the spec's",
              "resources) matches its method's table",
              "(`global_batch` = `train.batch_size x scaling.num_workers`):", ""]  # fmt: skip
    for name, table in OFFICIAL_RECIPES.items():
        lines.append(f"- `{name}`: " + ", ".join(f"`{k}` {v}" for k, v in table.items()))
    return [*lines, ""]


def config_reference() -> str:
    from raytrain.config import RunConfig

    head = [
        "# Configuration reference",
        "",
        "Generated from the typed configs by `raytrain config-reference` (do not edit). Every key can be set in",
        "the YAML file or with `--set a.b=c`; unknown keys and out-of-range values are errors naming the key.",
        "Tagged sections (`method` by `name`, `data.noise` by `kind`) list one table per choice.",
        "",
    ]
    return "\n".join(head + method_tables() + section(RunConfig, "", set())).rstrip() + "\n"
