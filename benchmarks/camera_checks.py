"""SeNM-VAE's pipeline on the checking cameras (benchmarks/make_camera_pairs.py ``CHECK``: never tuned on), one
pipeline run each as the README gives it, with the ``all_real`` arm (every training tile paired): prints per camera
the table's rows, issue 36's targets (pass / FAIL) and the share of the gap between real pairs only and all real
pairs that the SeNM-VAE arm closes. The 30-minute target is the pipeline's as the README gives it: the whole run less
the all_real arm's DnCNN (both printed). One heavy job: run it alone.

    python benchmarks/camera_checks.py OUT [--cameras check-white,check-iso] [--set KEY=VALUE ...]
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARMS = "[senm,gaussian,heteroscedastic,real_pairs,all_real]"


def read_rows(folder: Path) -> dict[str, dict[str, float]]:
    with open(folder / "table.csv") as f:
        return {r["arm"]: {k: float(v) for k, v in r.items() if k != "arm" and v != ""} for r in csv.DictReader(f)}


def arm_minutes(work: Path, arm: str) -> float:
    """Wall minutes of one arm's downstream run, from the pipeline's MLflow store (0 when it has none)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`raytrain.stage` = 'downstream' and tags.`raytrain.arm` = '{arm}'")  # fmt: skip
    return sum((r.info.end_time - r.info.start_time) / 60_000 for r in runs if r.info.end_time)


def targets(rows: dict, minutes: float) -> list[tuple[str, bool, str]]:
    s, g, h, rp = rows["senm"], rows["gaussian"], rows["heteroscedastic"], rows["real_pairs"]
    best_gauss = max(g["psnr"], h["psnr"])
    out = [
        ("PSNR >= the better Gaussian arm", s["psnr"] >= best_gauss, f"{s['psnr']:.2f} vs {best_gauss:.2f}"),
        ("PSNR > real pairs only", s["psnr"] > rp["psnr"], f"{s['psnr']:.2f} vs {rp['psnr']:.2f}"),
        ("residual KLD < the Gaussian arm's", s["kld"] < g["kld"], f"{s['kld']:.4f} vs {g['kld']:.4f}"),
    ]
    for key, axis in (("rho_h", "rows"), ("rho_v", "cols")):
        gap = abs(s[key] - s[f"{key}_real"])
        out.append((f"|corr - real| <= 0.1, lag 1 along {axis}", gap <= 0.1,
                    f"{s[key]:.3f} vs real {s[f'{key}_real']:.3f} (gap {gap:.3f})"))  # fmt: skip
    ratio = s["noise_std"] / s["noise_std_real"]
    out.append(("std / real in [0.85, 1.15]", 0.85 <= ratio <= 1.15, f"{ratio:.3f}"))
    out.append(("pipeline <= 30 minutes", minutes <= 30, f"{minutes:.1f} min"))
    return out


def main() -> int:
    sys.path.insert(0, str(HERE))
    from make_camera_pairs import CHECK
    from make_camera_pairs import main as make

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a folder for the cameras' pairs and the runs")
    ap.add_argument("--cameras", default=",".join(CHECK), help="comma-separated (default: every checking camera)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra pipeline overrides")
    a = ap.parse_args()
    path = a.out / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}  # cameras run before (another call) are kept
    for cam in a.cameras.split(","):
        pairs = a.out / cam
        if not (pairs / "clean").is_dir():
            make(pairs, **{"tap": 2.0, "width": 1.0} | CHECK[cam])
        work = a.out / f"work-{cam}-{time.strftime('%Y%m%d-%H%M%S')}"  # a rerun reads only its own runs
        cmd = [str(Path(sys.executable).with_name("raytrain")), "pipeline", str(ROOT / "configs/senm_pipeline.yaml"),
               "--set", f"data.source={pairs / 'clean'}", "--set", f"data.noisy_source={pairs / 'noisy'}",
               "--set", f"workdir={work}", "--set", f"pipeline.arms={ARMS}", "--set", f"name={cam}",
               *(x for s in a.sets for x in ("--set", s))]  # fmt: skip
        print(f"\n=== {cam}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        minutes = (time.time() - t0) / 60
        if proc.returncode:
            print(proc.stderr[-3000:])
            summary[cam] = {"error": proc.stderr.strip().splitlines()[-1:], "minutes": minutes}
            path.write_text(json.dumps(summary, indent=2))
            continue
        table = proc.stdout[proc.stdout.index(f"pipeline {cam}:") :]
        print(table)
        folder = next((work / "pipelines").glob(f"{cam}-*"))
        rows = read_rows(folder)
        extra = arm_minutes(work, "all_real")  # not part of the pipeline the README gives: its time is not counted
        print(f"  {minutes:.1f} min in all, {extra:.1f} of them the all_real arm's DnCNN", flush=True)
        checks = targets(rows, minutes - extra)
        for name, ok, got in checks:
            print(f"  {'pass' if ok else 'FAIL'}  {name}: {got}")
        lo, hi, s = rows["real_pairs"]["psnr"], rows["all_real"]["psnr"], rows["senm"]["psnr"]
        share = (s - lo) / (hi - lo) if hi > lo else float("nan")
        print(f"  share of the real-pairs-only -> all-real gap closed by SeNM-VAE: ({s:.2f} - {lo:.2f}) / "
              f"({hi:.2f} - {lo:.2f}) = {share:.0%}")  # fmt: skip
        summary[cam] = {"minutes": minutes - extra, "minutes_all_real": extra, "rows": rows,
                        "checks": [(n, ok, g) for n, ok, g in checks],
                        "share": share, "folder": str(folder)}  # fmt: skip
        path.write_text(json.dumps(summary, indent=2))  # after each camera
    print(f"\nsummary: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
