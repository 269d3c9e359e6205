"""train.precision: a bf16 step of every method runs its convolutions in bf16 under autocast, keeps fp32 weights
and updates them; fp16 without a GPU is refused at load; fp32 changes nothing."""

from __future__ import annotations

import pytest
import torch
from conftest import BACKGROUND

from raytrain.config import load_config
from raytrain.errors import ConfigError
from raytrain.methods import build_method

TINY = {
    "dncnn": ["method.depth=3", "method.width=8"],
    "lir": ["method.name=lir", "method.width=4", "method.n_res=1", "method.noise_dim=1", "method.disc_width=4",
            "method.disc_layers=2", "method.disc_scales=1", "method.repr_widths=[4,4,4,4]",
            "method.scm_backbone=random", "method.repr_steps=1", "data.split=two_domain"],
    "senm": ["method.name=senm", "method.width=8", "method.growth=4", "method.z_dim=4", "method.zn_dim=2",
             "method.level_net_width=4", "method.disc_width=4", "method.blocks_per_scale=[1,1]",
             "data.paired.count=2", "method.kl_anneal_steps=0"],
}  # fmt: skip


def batches(domains, n=4, s=32):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(n, 1, s, s, generator=g)
    noisy = (clean + 0.1 * torch.randn(n, 1, s, s, generator=g)).clamp(0, 1)
    keys = {"paired": {"clean": clean, "noisy": noisy}, "source": {"clean": clean}, "target": {"noisy": noisy}}
    return {d: keys[d] for d in domains}


def conv_dtypes(m) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    for net in m.nets.values():
        for mod in net.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("method", sorted(TINY))
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_step_runs_its_convolutions_at_the_precision_and_keeps_fp32_weights(method, precision):
    torch.manual_seed(0)
    m = build_method(load_config(None, [*TINY[method], f"train.precision={precision}"]), torch.device("cpu"))
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in m.nets.items()}
    seen = conv_dtypes(m)
    with m.precision.autocast():
        out = m.train_step(batches(m.domains), 1)
    assert not out.skipped and all(torch.isfinite(torch.tensor(v)) for v in out.losses.values()), out.losses
    want = torch.bfloat16 if precision == "bf16" else torch.float32
    assert seen and set(seen) == {want}
    assert all(p.dtype == torch.float32 for net in m.nets.values() for p in net.parameters())
    changed = [k for k, net in m.nets.items()
               if any(not torch.equal(a, b) for a, b in zip(before[k], net.parameters(), strict=True))]  # fmt: skip
    assert changed, "no net was updated"


@pytest.mark.parametrize("method", sorted(TINY))
def test_channels_last_lays_out_every_4d_weight_and_trains_as_the_default_layout(method):
    """train.channels_last on every method's nets (SeNM-VAE holds a 5-D z_n colour filter, which stays as it is):
    the optimisers keep the same parameters and a step gives the default layout's losses."""
    from raytrain.train.loop import fast_nets

    losses = {}
    for last in (False, True):
        torch.manual_seed(0)
        cfg = load_config(None, [*TINY[method], f"train.channels_last={str(last).lower()}"])
        m = build_method(cfg, torch.device("cpu"))
        params = {id(p) for o in m.optimizers.values() for g in o.param_groups for p in g["params"]}
        fast_nets(cfg, m)
        four = [t for net in m.nets.values() for t in [*net.parameters(), *net.buffers()] if t.dim() == 4]
        assert four and all(t.is_contiguous(memory_format=torch.channels_last) == last for t in four if t.shape[1] > 1
                            and t.shape[2] * t.shape[3] > 1)  # fmt: skip
        assert params <= {id(p) for net in m.nets.values() for p in net.parameters()}
        fmt = torch.channels_last if last else torch.contiguous_format
        data = {d: {k: v.contiguous(memory_format=fmt) for k, v in b.items()} for d, b in batches(m.domains).items()}
        losses[last] = m.train_step(data, 1).losses
    assert losses[True].keys() == losses[False].keys()
    for k in losses[False]:
        assert losses[True][k] == pytest.approx(losses[False][k], rel=1e-4, abs=1e-6), k


def test_fp16_without_a_gpu_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"train.precision=fp16 needs a GPU"):
        load_config(None, ["train.precision=fp16"])
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=fp8"])


