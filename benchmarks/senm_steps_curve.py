"""SeNM-VAE pipeline against the noise model's training length (issue 12, scope item 6): for each step count N,
``raytrain pipeline configs/senm_pipeline.yaml`` with the lr milestones at 0.2 / 0.75 of N and the noise-KL annealing
over N / 2 (the 2000-step recipe's proportions); the Gaussian and real-pairs-only arms train once, in the first run
(they do not depend on the noise model). Prints the table and writes the plot (DnCNN PSNR and residual KLD against N).

    python benchmarks/senm_steps_curve.py --steps 600,2000,5000 --set seed=5 --plot docs/senm_steps_curve.png

About 10 / 17 / 34 minutes for 600 / 2000 / 5000 steps on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "senm_pipeline.yaml"
COLUMNS = ("psnr", "kld", "noise_std", "noise_std_real", "rho", "rho_real")


def run(n: int, arms: str, work: Path, overrides: list[str]) -> dict[str, dict[str, str]]:
    """One pipeline of ``n`` noise-model steps; its table.csv rows by arm."""
    sets = [f"workdir={work / str(n)}", f"train.steps={n}", f"train.schedule.milestones=[{n // 5},{n * 3 // 4}]",
            f"method.kl_anneal_steps={n // 2}", f"pipeline.arms={arms}", *overrides]  # fmt: skip
    cli = Path(sys.executable).parent / "raytrain"  # the console script beside this interpreter
    cmd = [str(cli), "pipeline", str(CONFIG)] + [a for s in sets for a in ("--set", s)]
    subprocess.run(cmd, check=True)
    (table,) = (work / str(n) / "pipelines").glob("*/table.csv")
    return {r["arm"]: r for r in csv.DictReader(table.open())}


def plot(rows: dict[int, dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, first = sorted(rows), rows[min(rows)]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for a, key, label in ((ax[0], "psnr", "DnCNN PSNR (dB)"), (ax[1], "kld", "residual KLD")):
        a.plot(steps, [float(rows[n]["senm"][key]) for n in steps], "o-", label="SeNM-VAE synthetic + real pairs")
        for arm, style, name in (("gaussian", "--", "Gaussian + real pairs"), ("real_pairs", ":", "real pairs only")):
            if arm in first and first[arm][key] not in ("", "nan"):
                a.axhline(float(first[arm][key]), ls=style, color="gray", label=name)
        a.set_xscale("log")
        a.set_xticks(steps, [str(n) for n in steps])
        a.minorticks_off()
        a.set_xlabel("noise-model steps")
        a.set_ylabel(label)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="600,2000,5000")
    ap.add_argument("--plot", default=None, help="write the plot here (PNG)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="raytrain-senm-curve-"))
    rows = {}
    for i, n in enumerate(int(s) for s in a.steps.split(",")):
        rows[n] = run(n, "[senm,gaussian,real_pairs]" if i == 0 else "[senm]", work, a.overrides)
    print("| noise-model steps | " + " | ".join(COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS))
    for n, r in rows.items():
        print(f"| {n} | " + " | ".join(r["senm"].get(k, "") for k in COLUMNS) + " |")
    first = rows[min(rows)]
    for arm in ("gaussian", "real_pairs"):
        if arm in first:
            print(f"{arm}: PSNR {first[arm]['psnr']}, KLD {first[arm].get('kld', '')}")
    if a.plot:
        plot(rows, a.plot)
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
