"""SIREN P1 bricks (siren.md §2-3): each against the spec's formula, hand-computed numbers or a
brute-force reference, with edge cases (one frame, padding, ties of the schedule)."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from torch import nn

from speechbrain_codec.compressors.conv_rate import ConvRateReduction, ConvUpsample
from speechbrain_codec.decoders.istft_generator import ISTFTGenerator, wrap_phase
from speechbrain_codec.discriminators.mrstft import MagnitudeSTFTDiscriminator, SirenDiscriminator
from speechbrain_codec.encoders import Encoder
from speechbrain_codec.losses.bit_estimation import TokenEntropyLM
from speechbrain_codec.losses.siren import P1_LOSS_WEIGHTS, SirenMelLoss, SirenMRSTFTLoss
from speechbrain_codec.nn.bitnet import BitConv1d, BitLinear, bitnet_convert, quantize_activations, ternarize
from speechbrain_codec.quantizers.product import ProductQuantizer, SirenFSQ, SirenResidualFSQ
from speechbrain_codec.siren import (ConformerBlock, FeatureReconstructor, InformationFactorizer, SirenCodec,
                                     WarmupLinear)


# ---------------------------------------------------------------------------- §2.1
@pytest.mark.parametrize("factor", [2, 4, 8, 16])
@pytest.mark.parametrize("frames", [16, 17, 31, 100])
def test_rate_reduction_gives_floor_t_over_f(factor, frames):
    down = ConvRateReduction(6, 5, factor)
    assert down.conv.kernel_size == (2 * factor,) and down.conv.stride == (factor,)
    assert down.conv.padding == (factor // 2,)
    assert down(torch.randn(2, frames, 6)).shape == (2, frames // factor, 5)


def test_rate_reduction_one_frame_and_refusals():
    assert ConvRateReduction(4, 3, 4)(torch.randn(1, 4, 4)).shape == (1, 1, 3)
    with pytest.raises(ValueError, match="fewer than the factor"):
        ConvRateReduction(4, 3, 4)(torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="1 or even"):
        ConvRateReduction(4, 3, 3)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_upsample_is_exactly_times_f_and_refines(factor):
    up = ConvUpsample(3, 8, factor)
    assert up.up.kernel_size == (2 * factor,) and up.up.padding == (factor // 2,)
    assert up(torch.randn(2, 1, 3)).shape == (2, factor, 8)
    assert up(torch.randn(2, 5, 3)).shape == (2, 5 * factor, 8)
    # the residual refinement (two k7 convs, SiLU between) is used: zeroing it changes the output
    x = torch.randn(1, 4, 3)
    before = up(x)
    nn.init.zeros_(up.refine[2].weight), nn.init.zeros_(up.refine[2].bias)
    assert not torch.allclose(before, up(x))
    assert up.refine[0].kernel_size == (7,) and isinstance(up.refine[1], nn.SiLU)


# ---------------------------------------------------------------------------- §2.3
def test_siren_fsq_grid_index_and_loss():
    q = SirenFSQ([8, 5, 5, 5])
    z = torch.randn(3, 7, 4) * 2
    toks, value, loss = q(z)
    zb = torch.tanh(z)
    levels = torch.tensor([8, 5, 5, 5])
    digits = torch.round((zb + 1) / 2 * (levels - 1))
    assert torch.allclose(value, digits / (levels - 1) * 2 - 1)
    assert torch.equal(toks, (digits[..., 0] + 8 * digits[..., 1] + 40 * digits[..., 2] + 200 * digits[..., 3]).long())
    assert torch.allclose(loss, torch.mean((value - zb) ** 2))
    assert torch.allclose(q.indices_to_values(toks), value)
    # both ends of [-1, 1] are levels (SIREN's grid, not vector-quantize-pytorch's)
    _, ends, _ = q(torch.tensor([[-50.0] * 4, [50.0] * 4]))
    assert ends.tolist() == [[-1.0] * 4, [1.0] * 4]
    # straight-through: d value / d z = d tanh / d z
    z = torch.randn(5, 4, requires_grad=True)
    q(z)[1].sum().backward()
    assert torch.allclose(z.grad, 1 - torch.tanh(z.detach()) ** 2)


def test_siren_fsq_sigmoid_bound():
    q = SirenFSQ([5], bound="sigmoid")
    z = torch.linspace(-3, 3, 11)[:, None]
    assert torch.allclose(q.bound(z), 2 * torch.sigmoid(z) - 1)


def reference_rfsq(q: SirenResidualFSQ, lats: torch.Tensor):
    """The spec's residual loop written out (no straight-through): values, toks, loss."""
    r = q.project_in(lats)
    total, toks, loss = torch.zeros_like(r), [], 0.0
    levels = torch.tensor(q.levels)
    basis = torch.cumprod(torch.tensor([1] + q.levels[:-1]), 0)
    for i in range(q.num_codebooks):
        zb = torch.tanh(r)
        digits = torch.round((zb + 1) / 2 * (levels - 1))
        v = digits / (levels - 1) * 2 - 1
        toks.append((digits.long() * basis).sum(-1))
        loss = loss + torch.mean((v - zb) ** 2) / (i + 1)
        total = total + q.scales[i] * v
        r = r - q.scales[i] * v
    return q.project_out(total), torch.stack(toks, -1), loss


