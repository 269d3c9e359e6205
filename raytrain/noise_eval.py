"""``raytrain noise-eval``: how close a trained SeNM-VAE's noise is to real noise, beside the Gaussian and
heteroscedastic models fitted on the same run's paired set (and, optionally, FID and downstream denoisers), on the
run's held-out pairs or on given real pairs. :func:`noise_eval` computes, :func:`report` words it; the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NoiseEvalResult:
    where: str  # which pairs were scored, in words
    rows: dict[str, dict[str, float]]  # noise model -> kld, kld_noisy, rho(_h, _v, _h2, _v2)(_real), noise_std (+ fid)
    fid: str | None = None  # how FID was computed (None: not computed)
    downstream: dict[str, float] = field(default_factory=dict)  # denoiser label -> mean PSNR on the same pairs


def noise_eval(checkpoint: str, data: str | None = None, noisy: str | None = None, crop: int | None = None,
               baselines: bool = True, inception: str | None = None, fid_patch: int = 64,
               denoisers: tuple[str, ...] = (), device: str = "cpu", overrides: list[str] | None = None
               ) -> NoiseEvalResult:  # fmt: skip
    """Score the noise model in ``checkpoint``: each model synthesises noise for every real pair at that pair's own
    level. ``data`` + ``noisy``: folders of real clean / noisy images with the same names (default: the run's
    held-out images); ``crop``: a centre crop; ``denoisers``: ``[LABEL=]CHECKPOINT`` restorers scored on the pairs;
    ``device``: where the models run; ``overrides``: ``--set`` items on the noise model's stored config."""
    from raytrain.data.collection import load_domains
    from raytrain.evaluate import evaluate_pairs, tiles
    from raytrain.inference import load_noise_model, load_restorer, on_device, resolve_device
    from raytrain.noise_pipeline import fitted_sources, noise_quality
    from raytrain.synthesis import as_synthesizer

    fid_net = None
    if inception:  # a bad weight file is reported before any work
        from raytrain.nn.inception import load_inception

        fid_net = load_inception(inception)
    dev = resolve_device(device)
    cfg, model = load_noise_model(checkpoint, dev, overrides)
    synth_on = on_device(model.synthesize, dev)
    collection = load_domains(cfg) if (data is None or baselines) else None
    pairs, where = real_pairs(cfg, collection, data, noisy, crop)
    synths = {f"SeNM-VAE ({cfg.method.synthesis})": lambda c, lv: synth_on(c, None if lv is None else lv.to(dev))}
    if baselines:
        fitted = fitted_sources(collection, cfg.seed)
        synths |= {f"{k} (fitted on the paired set)": as_synthesizer(v) for k, v in fitted.items()}
    result = NoiseEvalResult(where, {name: noise_quality(name, fn, pairs, fid_net, fid_patch)
                                     for name, fn in synths.items()})  # fmt: skip
    if fid_net is not None:
        n_tiles = sum(len(tiles(noisy, fid_patch)) for _, noisy in pairs)
        pools = "TensorFlow FID pools" if fid_net.fid_tf else "torchvision pools"
        result.fid = (f"Inception-v3 pool features of {n_tiles} {fid_patch}px tiles of the real vs the synthetic "
                      f"noisy images ({pools}); with fewer tiles than 2048 features only a comparison of the rows "
                      "above, not with published FIDs")  # fmt: skip
    for item in denoisers:
        label, _, ckpt = item.rpartition("=")
        _, den = load_restorer(ckpt, dev)
        ps = [s["psnr"] for s in evaluate_pairs(on_device(den.restore, dev), pairs)]
        result.downstream[label or ckpt] = sum(ps) / len(ps)
    return result


def real_pairs(cfg, collection, data: str | None, noisy: str | None, crop: int | None) -> tuple[list, str]:
    """The (clean, noisy) pairs to score on, centre-cropped, and where they come from: the run's held-out images, or
    the folders ``data`` / ``noisy`` (same names)."""
    from raytrain.data.collection import centre_crop
    from raytrain.data.images import load_pairs
    from raytrain.errors import DataError

    if data is None:
        pairs, where = collection.val, f"the run's held-out images ({', '.join(collection.val_names)})"
    else:
        if not noisy:
            raise DataError("--data needs --noisy (real noisy images with the same names)")
        pairs = [(c.pixels, n.pixels) for c, n in load_pairs(data, noisy, cfg.data.color)]
        where = f"{len(pairs)} real pairs from {data}"
    return [(centre_crop(c, crop), centre_crop(n, crop)) for c, n in pairs], where


def report(result: NoiseEvalResult) -> str:
    """The console table of :func:`noise_eval` with its definitions."""
    from raytrain.metrics import STRUCTURE

    rows, has_fid = result.rows, result.fid is not None
    w = max(len(n) for n in rows)
    fid_h = f"  {'FID':>8}" if has_fid else ""
    corr = "".join(f"  {h:>6}" for h in ("rows1", "cols1", "rows2", "cols2"))
    head = (f"{'noise model':<{w}}  {'KLD resid.':>10}  {'KLD noisy':>10}  {'AKLD':>7}{corr}  {'std':>6}  {'dark':>6}"
            f"  {'bright':>6}{fid_h}")  # fmt: skip
    lines = [f"noise quality on {result.where}; each synthesised at the real pair's noise level", head]
    for name, r in rows.items():
        fid = f"  {r['fid']:>8.2f}" if has_fid else ""
        lines.append(f"{name:<{w}}  {r['kld']:>10.4f}  {r['kld_noisy']:>10.4f}  {r['akld']:>7.4f}"
                     + "".join(f"  {r[k]:>6.3f}" for k in STRUCTURE) + f"  {r['noise_std']:>6.2f}"
                     + f"  {r['noise_std_dark']:>6.2f}  {r['noise_std_bright']:>6.2f}{fid}")  # fmt: skip
    real = next(iter(rows.values()))
    lines.append(f"{'real noise':<{w}}  {0:>10.4f}  {0:>10.4f}  {0:>7.4f}"
                 + "".join(f"  {real[f'{k}_real']:>6.3f}" for k in STRUCTURE)
                 + f"  {real['noise_std_real']:>6.2f}  {real['noise_std_dark_real']:>6.2f}"
                 + f"  {real['noise_std_bright_real']:>6.2f}")  # fmt: skip
    lines.append("KLD resid.: histograms of noisy - clean, KL(real || synthetic). KLD noisy: the official script's "
                 "uint8 noisy-image histograms, KL(synthetic || real). AKLD: DANet's average KL between the local "
                 "noise variances (7 x 7 Gaussian window), synthetic vs real. rows1 / cols1, rows2 / cols2: the "
                 "noise's correlation with its neighbour along the rows / columns at lag 1 and 2 (0: white). std, "
                 "dark, bright: the noise's std (0..255) over all pixels, the darkest and the brightest quarter of "
                 "each clean image's."
                 )  # fmt: skip
    lines.append(f"FID: {result.fid}." if has_fid else "FID: give --inception FILE (a local Inception-v3 weight file) "
                 "to add it.")  # fmt: skip
    lines += [f"downstream {label}: PSNR {p:.2f} dB on the same pairs" for label, p in result.downstream.items()]
    return "\n".join(lines)
