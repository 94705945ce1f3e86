"""Jukebox VQ-VAE (the LM-loss codec's HuBERT / F0 quantizers): frame arithmetic, reference
names, reference-only codebook state dicts, EMA training behaviour, eval determinism."""

from __future__ import annotations

import pytest
import torch

from speechbrain_codec.nn.jukebox import JukeboxEncoder, Resnet1D
from speechbrain_codec.quantizers import VQVAE


def hubert_vqvae(l_bins: int = 32) -> VQVAE:
    return VQVAE(768, 128, downs_t=[1], strides_t=[2], width=32, depth=4, m_conv=1.0,
                 dilation_growth_rate=3, l_bins=l_bins, mu=0.99)


def f0_vqvae() -> VQVAE:
    return VQVAE(1, 128, downs_t=[4], strides_t=[2], width=32, depth=4, m_conv=1.0,
                 dilation_growth_rate=3, l_bins=32, mu=0.99)


def reference_form(state_dict: dict) -> dict:
    """Our state dict as the reference saves it: only the codebook, named ``k``."""
    out = {}
    for key, value in state_dict.items():
        head, _, leaf = key.rpartition(".")
        if head == "vq.level_blocks.0":
            if leaf == "codebook":
                out[f"{head}.k"] = value.clone()
            continue
        out[key] = value.clone()
    return out


def _nearest_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact distance of each row of ``a`` to its nearest row of ``b``."""
    return (a[:, None] - b[None]).norm(dim=-1).min(1).values


@pytest.mark.parametrize("frames", [2, 50, 100, 302])
def test_hubert_frames_halve(frames):
    torch.manual_seed(0)
    model = hubert_vqvae().eval()
    x = torch.randn(2, frames, 768)
    lats = model.encode(x)
    assert model.downsample_factor == 2
    assert lats.shape == (2, frames // 2, 128)
    recon, toks, qlats, losses = model(x)
    assert recon.shape == x.shape and toks.shape == (2, frames // 2, 1) and qlats.shape == lats.shape
    assert set(losses) == {"commit"}


@pytest.mark.parametrize("frames", [16, 48, 400])
def test_f0_frames_divide_by_16(frames):
    torch.manual_seed(0)
    model = f0_vqvae().eval()
    x = torch.randn(1, frames, 1)
    assert model.downsample_factor == 16
    assert model.encode(x).shape == (1, frames // 16, 128)
    assert model(x)[0].shape == x.shape


def test_reference_layout():
    """The spec §2.3 layout under the reference's names."""
    sd = f0_vqvae().state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for i in range(4):  # 4 down blocks: Conv1d(k4, s2, p1) + Res
        c_in = 1 if i == 0 else 32
        assert shapes[f"encoder.level_blocks.0.model.{i}.0.weight"] == (32, c_in, 4)
        for j in range(4):
            assert shapes[f"encoder.level_blocks.0.model.{i}.1.model.{j}.model.1.weight"] == (32, 32, 3)
            assert shapes[f"encoder.level_blocks.0.model.{i}.1.model.{j}.model.3.weight"] == (32, 32, 1)
    assert shapes["encoder.level_blocks.0.model.4.weight"] == (128, 32, 3)
    assert shapes["decoder.level_blocks.0.model.0.weight"] == (32, 128, 3)
    for i in range(1, 5):  # 4 up blocks: Res + ConvTranspose1d(k4, s2, p1), the last to 128
        assert shapes[f"decoder.level_blocks.0.model.{i}.1.weight"] == (32, 128 if i == 4 else 32, 4)
    assert shapes["decoder.out.weight"] == (1, 128, 3)
    assert shapes["vq.level_blocks.0.codebook"] == (32, 128)
    hub = {k: tuple(v.shape) for k, v in hubert_vqvae(64).state_dict().items()}
    assert hub["encoder.level_blocks.0.model.0.0.weight"] == (32, 768, 4)
    assert hub["encoder.level_blocks.0.model.1.weight"] == (128, 32, 3)
    assert hub["decoder.level_blocks.0.model.1.1.weight"] == (32, 128, 4)
    assert hub["decoder.out.weight"] == (768, 128, 3)
    assert hub["vq.level_blocks.0.codebook"] == (64, 128)


def test_residual_dilations():
    res = Resnet1D(32, 4, 1.0, 3)
    assert [(b.model[1].dilation[0], b.model[1].padding[0], b.res_scale) for b in res.model] == [
        (1, 1, 1.0), (3, 3, 1.0), (9, 9, 1.0), (27, 27, 1.0)]
    enc = JukeboxEncoder(1, 8, 1, [2], [2], width=4, depth=1, m_conv=1.0)
    assert enc.downsample_factors == [4]


