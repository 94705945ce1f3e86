import pytest
import torch

from speechbrain_codec.codec import Codec
from speechbrain_codec.decoders import VocosDecoder
from speechbrain_codec.decoders.vocos import istft_same
from speechbrain_codec.encoders import MelEncoder
from speechbrain_codec.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss
from speechbrain_codec.quantizers import FSQ

from ..conftest import tiny_codec


@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_mel_encoder_frames(downsample):
    enc = MelEncoder(16000, 8, dim=16, intermediate_dim=32, num_layers=1, downsample=downsample)
    hop = 320 * downsample
    assert enc.frame_rate == 16000 / hop
    assert enc(torch.randn(2, 10 * hop)).shape == (2, 10, 8)


def test_istft_same_inverts_stft():
    n_fft, hop = 1280, 320
    window = torch.hann_window(n_fft)
    x = torch.randn(2, 40 * hop)
    pad = (n_fft - hop) // 2
    spec = torch.stft(torch.nn.functional.pad(x, (pad, pad)), n_fft, hop, window=window,
                      center=False, return_complex=True)
    assert spec.shape[-1] == 40
    y = istft_same(spec, n_fft, hop, window)
    assert y.shape == x.shape
    # exact away from the edges, where every sample is covered by several frames
    assert torch.allclose(y[:, n_fft:-n_fft], x[:, n_fft:-n_fft], atol=1e-4)


def test_vocos_decoder_shapes_and_error():
    dec = VocosDecoder(4, dim=16, intermediate_dim=32, num_layers=1, upsample=2)
    assert dec.hop_length == 640
    assert dec(torch.randn(2, 5, 4)).shape == (2, 3200)
    with pytest.raises(ValueError, match="expects"):
        dec(torch.randn(2, 5, 3))


def test_codec_rates_are_derived():
    codec = tiny_codec(levels=(8, 8), downsample=2, num_codebooks=3)
    assert codec.frame_rate == 25.0
    assert codec.bitrate == pytest.approx(25.0 * 3 * 6)
    toks = codec.sig_to_toks(torch.randn(2, 16000 + 17))
    assert toks.shape == (2, 26, 3)  # padded up to a whole frame
    assert codec.toks_to_sig(toks).shape == (2, 26 * 640)


def test_codec_hop_mismatch_is_refused():
    with pytest.raises(ValueError, match="would not last as long"):
        Codec(MelEncoder(16000, 4, dim=8, intermediate_dim=8, num_layers=1, downsample=2),
              FSQ([4, 4, 4, 4]), VocosDecoder(4, dim=8, intermediate_dim=8, num_layers=1))


def test_codec_forward_gradients_reach_every_parameter():
    codec = tiny_codec()
    sig = torch.randn(2, 6400) * 0.1
    out = codec(sig)
    loss = MultiResolutionMelLoss()(out.sig, sig) + MultiResolutionSTFTLoss()(out.sig, sig)
    loss.backward()
    no_grad = [n for n, p in codec.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, no_grad


def test_tokens_round_trip_through_codec():
    codec = tiny_codec().eval()
    sig = torch.randn(1, 8000)
    out = codec(sig)
    assert torch.equal(codec.sig_to_toks(sig), out.toks)
    assert torch.allclose(codec.toks_to_sig(out.toks), out.sig, atol=1e-5)


def test_spectral_losses():
    x = torch.randn(2, 16000)
    y = x + 0.3 * torch.randn_like(x)
    mel, stft = MultiResolutionMelLoss(), MultiResolutionSTFTLoss()
    assert float(mel(x, x)) == 0.0
    assert float(stft(x, x)) < 1e-5
    assert float(mel(y, x)) > 0.05 and float(stft(y, x)) > 0.05
    assert float(mel(x + 0.1 * torch.randn_like(x), x)) < float(mel(y, x))
