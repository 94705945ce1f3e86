"""EMA VQ, k-means, residual VQ, residual FSQ, BSQ: shapes, round trips, training behaviour."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.quantizers import (
    FSQ,
    BinarySphericalQuantizer,
    EMAVectorQuantizer,
    KMeansQuantizer,
    ResidualFSQ,
    ResidualVQ,
)
from speechbrain_codec.quantizers.kmeans import fit_kmeans, load_codebook, save_codebook
from speechbrain_codec.utils import CodecError


def clusters(n_per=100, centres=((0, 0), (5, 5), (-5, 5), (5, -5)), std=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, std, size=(n_per, len(c))) for c in centres]).astype(np.float32)
    return torch.from_numpy(rng.permutation(x))


ALL = [
    lambda: FSQ([8, 5, 5, 5], dim=6, num_codebooks=2),
    lambda: ResidualFSQ([8, 5, 5, 5], num_stages=3, dim=6),
    lambda: EMAVectorQuantizer(16, 6),
    lambda: ResidualVQ(2, 16, 6),
    lambda: KMeansQuantizer(torch.randn(16, 6)),
    lambda: BinarySphericalQuantizer(64),
]


@pytest.mark.parametrize("make", ALL)
def test_interface_round_trip_in_eval(make):
    q = make()
    x = torch.randn(3, 9, q.dim)
    q.train()(x)  # initialise / update where the method does
    q.eval()
    out = q(x)
    assert out.qlats.shape == x.shape
    assert out.toks.shape == (3, 9, q.num_codebooks) and out.toks.dtype == torch.int64
    assert all((out.toks[..., k] < n).all() for k, n in enumerate(q.codebook_sizes))
    assert torch.allclose(q.toks_to_qlats(out.toks), out.qlats, atol=1e-5)
    assert q.bits_per_frame == pytest.approx(sum(math.log2(n) for n in q.codebook_sizes))
    with pytest.raises(ValueError, match="expects lats"):
        q(torch.randn(3, 9, q.dim + 1))
    with pytest.raises(ValueError, match="NaN"):
        q(torch.full((1, 2, q.dim), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        q(torch.randn(1, 0, q.dim))


@pytest.mark.parametrize("make", ALL)
def test_straight_through_gradient(make):
    q = make().train()
    x = torch.randn(2, 5, q.dim, requires_grad=True)
    out = q(x)
    (out.qlats.pow(2).sum() + sum(out.losses.values(), torch.zeros(()))).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_ema_vq_learns_clusters_and_commitment_falls():
    x = clusters()
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(8, 2, decay=0.8, init="random")
    first = vq(x[None]).losses["commit"].item()
    for _ in range(30):
        last = vq(x[None]).losses["commit"].item()
    assert last < 0.05 < first
    for centre in ((0, 0), (5, 5), (-5, 5), (5, -5)):
        assert (vq.codebook - torch.tensor(centre)).norm(dim=1).min() < 0.3


def _far_init_vq(codebook_size, dim):
    """EMA VQ at its DEFAULT settings (decay 0.99, threshold 1) whose codebook starts far from
    the data: code 0 at the origin wins every vector, the others never get any."""
    vq = EMAVectorQuantizer(codebook_size, dim, init="none")
    assert vq.decay == 0.99 and vq.threshold == 1.0  # the LM-loss spec's values
    with torch.no_grad():
        vq.codebook.fill_(100.0)
        vq.codebook[0] = 0.0
        vq.ema_sum.copy_(vq.codebook)
    return vq


def test_collapsed_codebook_recovers_at_default_decay():
    """16 Gaussian clusters in 8-D, 16 codes started far away. With restarts that leave the
    stale EMA sum and count in place, the restarted codes are pulled back off the data and one
    code ends up serving nearly everything (measured: 2 of 16 used after 20 steps); with the
    statistics reset on restart all 16 are used (mean squared error 8.8 -> 1.5)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(16, 8, generator=gen) * 3

    def batch(n):
        return centres[torch.randint(0, 16, (n,), generator=gen)] + 0.3 * torch.randn(n, 8, generator=gen)

    torch.manual_seed(0)
    vq = _far_init_vq(16, 8)
    assert vq.eval()(batch(512)[None]).toks.unique().numel() == 1
    vq.train()
    for _ in range(20):
        vq(batch(512)[None])
    x = batch(2048)
    out = vq.eval()(x[None])
    assert out.toks.unique().numel() >= 12
    assert vq.codebook.abs().max() < 15  # every code sits within the data's range
    assert float((out.qlats[0] - x).pow(2).mean()) < 3.0  # collapsed: ~9 (one code for all)