def test_reference_codebook_loads_strictly():
    torch.manual_seed(0)
    src = f0_vqvae()
    with torch.no_grad():
        src.quantizer.codebook.normal_()
    ref = reference_form(src.state_dict())
    assert "vq.level_blocks.0.k" in ref and not any("ema" in k or "initialized" in k for k in ref)
    dst = f0_vqvae()
    dst.load_state_dict(ref, strict=True)
    q = dst.quantizer
    torch.testing.assert_close(q.codebook, ref["vq.level_blocks.0.k"], rtol=0, atol=0)
    torch.testing.assert_close(q.ema_sum, ref["vq.level_blocks.0.k"], rtol=0, atol=0)
    assert torch.equal(q.ema_count, torch.ones(32)) and bool(q.initialized)
    assert "vq.level_blocks.0.k" in ref  # the caller's dict is not modified
    # our own full state dicts still load strictly
    again = f0_vqvae()
    again.load_state_dict(dst.state_dict(), strict=True)
    assert bool(again.quantizer.initialized)
    # a stray k next to our codebook is reported, not silently used
    mixed = dict(dst.state_dict(), **{"vq.level_blocks.0.k": torch.zeros(32, 128)})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        f0_vqvae().load_state_dict(mixed, strict=True)


def test_ema_init_and_commit_default_settings():
    torch.manual_seed(0)
    model = f0_vqvae().train()
    q = model.quantizer
    assert not bool(q.initialized) and q.decay == 0.99 and q.threshold == 1.0
    x = torch.randn(4, 320, 1)  # 4 x 20 = 80 latent vectors >= 32 codes
    lats = model.encode(x)
    out = model.quantize(lats)
    assert bool(q.initialized)  # first training forward initialises from the batch
    assert out.toks.shape == (4, 20, 1) and 0 <= out.toks.min() and out.toks.max() < 32
    # straight-through: the gradient reaches the encoder; commitment has a gradient too
    assert out.losses["commit"].requires_grad
    out.qlats.sum().backward()
    assert model.encoder.level_blocks[0].model[0][0].weight.grad is not None
    model.zero_grad()
    # eval: no update, the nearest code, detached, commitment = mean squared distance
    cb = q.codebook.clone()
    model.eval()
    out_eval = model.quantize(lats.detach())
    assert torch.equal(q.codebook, cb)
    codes = q.codebook[out_eval.toks[..., 0]]
    torch.testing.assert_close(out_eval.qlats, codes)
    assert not out_eval.qlats.requires_grad
    torch.testing.assert_close(out_eval.losses["commit"], torch.mean((lats.detach() - codes) ** 2))


def test_ema_update_from_loaded_codebook():
    """One training step after loading a reference codebook (count 1, sum = k): used codes
    move to (0.99 k + 0.01 sum) / (0.99 + 0.01 n); unused ones (count 0.99 < 1) restart on
    batch vectors."""
    torch.manual_seed(0)
    model = hubert_vqvae(16)
    lats = torch.randn(1, 40, 128)
    k = torch.cat([lats[0, :8] + 0.1 * torch.randn(8, 128), 50 + torch.randn(8, 128)])  # 8 far away
    sd = reference_form(model.state_dict())
    sd["vq.level_blocks.0.k"] = k
    model.load_state_dict(sd, strict=True)
    model.train()
    out = model.quantize(lats)
    idx = out.toks.reshape(-1)
    counts = torch.bincount(idx, minlength=16).float()
    sums = torch.zeros(16, 128).index_add_(0, idx, lats.reshape(-1, 128))
    used = counts > 0
    expected = (0.99 * k + 0.01 * sums) / (0.99 + 0.01 * counts)[:, None]
    torch.testing.assert_close(model.quantizer.codebook[used], expected[used])
    assert not used[8:].any()
    assert _nearest_distance(model.quantizer.codebook[~used], lats.reshape(-1, 128)).max() < 1e-4


def test_ema_initialises_from_batch():
    torch.manual_seed(0)
    model = hubert_vqvae(8)
    lats = torch.randn(1, 40, 128)
    model.quantizer._initialize(lats.reshape(-1, 128))
    # every initial code is one of the batch's vectors
    assert _nearest_distance(model.quantizer.codebook, lats.reshape(-1, 128)).max() < 1e-6
    model.reset_codebook()
    assert not bool(model.quantizer.initialized)


def test_eval_deterministic():
    torch.manual_seed(0)
    model = hubert_vqvae().eval()
    x = torch.randn(2, 40, 768)
    a, b = model(x), model(x)
    for u, v in zip(a[:3], b[:3]):
        assert torch.equal(u, v)
    assert torch.equal(a[3]["commit"], b[3]["commit"])
    assert not bool(model.quantizer.initialized)  # eval never initialises


def test_from_reference_config():
    enc = dict(input_emb_width=768, output_emb_width=128, levels=1, downs_t=[1], strides_t=[2], width=32,
               depth=4, m_conv=1.0, dilation_growth_rate=3)
    cfg = {"code_vq_params": dict(l_bins=64, emb_width=128, mu=0.99, levels=1),
           "code_encoder_params": enc, "code_decoder_params": dict(enc)}
    model = VQVAE.from_reference_config(cfg)
    assert model.codebook_size == 64 and model.downsample_factor == 2 and model.quantizer.decay == 0.99
    assert set(model.state_dict()) == set(hubert_vqvae(64).state_dict())
    bad = dict(cfg, code_decoder_params=dict(enc, width=16))
    with pytest.raises(ValueError, match="differ"):
        VQVAE.from_reference_config(bad)
    with pytest.raises(ValueError, match="one level"):
        VQVAE(1, 8, downs_t=[1, 1], strides_t=[2, 2], levels=2)
