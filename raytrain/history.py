"""Curves from MLflow's full history of a run (every logged step, not only the steps Ray kept a checkpoint of): the
training losses and the validation metric beside its noisy-input value, one figure for one run or several runs
overlaid (``raytrain curves RUN_ID ...``, the demo's ``lir_curve.png``)."""

from __future__ import annotations

from pathlib import Path

SKIP = ("train_lr",)


def metric_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((int(m.step), float(m.value)) for m in client.get_metric_history(run_id, key))


def headline_key(client, run_id: str) -> str:
    """The run's validation headline (``val_psnr``; a SeNM-VAE's ``val_kld``) from its ``method`` tag."""
    from raytrain.methods import method_class

    name = client.get_run(run_id).data.tags.get("method")
    try:
        return f"val_{method_class(name).headline[0]}"
    except Exception:  # noqa: BLE001 - a run of another kind: PSNR
        return "val_psnr"


def plot_history(client, run_ids: list[str], path: str | Path | None, metric: str | None = None,
                 labels: list[str] | None = None) -> Path:  # fmt: skip
    """Two panels: each run's training losses (``train_*``) and its validation ``metric`` (default: the first run's
    headline) with the noisy input's value (``<metric>_noisy``) dashed, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raytrain.errors import RaytrainError

    metric = metric or headline_key(client, run_ids[0])
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    drawn = 0
    for i, run_id in enumerate(run_ids):
        run = client.get_run(run_id)
        name = labels[i] if labels else run.data.tags.get("mlflow.runName", run_id[:8])
        color = f"C{i % 10}"
        losses = sorted(k for k in run.data.metrics if k.startswith("train_") and k not in SKIP)
        for j, key in enumerate(losses):
            pts = metric_history(client, run_id, key)
            if pts:
                loss_ax.plot(*zip(*pts, strict=True), lw=1, color=color if len(run_ids) > 1 else f"C{j % 10}",
                             ls=["-", "--", ":", "-."][j % 4] if len(run_ids) > 1 else "-",
                             label=f"{name}: {key[6:]}" if len(run_ids) > 1 else key[6:])  # fmt: skip
        pts = metric_history(client, run_id, metric)
        if pts:
            val_ax.plot(*zip(*pts, strict=True), marker=".", color=color, label=name if len(run_ids) > 1 else metric)
            drawn += 1
        noisy = metric_history(client, run_id, f"{metric}_noisy")
        if noisy:
            val_ax.plot(*zip(*noisy, strict=True), ls="--", lw=1, color=color if len(run_ids) > 1 else "gray",
                        label=f"{name}: noisy input" if len(run_ids) > 1 else "noisy input")  # fmt: skip
    if not drawn:
        plt.close(fig)
        raise RaytrainError(f"no {metric} history in run(s) {', '.join(run_ids)}; name another with --metric")
    loss_ax.set_title("training losses (every logged step)", fontsize=9)
    val_ax.set_title(f"validation: {metric}", fontsize=9)
    for ax in (loss_ax, val_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if all(v > 0 for line in loss_ax.get_lines() for v in line.get_ydata()) and loss_ax.get_lines():
        loss_ax.set_yscale("log")
    fig.tight_layout()
    if path is None:
        return fig  # for a test to read
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