@pytest.mark.parametrize("levels,stages,bits", [([8, 5, 5, 5], 1, 9.966), ([3] * 8, 4, 50.719), ([3, 3, 3, 3], 1, 6.340)])
def test_residual_fsq_matches_the_spec_loop(levels, stages, bits):
    torch.manual_seed(0)
    q = SirenResidualFSQ(levels, stages, dim=8)
    assert round(q.bits_per_frame, 3) == bits
    assert q.scales.requires_grad and torch.allclose(q.scales, 0.5 ** torch.arange(stages).float())
    lats = torch.randn(2, 9, 8) * 3
    out = q(lats)
    with torch.no_grad():
        qlats, toks, loss = reference_rfsq(q, lats)
    assert torch.equal(out.toks, toks)
    assert torch.allclose(out.qlats, qlats, atol=1e-6)
    assert torch.allclose(out.losses["commit"], loss)
    assert torch.allclose(q.toks_to_qlats(out.toks), out.qlats, atol=1e-6)


def test_residual_stages_reduce_the_error():
    torch.manual_seed(0)
    lats = torch.randn(4, 50, 8) * 0.5
    errors = []
    for stages in (1, 2, 4):
        q = SirenResidualFSQ([3] * 8, stages, dim=8)
        q.project_in, q.project_out = nn.Identity(), nn.Identity()  # compare in the FSQ space
        errors.append(float((q(lats).qlats - lats).pow(2).mean().detach()))
    assert errors[0] > errors[1] > errors[2]


def test_residual_fsq_gradient_reaches_both_projections():
    """The deliberate fix of the reference's straight-through placement (spec §7 item 7)."""
    q = SirenResidualFSQ([8, 5, 5, 5], 2, dim=8)
    q(torch.randn(2, 5, 8)).qlats.pow(2).sum().backward()
    for p in (q.project_in.weight, q.project_out.weight, q.scales):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_product_quantizer_nearest_code_and_loss():
    torch.manual_seed(0)
    pq = ProductQuantizer(256, 8, 256)
    assert pq.codebooks.abs().max() <= 1 / 256 and pq.bits_per_frame == 64.0
    x = torch.randn(3, 1, 256) * 0.01
    out = pq(x)
    groups = x.view(3, 1, 8, 32)
    for g in range(8):
        dist = ((groups[:, :, g, None, :] - pq.codebooks[g]) ** 2).sum(-1)  # brute force
        assert torch.equal(out.toks[..., g], dist.argmin(-1))
    q = pq.toks_to_qlats(out.toks).view(3, 1, 8, 32)
    expected = sum(2 * torch.mean((q[..., g, :] - groups[..., g, :]) ** 2) for g in range(8))
    assert torch.allclose(out.losses["commit"], expected)
    # straight-through to the input, and the codebook learns from the second term
    x = x.clone().requires_grad_(True)
    out = pq(x)
    (out.qlats.sum() + out.losses["commit"]).backward()
    assert x.grad is not None and pq.codebooks.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- §2.4
