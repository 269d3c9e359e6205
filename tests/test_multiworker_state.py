"""Two ranks (torch.distributed on gloo, two processes, no Ray) train LIR with batch norm on different data: after the
loop's validation both hold the same model (parameters, BatchNorm running statistics, the random SCM backbone)."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TINY_BN_LIR = [
    "method.name=lir", "method.width=4", "method.n_res=1", "method.noise_dim=2", "method.disc_width=4",
    "method.disc_layers=2", "method.disc_scales=1", "method.repr_widths=[4,4,4,4]", "method.scm_backbone=random",
    "method.repr_steps=1", "method.norm=bn", "data.split=two_domain", "train.batch_size=2",
]  # fmt: skip


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def _rank(rank: int, world: int, init: str, out: str) -> None:
    from raytrain.config import load_config
    from raytrain.methods import build_method
    from raytrain.train.loop import seed_everything, validate

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    seed_everything(1009 + rank)  # as the loop seeds each rank: different draws on every rank
    m = build_method(load_config(None, TINY_BN_LIR), torch.device("cpu"))
    for step in range(1, 4):
        g = torch.Generator().manual_seed(10 * step + rank)  # each rank its own shard of the data
        batches = {"target": {"noisy": torch.rand(2, 1, 16, 16, generator=g)},
                   "source": {"clean": torch.rand(2, 1, 16, 16, generator=g)}}  # fmt: skip
        assert not m.train_step(batches, step).skipped
        m.end_step()
    bufs = lambda: flat(b for net in m.nets.values() for b in net.buffers() if b.is_floating_point())  # noqa: E731
    before = bufs()
    val = [(torch.rand(16, 16, 1).numpy(), torch.rand(16, 16, 1).numpy()) for _ in range(2)]  # (clean, noisy) HWC
    validate(m, val, rank, world, torch.device("cpu"))
    torch.save({"buffers_before": before, "buffers": bufs(),
                "params": flat(p for net in m.nets.values() for p in net.parameters()),
                "scm": flat(m.scm.parameters())}, f"{out}/{rank}.pt")  # fmt: skip
    dist.destroy_process_group()


def test_two_ranks_hold_the_same_model_after_validation(tmp_path):
    mp.spawn(_rank, args=(2, f"file://{tmp_path}/rendezvous", str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    assert (r0["buffers_before"] - r1["buffers_before"]).abs().max() > 1e-4  # the ranks' statistics did drift
    assert torch.equal(r0["buffers"], r1["buffers"])  # ... and are averaged before validation (and checkpoints)
    assert torch.allclose(r0["buffers"], (r0["buffers_before"] + r1["buffers_before"]) / 2, atol=1e-6)
    assert torch.equal(r0["params"], r1["params"])  # rank 0's initial weights, averaged gradients
    assert torch.equal(r0["scm"], r1["scm"])  # the random SCM backbone is seeded, the same on both ranks
