"""EMA VQ under torch.distributed: 2 gloo processes on CPU, each fed DIFFERENT data.

The codebooks and EMA buffers must be bit-identical across processes (statistics all-reduced;
the initial codebook and restart vectors chosen by process 0 from the gathered batches and
broadcast), and equal to one process fed the concatenated global batch (rank 0's rows first):
exactly for the chosen vectors (process 0 draws them with the same random stream), within 1e-5
for the EMA sums (summation order differs).
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from speechbrain_codec.quantizers import EMAVectorQuantizer, ResidualVQ

WORLD = 2
STEPS = 6


def _make(kind):
    if kind == "rvq":
        return ResidualVQ(2, 16, 4, init="kmeans")
    if kind == "far":  # bad init far from the data: dead-code restarts from the first step
        vq = EMAVectorQuantizer(16, 4, init="none")
        with torch.no_grad():
            vq.codebook.copy_(torch.full((16, 4), 50.0))
            vq.codebook[0] = 0.0
            vq.ema_sum.copy_(vq.codebook)
        return vq
    return EMAVectorQuantizer(16, 4, init=kind)


def _batch(rank, step):
    """Different data (and sizes) per process; later steps shift the data so codes die."""
    gen = torch.Generator().manual_seed(1000 * rank + step)
    n = 12 + 7 * rank + step  # rank 0 has 12.., rank 1 19.. vectors (fewer than 16 at first: tiling)
    centre = torch.tensor([3.0 * rank, -2.0 * rank, step * 1.5, 0.0])
    return (centre + torch.randn(n, 4, generator=gen)).view(1, n, 4)


def _run(quantizer, batches):
    quantizer.train()
    toks = [quantizer(b).toks for b in batches]
    return {k: v.clone() for k, v in quantizer.state_dict().items()}, toks


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        results = {}
        for kind in ("random", "kmeans", "far", "rvq"):
            torch.manual_seed(7)  # process 0's stream must match the single process's
            results[kind] = _run(_make(kind), [_batch(rank, s) for s in range(STEPS)])
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_codebooks_identical_across_processes_and_equal_to_one_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    torch.set_num_threads(1)
    kinds = ("random", "kmeans", "far", "rvq")
    diverged = [(kind, name) for kind in kinds for name, value in ranks[0][kind][0].items()
                if not torch.equal(value, ranks[1][kind][0][name])]
    assert not diverged  # bit-identical across processes
    for kind in kinds:
        states = [r[kind][0] for r in ranks]
        torch.manual_seed(7)
        single, single_toks = _run(_make(kind), [torch.cat([_batch(r, s) for r in range(WORLD)], dim=1)
                                                 for s in range(STEPS)])
        for name, value in single.items():  # = one process on the global batch
            assert torch.allclose(states[0][name].float(), value.float(), atol=1e-5, rtol=0), (kind, name)
        # each process's tokens are the single process's tokens of its rows
        for step in range(STEPS):
            n0 = ranks[0][kind][1][step].shape[1]
            assert torch.equal(ranks[0][kind][1][step], single_toks[step][:, :n0]), (kind, step)
            assert torch.equal(ranks[1][kind][1][step], single_toks[step][:, n0:]), (kind, step)
    # the "far" and shifting-data runs did restart codes (otherwise the test shows little)
    assert (ranks[0]["far"][0]["codebook"] < 40).all()