def test_entropy_lm_bits_are_the_nll_in_bits_of_every_token():
    torch.manual_seed(0)
    lm = TokenEntropyLM(1000, dim=16, num_layers=1, num_heads=2, dropout=0.0).eval()
    nn.init.zeros_(lm.out.weight), nn.init.zeros_(lm.out.bias)  # uniform prediction
    toks = torch.randint(0, 1000, (2, 5, 3))
    assert torch.allclose(lm(toks), torch.full((2,), 15 * math.log2(1000)), rtol=1e-5)
    # stage-major flattening, causal: the prediction of position p ignores later tokens
    torch.manual_seed(1)
    lm = TokenEntropyLM(7, dim=16, num_layers=2, num_heads=2, dropout=0.0).eval()
    toks = torch.randint(0, 7, (1, 4, 2))
    logits, target = lm.logits(toks)
    assert target.tolist() == [toks[0, :, 0].tolist() + toks[0, :, 1].tolist()]
    changed = toks.clone()
    changed[0, 3, 1] = (changed[0, 3, 1] + 1) % 7  # the last token of the sequence
    assert torch.allclose(lm.logits(changed)[0], logits, atol=1e-5)
    ce = nn.functional.cross_entropy(logits[0], target[0], reduction="sum") / math.log(2)
    assert torch.allclose(lm(toks), ce[None], rtol=1e-5)


# ---------------------------------------------------------------------------- §2.2, §2.5
def test_conformer_block_layout():
    blk = ConformerBlock(16, 4, 15)
    assert blk.conv.depthwise.kernel_size == (15,) and blk.conv.depthwise.groups == 16
    assert blk.ff1.net[1].out_features == 64 and isinstance(blk.conv.norm, nn.BatchNorm1d)
    assert blk(torch.randn(2, 1, 16)).shape == (2, 1, 16)  # one frame


def test_factoriser_speaker_is_pooled_and_removed_from_content_only():
    torch.manual_seed(0)
    f = InformationFactorizer(32, 16, 32, 16, 8, 4, 15, 16, 8, 8, 31).eval()
    assert f.semantic.blocks[0].conv.depthwise.kernel_size == (15,)
    assert f.prosody.blocks[0].conv.depthwise.kernel_size == (31,)
    x = torch.randn(2, 40, 32)
    out = f(x)
    assert out.semantic.shape == (2, 10, 8) and out.prosody.shape == (2, 5, 8) and out.speaker.shape == (2, 1, 16)
    # attention pooling is order-free: the speaker vector ignores the order of the frames
    assert torch.allclose(f(x.flip(1)).speaker, out.speaker, atol=1e-5)
    # the speaker projection is subtracted from the semantic branch's input, not the prosody's
    with torch.no_grad():
        f.speaker_removal.bias.add_(1.0)
    again = f(x)
    assert torch.allclose(again.prosody, out.prosody) and not torch.allclose(again.semantic, out.semantic)


def test_reconstructor_crops_to_the_shortest_and_fills_frames():
    r = FeatureReconstructor(8, 8, 16, 4, 8, fusion_dim=32, fusion_layers=1, fusion_heads=2).eval()
    assert r.semantic_up.up.out_channels == 16 and r.prosody_up.up.out_channels == 8
    sem, pro, spk = torch.randn(1, 3, 8), torch.randn(1, 2, 8), torch.randn(1, 1, 16)
    out = r(sem, pro, spk)
    assert out.shape == (1, 12, 32)  # min(3 x 4, 2 x 8)
    longer = r(sem, pro, spk, num_frames=14)
    assert torch.equal(longer[:, :12], out) and torch.equal(longer[:, 13], out[:, 11])


def test_generator_layout_length_and_inverse_stft():
    gen = ISTFTGenerator(16)
    assert [b.dwconv.dilation[0] for b in gen.blocks] == [1, 1, 2, 2, 4, 4, 8, 8]
    assert [b.conv1.dilation[0] for b in gen.res_blocks] == [1, 3, 5]
    assert gen.mag_head[-1].out_features == 513 and float(gen.phase_scale) == pytest.approx(0.1)
    small = ISTFTGenerator(8, dim=16, intermediate_dim=32, dilations=(1,), res_dilations=(1,))
    assert small(torch.randn(1, 1, 8)).shape == (1, 320)  # one frame
    mag, phase = small.spectrum(torch.randn(2, 6, 8) * 100)
    assert mag.min() >= math.exp(-10) - 1e-9 and mag.max() <= math.exp(10) * (1 + 1e-6)
    assert phase.min() >= -math.pi and phase.max() < math.pi
    # the synthesis is a centred inverse STFT (n_fft 1024, hop 320, Hann): the STFT of a signal of
    # T x 320 samples, given as the spectrum, comes back as that signal
    sig = torch.randn(1, 20 * 320)
    spec = torch.stft(sig, 1024, 320, 1024, window=torch.hann_window(1024), center=True, return_complex=True)
    small.spectrum = lambda x: (spec.abs()[..., :20], spec.angle()[..., :20])
    assert torch.allclose(small(torch.zeros(1, 20, 8)), sig, atol=1e-4)


