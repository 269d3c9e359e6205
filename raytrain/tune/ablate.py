"""``raytrain ablate``: a grid (e.g. paired count x seed) x method variants (the papers' ablation switches) through
Tune, aggregated into the papers' table form (mean ± std over seeds per cell) as Markdown and CSV, with plots: the
metric against the first grid axis with error bars, and validation curves per variant (as LIR's Fig. 8).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from raytrain.config import RunConfig
from raytrain.errors import ConfigError
from raytrain.metrics import mean_std
from raytrain.tables import markdown_table
from raytrain.tune.space import Param, Space, variants_of

REPLICATE_AXES = ("seed",)  # averaged over, never a table axis
BASELINE_AXIS = "method"  # the row axis that holds the learned method beside the classical baselines


def parse_grid(items: list[str], cfg: RunConfig) -> dict[str, list]:
    """``--grid data.paired.count=10,96,960`` -> {path: values}; ``paired.count`` stands for ``data.paired.count``."""
    out: dict[str, list] = {}
    top = set(type(cfg).model_fields)
    for item in items:
        path, sep, vals = item.partition("=")
        if not sep or not path or not vals:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,...")
        if path.split(".")[0] not in top and path.split(".")[0] in type(cfg.data).model_fields:
            path = f"data.{path}"
        values = [yaml.safe_load(v) for v in vals.split(",")]
        if len(set(map(str, values))) != len(values):
            raise ConfigError(f"--grid {item!r}: repeated values")
        out[path] = values
    return out


def grid_space(grid: dict[str, list], variants: list[str], method: str, origin: str = "--grid") -> Space:
    known = variants_of(method)
    bad = [v for v in variants if v not in known]
    if bad:
        raise ConfigError(f"--variants: unknown for {method}: {', '.join(bad)} (known: {', '.join(known)})")
    params = {k: Param(k, "grid", tuple(v)) for k, v in grid.items()}
    if variants:
        params["variant"] = Param("variant", "grid", tuple(variants))
    if not params:
        raise ConfigError("ablate needs at least one --grid or --variants")
    return Space(params, origin=origin)


def aggregate(rows: list[dict], axes: list[str], metric: str) -> list[dict]:
    """Cells: one per combination of the non-replicate axes; mean ± std of ``metric`` over replicates (seeds)."""
    keep = [a for a in axes if a not in REPLICATE_AXES]
    cells: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if metric in r and r[metric] is not None and np.isfinite(r[metric]):
            cells[tuple(r.get(a) for a in keep)].append(float(r[metric]))
    out = []
    for key, vals in sorted(cells.items(), key=lambda kv: tuple(map(_sort_key, kv[0]))):
        m, s = mean_std(vals)
        out.append({**dict(zip(keep, key, strict=True)), "mean": m, "std": s, "n": len(vals)})
    return out


def _sort_key(v):
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def table_markdown(cells: list[dict], axes: list[str], metric: str, digits: int = 2) -> str:
    """Papers' form: columns = the first axis (e.g. paired count), rows = the other axes (variant, ...)."""
    keep = [a for a in axes if a not in REPLICATE_AXES]
    if not keep:
        c = cells[0]
        return "\n".join(markdown_table([metric], [[f"{c['mean']:.{digits}f} ± {c['std']:.{digits}f} (n={c['n']})"]]))
    col_axis, row_axes = keep[0], keep[1:]
    cols = sorted({c[col_axis] for c in cells}, key=_sort_key)
    rows = sorted({tuple(c[a] for a in row_axes) for c in cells}, key=lambda t: tuple(map(_sort_key, t)))
    head = [" / ".join(row_axes) or metric] + [f"{col_axis}={v}" for v in cols]
    body = []
    for rk in rows:
        vals = []
        for cv in cols:
            c = next((c for c in cells if c[col_axis] == cv and tuple(c[a] for a in row_axes) == rk), None)
            vals.append(f"{c['mean']:.{digits}f} ± {c['std']:.{digits}f}" if c else "–")
        body.append([" / ".join(map(str, rk)) or metric, *vals])
    return "\n".join(markdown_table(head, body))