def test_restarted_code_gets_fresh_statistics():
    x = clusters()
    torch.manual_seed(0)
    vq = _far_init_vq(8, 2)
    vq.train()(x[None])
    # codes 1..7 got no vectors: count 0.99 < 1, restarted on data points with count 1, sum = vector
    assert torch.equal(vq.ema_count[1:], torch.ones(7))
    assert torch.equal(vq.ema_sum[1:], vq.codebook[1:])
    assert all(bool((x == c).all(1).any()) for c in vq.codebook[1:])
    assert vq.ema_count[0] > 1  # code 0 took all 400 vectors: not restarted
    assert torch.allclose(vq.codebook[0], vq.ema_sum[0] / vq.ema_count[0])


def test_init_flag_is_saved_so_a_loaded_model_keeps_its_codebook():
    x = clusters()
    vq = EMAVectorQuantizer(4, 2, decay=0.99, init="kmeans")
    vq(x[None])
    assert "initialized" in vq.state_dict()
    fresh = EMAVectorQuantizer(4, 2, decay=0.99, init="random")
    fresh.load_state_dict(vq.state_dict())
    before = fresh.codebook.clone()
    fresh.train()(x[None])
    # an EMA step on the same data barely moves converged centres; re-initialising with random
    # data points would move them by ~0.1 (the cluster spread)
    assert bool(fresh.initialized)
    assert (fresh.codebook - before).abs().max() < 0.02


def test_residual_vq_and_fsq_refine_with_more_stages():
    x = torch.randn(4, 50, 8)
    errs = []
    for stages in (1, 2, 3):
        torch.manual_seed(0)
        rvq = ResidualVQ(stages, 32, 8, init="kmeans")
        for _ in range(5):
            rvq(x)
        errs.append(float((rvq.eval()(x).qlats - x).pow(2).mean()))
    assert errs[0] > errs[1] > errs[2]
    errs = [float((ResidualFSQ([8, 8, 8], num_stages=s)(x[..., :3] * 0.3).qlats - x[..., :3] * 0.3).pow(2).mean())
            for s in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]


def test_residual_fsq_projections_get_gradients():
    q = ResidualFSQ([8, 5, 5, 5], num_stages=2, dim=16)
    q(torch.randn(2, 7, 16)).qlats.pow(2).sum().backward()
    assert q.project_out.weight.grad.abs().sum() > 0  # the SIREN reference's STE misses this one
    assert q.project_in.weight.grad.abs().sum() > 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 14), st.lists(st.integers(0, 2**14 - 1), min_size=1, max_size=30))
def test_bsq_tokens_bijective(bits, toks):
    q = BinarySphericalQuantizer(2**bits)
    t = torch.tensor([v % 2**bits for v in toks]).view(1, -1, 1)
    codes = q.toks_to_qlats(t)
    assert torch.allclose(codes.norm(dim=-1), torch.ones(1, t.shape[1]), atol=1e-6)
    assert torch.equal(q(codes).toks, t)


def test_bsq_msb_first_and_errors():
    q = BinarySphericalQuantizer(8)
    assert q(torch.tensor([[[1.0, -1.0, -1.0]]])).toks.item() == 4
    assert q(torch.tensor([[[0.0, 0.0, 1e-9]]])).toks.item() == 1  # 0 is not > 0
    with pytest.raises(ValueError, match="power of two"):
        BinarySphericalQuantizer(1000)


def test_kmeans_fit_streaming_save_load(tmp_path):
    x = clusters(n_per=500).numpy()
    batches = [x[i : i + 137] for i in range(0, len(x), 137)]
    codebook, info = fit_kmeans(batches, 4, batch_size=400, epochs=2)
    assert info["frames"] == 2000
    assert sorted(map(tuple, np.round(codebook).tolist())) == [(-5, 5), (0, 0), (5, -5), (5, 5)]
    save_codebook(tmp_path / "cb.safetensors", codebook, k=4)
    q = KMeansQuantizer(str(tmp_path / "cb.safetensors"))
    assert torch.equal(q.codebook, torch.from_numpy(codebook))
    with pytest.raises(CodecError, match="codebook file missing"):
        load_codebook(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(CodecError, match="not a codebook file"):
        load_codebook(tmp_path / "bad.safetensors")
    with pytest.raises(CodecError, match="at least 4 frames"):
        fit_kmeans(x[:3], 4)