def test_wrap_phase():
    x = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi + 0.5, -7.0])
    w = wrap_phase(x)
    assert torch.allclose(torch.cos(w), torch.cos(x), atol=1e-6) and (w >= -math.pi).all() and (w < math.pi).all()


# ---------------------------------------------------------------------------- §3
def test_discriminator_pair():
    d = SirenDiscriminator(width=1 / 16)
    assert [m.period for m in d.mpd.discriminators] == [2, 3, 5, 7, 11]
    assert [(m.n_fft, m.hop_length, m.win_length) for m in d.mrd.discriminators] == \
        [(1024, 120, 600), (2048, 240, 1200), (512, 50, 240)]
    scores, feats = d(torch.randn(2, 1, 8000))
    assert len(scores) == 8 and all(s.shape[0] == 2 for s in scores)
    m = MagnitudeSTFTDiscriminator(512, 50, 240, channels=4)
    _, f = m(torch.randn(1, 1, 8000))
    frames = 8000 // 50 + 1
    # [B, C, freq, time]: frequency kept, time halved by each of the three strided convs
    assert [tuple(x.shape[2:]) for x in f[:5]] == [(257, frames), (257, 81), (257, 41), (257, 21), (257, 21)]
    assert isinstance(m.act, nn.LeakyReLU) and m.act.negative_slope == 0.1


def test_mrstft_loss_is_batch_sc_plus_logmag():
    torch.manual_seed(0)
    y, y_hat = torch.randn(2, 4000), torch.randn(2, 4000)
    y[1] *= 10  # the batch-level Frobenius ratio differs from a per-utterance mean
    loss = SirenMRSTFTLoss()
    sc = lm = 0.0
    for n_fft, hop, win in [(1024, 120, 600), (2048, 240, 1200), (512, 50, 240)]:
        w = torch.hann_window(win)
        Y = torch.stft(y, n_fft, hop, win, window=w, return_complex=True).abs().clamp(min=1e-7)
        Yh = torch.stft(y_hat, n_fft, hop, win, window=w, return_complex=True).abs().clamp(min=1e-7)
        sc += torch.linalg.norm(Y - Yh) / torch.linalg.norm(Y)
        lm += (Y.log() - Yh.log()).abs().mean()
    assert torch.allclose(loss(y_hat, y), (sc + lm) / 3, rtol=1e-5)


def test_mel_loss_and_weights():
    torch.manual_seed(0)
    y, y_hat = torch.randn(2, 8000), torch.randn(2, 8000)
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, hop_length=256, n_mels=80)
    expected = (mel(y_hat).clamp(min=1e-5).log() - mel(y).clamp(min=1e-5).log()).abs().mean()
    assert torch.allclose(SirenMelLoss()(y_hat, y), expected)
    assert P1_LOSS_WEIGHTS == {"stft": 2.0, "mel": 45.0, "commit": 0.25, "adv": 1.0, "fm": 0.0, "entropy": 0.01}


def test_warmup_linear_schedule():
    s = WarmupLinear(2000, 100_000)
    assert s(0) == pytest.approx(1 / 2000) and s(1999) == 1.0 and s(2000) == 1.0
    assert s(51_000) == pytest.approx(0.5) and s(100_000) == 0.0 and s(150_000) == 0.0


# ---------------------------------------------------------------------------- BitNet (P2 option)
def test_bitnet_layers():
    w = torch.randn(16, 8)
    t = ternarize(w)
    s = w.abs().mean()
    assert set(torch.unique(torch.round(t / s)).tolist()) <= {-1.0, 0.0, 1.0}
    x = torch.randn(4, 100)
    q = quantize_activations(x)
    assert torch.unique(q).numel() <= 256 and torch.allclose(q, x, atol=float(x.abs().max()) / 127)
    layer = BitLinear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    conv = BitConv1d(4, 6, 3, padding=1)
    assert conv(torch.randn(2, 4, 9)).shape == (2, 6, 9)


# ---------------------------------------------------------------------------- the codec
class Feats(Encoder):
    """A stand-in for HuBERT: 32 channels at 50 Hz (centred frames: floor(N / 320))."""

    sample_rate, hop_length, out_channels = 16000, 320, 32

    def forward(self, sig, lens=None):
        return sig.unfold(-1, 320, 320)[..., :32] * 10