def table_csv(cells: list[dict]) -> str:
    buf = io.StringIO()
    if cells:
        w = csv.DictWriter(buf, fieldnames=list(cells[0]))
        w.writeheader()
        w.writerows(cells)
    return buf.getvalue()


def plot_metric(cells: list[dict], axes: list[str], metric: str, path: Path | None, error: str | None = None,
                baseline: float | None = None, baseline_label: str = "noisy input") -> Path | None:  # fmt: skip
    """The metric against the first axis, one series per remaining combination (variant). Several numeric x values:
    lines, on a log axis over a wide range. One x value (or categories): with a ``baseline`` (the noisy input), bars
    of the gain over it (zero-based, the value printed on each bar); without, points. Error bars: ± ``error``
    (default: the std over the replicate axes), said under the plot with n; the baseline a dashed line. ``path``
    None: the figure itself."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = [a for a in axes if a not in REPLICATE_AXES]
    if not keep:
        return None
    x_axis, rest = keep[0], keep[1:]
    groups = sorted({tuple(c[a] for a in rest) for c in cells}, key=lambda t: tuple(map(_sort_key, t)))
    xvals = sorted({c[x_axis] for c in cells}, key=_sort_key)
    numeric = all(isinstance(c[x_axis], (int, float)) for c in cells)
    ns = sorted({int(c.get("n", 1)) for c in cells})
    note = f"error bars: ± {error or 'std over ' + ', '.join(REPLICATE_AXES)} (n = {'/'.join(map(str, ns))})"
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    label = lambda g: " / ".join(map(str, g)) or metric  # noqa: E731
    if numeric and len(xvals) > 1:
        for g in groups:
            pts = sorted((c for c in cells if tuple(c[a] for a in rest) == g), key=lambda c: _sort_key(c[x_axis]))
            ax.errorbar([c[x_axis] for c in pts], [c["mean"] for c in pts], yerr=[c["std"] for c in pts], marker="o",
                        capsize=3, label=label(g))  # fmt: skip
        if min(xvals) > 0 and max(xvals) / min(xvals) >= 20:
            ax.set_xscale("log")
        if baseline is not None:
            ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"{baseline_label} ({baseline:.2f})")
        ax.set_xlabel(x_axis)
        ax.set_ylabel(metric)
    else:
        width = 0.8 / max(len(groups), 1)
        for j, g in enumerate(groups):
            by_x = {c[x_axis]: c for c in cells if tuple(c[a] for a in rest) == g}
            pos = [i + (j - (len(groups) - 1) / 2) * width for i, x in enumerate(xvals) if x in by_x]
            pts = [by_x[x] for x in xvals if x in by_x]
            if baseline is None:
                ax.errorbar(pos, [c["mean"] for c in pts], yerr=[c["std"] for c in pts], fmt="o", capsize=3,
                            label=label(g))  # fmt: skip
                continue
            bars = ax.bar(pos, [c["mean"] - baseline for c in pts], width * 0.9, yerr=[c["std"] for c in pts],
                          capsize=3, label=label(g))  # fmt: skip
            for bar, c in zip(bars, pts, strict=True):
                mid = (bar.get_x() + bar.get_width() / 4, bar.get_height() / 2)  # clear of the error bar
                ax.annotate(f"{c['mean']:.2f}", mid, ha="center", va="center", fontsize=8, color="white",
                            fontweight="bold")  # fmt: skip
        ax.set_xticks(range(len(xvals)), [f"{x_axis} = {x}" for x in xvals])
        if baseline is not None:
            ax.axhline(0, color="gray", ls="--", lw=1)
            ax.set_ylabel(f"{metric}\ngain over the {baseline_label} ({baseline:.2f})")
        else:
            ax.set_ylabel(metric)
    ax.grid(alpha=0.3, axis="y")
    if len(groups) > 1 or baseline is not None:
        ax.legend(fontsize=8)
    fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    if path is None:
        return fig  # for a test to read
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, list[list[tuple[int, float]]]], metric: str, path: Path) -> Path | None:
    """Validation ``metric`` against step per variant (mean over the variant's trials), as LIR's Fig. 8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(curves.values()):
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, runs in sorted(curves.items()):
        by_step: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            for step, v in run:
                by_step[step].append(v)
        steps = sorted(by_step)
        ax.plot(steps, [np.mean(by_step[s]) for s in steps], marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def baseline_rows(cfg: RunConfig, rows: list[dict], axes: list[str], metric: str) -> list[dict]:
    """Rows of the classical denoisers (:mod:`raytrain.baselines`) for a restoration metric (``val_psnr`` /
    ``val_ssim``): scored on the very validation pairs of each trial (one scoring per distinct seed and ``data.*``
    grid value: the values that change the validation pairs or their noise), with the trial's grid values, so that
    they aggregate into the same cells; every other metric: none."""
    from raytrain.baselines import classical_rows, known_sigma
    from raytrain.config import to_raw, validate
    from raytrain.data.collection import load_domains
    from raytrain.tune.space import trial_raw

    key = metric.removeprefix("val_")
    if key not in ("psnr", "ssim"):
        return []
    data_axes = [a for a in axes if a in REPLICATE_AXES or a.startswith("data.")]
    scored: dict[tuple, dict[str, float]] = {}
    out = []
    for r in rows:
        k = tuple(r.get(a) for a in data_axes)
        if k not in scored:
            c = validate(trial_raw(to_raw(cfg), {a: r[a] for a in data_axes if a in r}), "baseline config")
            by_name = classical_rows(load_domains(c).val, known_sigma(c.data.noise), c.data.scale)
            scored[k] = {name: float(np.mean([x[key] for x in vals])) for name, vals in by_name.items()}
        for name, value in scored[k].items():
            # with the trial's every grid value (its variant too): each table cell shows the baselines on the very
            # inputs of the learned method's cell, averaged over the same seeds
            out.append({**{a: r.get(a) for a in axes}, BASELINE_AXIS: name, metric: value})
    return out


def run_ablation(cfg: RunConfig, grid: dict[str, list], variants: list[str], name: str, metric: str, mode: str,
                 concurrent: int, resume: bool = False) -> dict:  # fmt: skip
    """Every grid cell x variant once (Tune's grid search), then the table, CSV and plots in the sweep folder."""
    from raytrain.tune.driver import run_sweep

    space = grid_space(grid, variants, cfg.method.name)
    res = run_sweep(cfg, space, name, 1, concurrent, [metric], [mode], None, "grid", resume)
    axes = [a for a in space.params if a != "variant"] + (["variant"] if "variant" in space.params else [])
    # the table's columns: the first grid axis (e.g. the paired count); rows: the variants and remaining axes, and
    # for a restoration metric the classical denoisers on the same validation pairs (rows "method": NLM, BM3D, ...)
    rows, table_axes = res.rows, axes
    extra = baseline_rows(cfg, rows, axes, metric)
    if extra:
        rows = [r | {BASELINE_AXIS: cfg.method.name} for r in rows] + extra
        table_axes = [*axes, BASELINE_AXIS]
    cells = aggregate(rows, table_axes, metric)
    digits = 4 if "kld" in metric or "ssim" in metric or "rho" in metric else 2
    md = table_markdown(cells, table_axes, metric, digits)
    out = res.folder
    files = {"ablation.md": f"{metric} (mean ± std over {', '.join(REPLICATE_AXES)}; last validation)\n\n{md}\n",
             "ablation.csv": table_csv(cells)}  # fmt: skip
    for f, text in files.items():
        (out / f).write_text(text)
    plots = [plot_metric(cells, table_axes, metric, out / "metric.png")]
    curves: dict[str, list] = defaultdict(list)
    for row in res.rows:
        hist = res.histories.get(row["trial_id"], [])
        label = " / ".join(str(row.get(a)) for a in axes if a not in REPLICATE_AXES) or metric
        curves[label].append([(int(h["step"]), float(h[metric])) for h in hist if metric in h])
    plots.append(plot_curves(curves, metric, out / "curves.png"))
    from raytrain.tracking import Store

    parent = Store.of(cfg, check=False).get(res.parent_run_id)
    for f in [*files, *(p.name for p in plots if p)]:
        parent.log_artifact(out / f)
    out.publish(*files, *(p.name for p in plots if p))
    return {"sweep": res, "cells": cells, "markdown": md, "folder": out, "plots": [p for p in plots if p]}
