"""The mel loss is configurable to the LM-loss codec's spec (lmloss.md §3.2: HiFi-GAN's log-mel
with librosa Slaney filters, reflect padding by 384, non-centred STFT, sqrt(re²+im²+1e-9),
log(max(mel, 1e-5))), checked against librosa; its defaults stay torchaudio's MelSpectrogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from speechbrain_codec.losses import MelLoss, MultiResolutionMelLoss

librosa = pytest.importorskip("librosa")

SPEC_YAML = """
mel: !new:speechbrain_codec.losses.MelLoss
    sample_rate: 16000
    n_fft: 1024
    hop_length: 256
    n_mels: 80
    f_max: 8000
    mel_scale: slaney
    mel_norm: slaney
    center: False
    pad: 384
    mag_eps: 1.0e-9
    log_mode: clamp
    log_eps: 1.0e-5
multi: !new:speechbrain_codec.losses.MultiResolutionMelLoss
    sample_rate: 16000
    n_ffts: [1024]
    n_mels: [80]
    hop_lengths: [256]
    pads: [384]
    f_max: 8000
    mel_scale: slaney
    mel_norm: slaney
    center: False
    mag_eps: 1.0e-9
    log_mode: clamp
"""


def librosa_log_mel(y: np.ndarray) -> np.ndarray:
    """lmloss.md §3.2 by hand with NumPy + librosa (float64)."""
    y = np.pad(y, (384, 384), mode="reflect")
    spec = librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=False)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    fb = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0)  # slaney scale + norm
    return np.log(np.maximum(fb @ mag, 1e-5))


def _signals():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(12000) / 16000
    x = 0.3 * torch.sin(2 * torch.pi * 220 * t) * torch.sin(2 * torch.pi * 3 * t) + 0.05 * torch.randn(12000, generator=g)
    x[5000:6000] = 0  # a silent stretch reaches the 1e-5 floor
    y = x + 0.02 * torch.randn(12000, generator=g)
    return torch.stack([x, y]), torch.stack([y, 0.5 * x])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spec_mel_equals_librosa(dtype):
    from hyperpyyaml import load_hyperpyyaml

    losses = load_hyperpyyaml(SPEC_YAML)
    sig_hat, sig = _signals()
    for loss in (losses["mel"], losses["multi"].mels[0]):
        loss = loss.to(dtype)  # buffers follow
        ours = loss.log_mel(sig_hat.to(dtype)).double().numpy()
        ref = np.stack([librosa_log_mel(s) for s in sig_hat.double().numpy()])
        assert ours.shape == ref.shape == (2, 80, (12000 + 768 - 1024) // 256 + 1)
        assert np.abs(ours - ref).max() < 1e-4, np.abs(ours - ref).max()
        assert (ref == np.log(1e-5)).any()  # the floor is exercised
    ref_loss = np.mean(np.abs(np.stack([librosa_log_mel(s) for s in sig_hat.double().numpy()])
                              - np.stack([librosa_log_mel(s) for s in sig.double().numpy()])))
    for loss in (losses["mel"], losses["multi"]):
        value = loss.to(dtype)(sig_hat.to(dtype), sig.to(dtype)).item()
        assert value == pytest.approx(ref_loss, abs=1e-4)


def test_default_mel_loss_is_torchaudio_mel_spectrogram():
    sig_hat, sig = _signals()
    want = []
    for n, m in zip((512, 1024, 2048), (40, 80, 128)):
        mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=n, hop_length=n // 4, n_mels=m, power=1.0)
        want.append((torch.log(mel(sig_hat) + 1e-5) - torch.log(mel(sig) + 1e-5)).abs().mean())
    torch.testing.assert_close(MultiResolutionMelLoss(16000)(sig_hat, sig), torch.stack(want).mean())


def test_mel_loss_tensors_are_buffers_and_options_are_checked():
    loss = MultiResolutionMelLoss(16000, mel_scale="slaney", mel_norm="slaney")
    for mod in loss.modules():
        stray = [k for k, v in vars(mod).items() if isinstance(v, torch.Tensor)]
        assert not stray, stray
    loss = loss.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in loss.buffers())
    x = torch.randn(2, 4096, dtype=torch.float64)
    assert loss(x, x).dtype == torch.float64
    with pytest.raises(ValueError, match="mel_scale"):
        MelLoss(mel_scale="mel")
    with pytest.raises(ValueError, match="same length"):
        MultiResolutionMelLoss(n_ffts=(512, 1024), n_mels=(40, 80), pads=(0,))