def tiny_codec(levels=(8, 5, 5, 5), stages=1, f_s=4, f_p=8, bitnet=False) -> SirenCodec:
    torch.manual_seed(0)
    return SirenCodec(
        Feats(), InformationFactorizer(32, 16, 32, 16, 8, f_s, 15, 16, 8, f_p, 31),
        SirenResidualFSQ(list(levels), stages, dim=8), SirenResidualFSQ(list(levels), stages, dim=8),
        ProductQuantizer(16, 8, 256), FeatureReconstructor(8, 8, 16, f_s, f_p, 32, 1, 2),
        ISTFTGenerator(32, dim=16, intermediate_dim=32, dilations=(1,), res_dilations=(1,)),
        entropy_dim=16, entropy_layers=1, entropy_heads=2, bitnet=bitnet).eval()


@pytest.mark.parametrize("levels,stages,f_s,rate", [((8, 5, 5, 5), 1, 4, 186.9), ((3,) * 8, 4, 4, 951.0),
                                                    ((3, 3, 3, 3), 1, 2, 198.1)])
def test_codec_bitrate_is_the_spec_arithmetic(levels, stages, f_s, rate):
    codec = tiny_codec(levels, stages, f_s)
    assert round(codec.bitrate, 1) == rate and codec.side_info_bits == 64.0
    assert [s.name for s in codec.layout] == ["semantic", "prosody", "speaker"]
    assert codec.layout["speaker"].per_utterance


@pytest.mark.parametrize("n", [320, 1279, 2560, 16000, 16001])
def test_codec_stream_lengths_and_round_trip(n):
    codec = tiny_codec()
    toks = codec.sig_to_toks(torch.randn(1, n) * 0.1)
    assert toks["semantic"].shape == (1, -(-n // 1280), 1) and toks["prosody"].shape == (1, -(-n // 2560), 1)
    assert toks["speaker"].shape == (1, 1, 8)
    sig = codec.toks_to_sig(toks)
    assert sig.shape[-1] == 320 * min(4 * toks["semantic"].shape[1], 8 * toks["prosody"].shape[1]) >= n - 1280


def test_codec_forward_losses_cached_features_and_batch_invariance():
    codec = tiny_codec()
    sig = torch.randn(2, 5120) * 0.1
    feats = codec.encoder(codec.pad(sig))
    out = codec(sig, features={"hubert": feats})
    assert out.sig.shape == sig.shape and set(out.losses) == {"commit", "entropy"}
    assert out.qfeats.shape == (2, 16, 32)
    direct = codec(sig)
    assert torch.equal(direct.toks["semantic"], out.toks["semantic"]) and torch.allclose(direct.sig, out.sig)
    one = codec.sig_to_toks(sig[:1])
    both = codec.sig_to_toks(sig)
    assert all(torch.equal(one[k], both[k][:1]) for k in one)


def test_codec_trains_every_part():
    codec = tiny_codec().train()
    out = codec(torch.randn(2, 5120) * 0.1)
    (out.sig.pow(2).mean() + out.losses["commit"] + out.losses["entropy"]).backward()
    for name in ("factorizer.semantic.reduce.conv.weight", "factorizer.speaker_mlp.0.weight",
                 "semantic_quantizer.project_out.weight", "speaker_quantizer.codebooks",
                 "reconstructor.input_proj.weight", "decoder.mag_head.0.weight", "entropy_models.semantic.out.weight"):
        grad = codec.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_bitnet_option_converts_all_but_final_projections():
    codec = tiny_codec(bitnet=True)
    assert isinstance(codec.factorizer.semantic.reduce.conv, BitConv1d)
    assert isinstance(codec.reconstructor.input_proj, BitLinear) and isinstance(codec.decoder.mag_head[0], BitLinear)
    assert type(codec.factorizer.semantic.proj) is nn.Linear and type(codec.decoder.mag_head[2]) is nn.Linear
    assert codec.decoder.blocks[0].dwconv.groups > 1 and type(codec.decoder.blocks[0].dwconv) is nn.Conv1d
    toks = codec.sig_to_toks(torch.randn(1, 5120) * 0.1)
    assert codec.toks_to_sig(toks).shape == (1, 5120) and round(codec.bitrate, 1) == 186.9
