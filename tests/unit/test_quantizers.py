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
from speechbrain_codec.quantizers.vq import nearest_codes
from speechbrain_codec.utils import CodecError


def clusters(n_per=100, centres=((0, 0), (5, 5), (-5, 5), (5, -5)), std=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, std, size=(n_per, len(c))) for c in centres]).astype(np.float32)
    return torch.from_numpy(rng.permutation(x))


ALL = [
    lambda: FSQ([8, 5, 5, 5], dim=6, num_codebooks=2),
    lambda: ResidualFSQ([8, 5, 5, 5], num_stages=3, dim=6),
    lambda: ResidualFSQ([8, 5, 5, 5], num_stages=3, dim=6, arrangement="siren"),
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


def test_restart_can_keep_the_statistics_as_the_reference():
    x = clusters()
    torch.manual_seed(0)
    vq = _far_init_vq(8, 2)
    vq.restart_stats = "keep"
    stale = vq.ema_sum[1:].clone() * vq.decay
    vq.train()(x[None])
    assert torch.allclose(vq.ema_count[1:], torch.full((7,), 0.99))  # stale count, not reset
    assert torch.allclose(vq.ema_sum[1:], stale)
    assert all(bool((x == c).all(1).any()) for c in vq.codebook[1:])  # the centres still restart
    with pytest.raises(ValueError, match="restart_stats"):
        EMAVectorQuantizer(4, 2, restart_stats="drop")


def test_nearest_codes_stay_float32_under_autocast():
    torch.manual_seed(0)
    x, codebook = torch.randn(2000, 128), torch.randn(64, 128)
    ref = nearest_codes(x, codebook)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(nearest_codes(x, codebook), ref)
        vq = EMAVectorQuantizer(64, 128, init="none").eval()
        vq.codebook.copy_(codebook)
        assert torch.equal(vq(x[None]).toks[0, :, 0], ref)


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


def _fsq_bound(z, levels, eps=1e-3):
    """FSQ's bound (vector-quantize-pytorch's), written out: tanh onto (L - 1)(1 + eps) / 2,
    shifted by half a step for even L."""
    lv = torch.tensor(levels, dtype=z.dtype)
    half_l = (lv - 1) * (1 + eps) / 2
    offset = torch.where(torch.tensor(levels) % 2 == 0, 0.5, 0.0).to(z.dtype)
    return torch.tanh(z + torch.atanh(offset / half_l)) * half_l - offset


def _residual_fsq_reference(z, levels, scales, arrangement, weights):
    """The spec's arithmetic (siren.md §2.3, "Residual FSQ") on the projected latent ``z``:
    siren: stage i quantises r_i itself, sum += s_i q_i, r_{i+1} = r_i - s_i q_i, loss
    sum_i w_i mean((q_i - z'_i)^2); rescaled: the same with r_i / s_i as the stage input."""
    half = torch.tensor([l // 2 for l in levels], dtype=z.dtype)
    basis = [math.prod(levels[:d]) for d in range(len(levels))]
    r, total, toks, loss = z, torch.zeros_like(z), [], torch.zeros(())
    for i, s in enumerate(scales):
        stage_in = r / s if arrangement == "rescaled" else r
        bounded = _fsq_bound(stage_in, levels)
        q, z_prime = torch.round(bounded) / half, bounded / half
        digits = torch.round(q * half + half).long()
        toks.append(sum(digits[..., d] * basis[d] for d in range(len(levels))))
        loss = loss + weights[i] * torch.mean((q - z_prime) ** 2)
        total = total + s * q
        r = r - s * q
    return total, torch.stack(toks, -1), loss


@pytest.mark.parametrize("arrangement", ["rescaled", "siren"])
def test_residual_fsq_equals_hand_written_arithmetic(arrangement):
    levels, stages = [8, 5, 5, 5], 3
    torch.manual_seed(0)
    q = ResidualFSQ(levels, num_stages=stages, dim=6, scale_decay=0.5, arrangement=arrangement,
                    stage_weights=[1.0, 0.5, 1 / 3])
    lats = torch.randn(2, 40, 6) * 2
    out = q(lats)
    with torch.no_grad():
        z = q.project_in(lats)
    total, toks, loss = _residual_fsq_reference(z, levels, [1.0, 0.5, 0.25], arrangement, [1.0, 0.5, 1 / 3])
    assert torch.equal(out.toks, toks)
    assert torch.allclose(out.qlats, q.project_out(total), atol=1e-6)
    assert torch.allclose(out.losses["commit"], loss, atol=1e-7)
    assert torch.allclose(q.toks_to_qlats(out.toks), out.qlats, atol=1e-6)
    assert q.bits_per_frame == pytest.approx(stages * math.log2(8 * 5 * 5 * 5))  # what the levels carry


def test_residual_fsq_arrangements_differ_and_default_weights():
    torch.manual_seed(0)
    lats = torch.randn(2, 40, 4)
    rescaled = ResidualFSQ([8, 5, 5, 5], num_stages=2)
    siren = ResidualFSQ([8, 5, 5, 5], num_stages=2, arrangement="siren")
    assert rescaled.arrangement == "rescaled" and rescaled(lats).losses == {}  # the default, unchanged
    assert siren.stage_weights == [1.0, 0.5]  # the spec's sum_i stage_loss_i / (i + 1)
    a, b = rescaled(lats).toks, siren(lats).toks
    assert torch.equal(a[..., 0], b[..., 0]) and not torch.equal(a[..., 1], b[..., 1])
    with pytest.raises(ValueError, match="arrangement"):
        ResidualFSQ([8, 5, 5, 5], arrangement="lucidrains")
    with pytest.raises(ValueError, match="stage_weights"):
        ResidualFSQ([8, 5, 5, 5], num_stages=2, stage_weights=[1.0])


@pytest.mark.parametrize("arrangement", ["rescaled", "siren"])
def test_residual_fsq_gradient_reaches_both_projections_and_scales(arrangement):
    torch.manual_seed(0)
    q = ResidualFSQ([8, 5, 5, 5], num_stages=2, dim=16, arrangement=arrangement, learnable_scales=True)
    out = q(torch.randn(2, 7, 16))
    out.qlats.pow(2).sum().backward()
    # the SIREN reference's straight-through gives the output projection no gradient (bug 7)
    assert q.project_out.weight.grad.abs().sum() > 0
    assert q.project_in.weight.grad.abs().sum() > 0
    assert q.scales.grad.abs().sum() > 0
    if arrangement == "siren":  # the stage loss trains the input side only
        q.zero_grad()
        q(torch.randn(2, 7, 16)).losses["commit"].backward()
        assert q.project_in.weight.grad.abs().sum() > 0
        assert q.project_out.weight.grad is None or q.project_out.weight.grad.abs().sum() == 0


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