def test_fp16_scales_the_backward_unscales_before_the_guard_and_lowers_the_scale_on_overflow():
    """The GradScaler path of Method.update, on the CPU's GradScaler (the config allows fp16 on GPUs only)."""
    from raytrain.methods.amp import Precision

    amp = Precision("fp16", "cpu")
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    amp.backward((3 * w).sum())
    assert w.grad.item() == pytest.approx(3 * amp.scaler.get_scale())  # scaled
    amp.unscale([opt])
    assert w.grad.item() == pytest.approx(3.0)  # the guard and clipping see the true gradient
    amp.step([opt])
    assert w.item() == pytest.approx(2.0 - 0.1 * 3.0)
    scale = amp.scaler.get_scale()
    opt.zero_grad()
    amp.backward((w * torch.tensor(float("inf"))).sum())
    amp.unscale([opt])
    amp.skipped()  # the guard refused the non-finite norm
    assert amp.scaler.get_scale() == scale / 2
    state = amp.state_dict()
    again = Precision("fp16", "cpu")
    again.load_state_dict(state)
    assert again.scaler.get_scale() == scale / 2
    off = Precision("bf16", "cpu")
    assert not off.scaling and off.state_dict() == {}


def test_channels_last_lays_out_the_batches_and_seeds_the_local_shuffle():
    from raytrain.train.draw import batch_stream

    class Shard:  # what Ray Data's iterator is asked for, and one batch back
        def iter_torch_batches(self, **kw):
            self.kw = kw
            return [{"clean": torch.rand(2, 3, 8, 8)}]

    for last in (True, False):
        cfg = load_config(None, [f"train.channels_last={str(last).lower()}", "seed=3"])
        shard = Shard()
        batch = next(batch_stream(shard, "paired", cfg, torch.device("cpu"), rank=1))
        assert batch["clean"].is_contiguous(memory_format=torch.channels_last) == last
        assert shard.kw["local_shuffle_seed"] == (3 * 1009 + 1) * 7919  # pass 0 of rank 1


def compile_runs() -> dict:
    """The background job of the suite (conftest.py ``Background``): for ``train.compile`` off and on, a tiny DnCNN
    through ``fast_nets`` (torch.compile spied on), its losses over three steps and its nets' state-dict keys."""
    import shutil

    from raytrain.train.loop import fast_nets

    if not any(shutil.which(c) for c in ("g++", "clang++")):
        return {"skip": "TorchInductor on CPU needs a C++ compiler"}
    torch.set_num_threads(1)
    runs = {}
    for on in (False, True):
        torch.manual_seed(0)
        cfg = load_config(None, [*TINY["dncnn"], f"train.compile={str(on).lower()}"])
        m = build_method(cfg, torch.device("cpu"))
        compiled = []
        real = torch.compile
        spy = lambda fn, *a, _seen=compiled, _real=real, **kw: _seen.append(fn) or _real(fn, *a, **kw)  # noqa: E731
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torch, "compile", spy)
            fast_nets(cfg, m)
        runs[str(on).lower()] = {
            "compiled": len(compiled), "nets": len(m.nets),
            "losses": [m.train_step(batches(m.domains), s).losses for s in (1, 2, 3)],
            "keys": [list(n.state_dict()) for n in m.nets.values()],
        }  # fmt: skip
    return runs


@pytest.fixture(scope="module")
def compile_run(request):
    """:func:`compile_runs`, computed by a background process the suite started at collection (conftest.py)."""
    return request.config.stash[BACKGROUND].result("compile")


@pytest.mark.timeout(900)  # its fixture may wait for the background job to finish
def test_compile_compiles_every_net_in_place_and_trains_as_the_eager_nets(compile_run):
    """train.compile: each net goes through torch.compile (TorchInductor on CPU) in place: the same losses as the
    eager nets, step for step, and the same state-dict keys (checkpoints are unchanged)."""
    if "skip" in compile_run:
        pytest.skip(compile_run["skip"])
    eager, comp = compile_run["false"], compile_run["true"]
    assert eager["compiled"] == 0 and comp["compiled"] == comp["nets"] == eager["nets"] >= 1
    for e, c in zip(eager["losses"], comp["losses"], strict=True):
        assert c.keys() == e.keys()
        assert all(c[k] == pytest.approx(e[k], rel=1e-4) for k in e), (c, e)
    assert comp["keys"] == eager["keys"]


def test_compile_without_a_compiler_is_one_line_naming_the_key(monkeypatch):
    import importlib.util
    import shutil

    from raytrain.errors import RaytrainError
    from raytrain.train.preflight import check_compile

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    check_compile(load_config(None, []))  # off: nothing checked
    with pytest.raises(RaytrainError, match=r"^train.compile: true needs a C\+\+ compiler"):
        check_compile(load_config(None, ["train.compile=true"]))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    cfg = load_config(None, ["train.compile=true"])
    cfg.scaling.use_gpu = True
    with pytest.raises(RaytrainError, match=r"^train.compile: true needs Triton"):
        check_compile(cfg)


if __name__ == "__main__":  # the background job of the suite (conftest.py): its result as JSON on stdout
    import json

    print(json.dumps(compile_runs()))
