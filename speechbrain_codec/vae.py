"""DAC-VAE: Descript Audio Codec's encoder/decoder around a Gaussian bottleneck (learnable_speech.md §2.1, §3).

The continuous latent autoencoder of Learnable-Speech. Two published variants at 24 kHz:

=====================  ==================  ==================
variant                ``dac_vae_64d_75hz``  ``dac_vae_80d_50hz``
=====================  ==================  ==================
encoder strides        2, 4, 5, 8 (hop 320)  2, 3, 4, 4, 5 (hop 480)
latent                 64-d, 75 Hz           80-d, 50 Hz
decoder strides        8, 5, 4, 2            5, 4, 4, 3, 2
=====================  ==================  ==================

The model is a :class:`~speechbrain_codec.codec.Codec` (so the generic trainer
``speechbrain_codec.bin.train_codec`` with ``brain: gan`` trains it): :class:`DACEncoder` ->
:class:`GaussianBottleneck` (a continuous "quantizer": no tokens, ``codebook_sizes == []``, its
``kl`` loss) -> :class:`DACDecoder`. Losses: :class:`DACMelLoss` (DAC's 7-scale log10 mel L1,
built on :class:`~speechbrain_codec.losses.MultiResolutionMelLoss`), the KL of the bottleneck,
least-squares GAN + feature matching (``speechbrain_codec.losses.adversarial``, through
``GANCodecBrain``) against :class:`DACDiscriminator` (our :class:`MultiPeriod` + DAC's
multi-band complex STFT discriminator). Weights (config.yml / configx2.yml): mel 15, fm 2, adv 1,
KL 0.1.

Example
-------
>>> vae = DACVAE.tiny(latent_dim=8, strides=(2, 4))
>>> x = torch.randn(2, 800)
>>> out = vae(x)
>>> out.sig.shape, out.qlats.shape, sorted(out.losses)
(torch.Size([2, 800]), torch.Size([2, 100, 8]), ['kl'])
>>> vae.lats_to_sig(vae.sig_to_lats(x)).shape
torch.Size([2, 800])
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .codec import Codec
from .decoders.base import Decoder
from .discriminators import CombinedDiscriminator
from .discriminators.hifigan import MultiPeriod
from .encoders.base import Encoder
from .losses.spectral import MultiResolutionMelLoss
from .quantizers.base import Quantizer, QuantizerOutput
from .utils import CodecError

__all__ = [
    "VARIANTS",
    "Snake1d",
    "DACEncoder",
    "DACDecoder",
    "GaussianBottleneck",
    "gaussian_kl",
    "DACVAE",
    "DACMelLoss",
    "MultiBandSTFTDiscriminator",
    "DACDiscriminator",
]

#: The two released DAC-VAE configurations (spec §2.1).
VARIANTS = {
    "dac_vae_64d_75hz": {"latent_dim": 64, "strides": (2, 4, 5, 8), "decoder_strides": (8, 5, 4, 2)},
    "dac_vae_80d_50hz": {"latent_dim": 80, "strides": (2, 3, 4, 4, 5), "decoder_strides": (5, 4, 4, 3, 2)},
}


def _wn_conv(*args, **kwargs) -> nn.Conv1d:
    return weight_norm(nn.Conv1d(*args, **kwargs))


def _wn_tconv(*args, **kwargs) -> nn.ConvTranspose1d:
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


class Snake1d(nn.Module):
    """``x + sin^2(alpha x) / (alpha + 1e-9)`` with one ``alpha`` per channel (init 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha * x).sin().pow(2) / (self.alpha + 1e-9)


class _ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(Snake1d(dim), _wn_conv(dim, dim, 7, dilation=dilation, padding=3 * dilation),
                                   Snake1d(dim), _wn_conv(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        pad = (x.shape[-1] - y.shape[-1]) // 2
        return (x[..., pad: x.shape[-1] - pad] if pad else x) + y


def _init_xavier(module: nn.Module, gain: float = 1.0) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            w = m.parametrizations.weight.original1 if hasattr(m, "parametrizations") else m.weight
            nn.init.xavier_normal_(w, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DACEncoder(Encoder):
    """``sig [B, T_wav] -> feats [B, T_wav / prod(strides), latent_dim]`` (DAC encoder, §2.1).

    Conv k7 1 -> ``d_model``; per stride ``s`` three residual units (dilation 1, 3, 9) at half
    width, Snake, strided conv ``k = 2 s`` doubling the channels; Snake, conv k3 -> latent.
    """

    def __init__(self, sample_rate: int = 24000, latent_dim: int = 64, d_model: int = 64,
                 strides: Sequence[int] = (2, 4, 5, 8)) -> None:
        super().__init__()
        self.sample_rate, self.out_channels = sample_rate, latent_dim
        self.hop_length = math.prod(strides)
        layers: list[nn.Module] = [_wn_conv(1, d_model, 7, padding=3)]
        d = d_model
        for s in strides:
            layers += [_ResidualUnit(d, 1), _ResidualUnit(d, 3), _ResidualUnit(d, 9), Snake1d(d),
                       _wn_conv(d, 2 * d, 2 * s, stride=s, padding=math.ceil(s / 2))]
            d *= 2
        layers += [Snake1d(d), _wn_conv(d, latent_dim, 3, padding=1)]
        self.block = nn.Sequential(*layers)
        _init_xavier(self)

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        return self.block(sig.unsqueeze(1)).transpose(1, 2)


class DACDecoder(Decoder):
    """``z [B, T, latent_dim] -> sig [B, T * prod(strides)]`` (DAC-VAE decoder, §2.1).

    1x1 conv (the post-bottleneck projection), conv k7 -> ``channels``; per stride a block
    [Snake, transposed conv ``k = 2 s`` halving the channels, three residual units]; Snake,
    conv k7 -> 1, tanh.
    """

    def __init__(self, sample_rate: int = 24000, latent_dim: int = 64, channels: int = 1536,
                 strides: Sequence[int] = (8, 5, 4, 2)) -> None:
        super().__init__()
        self.sample_rate, self.in_channels = sample_rate, latent_dim
        self.hop_length = math.prod(strides)
        layers: list[nn.Module] = [_wn_conv(latent_dim, latent_dim, 1), _wn_conv(latent_dim, channels, 7, padding=3)]
        d = channels
        for i, s in enumerate(strides):
            out = channels // 2 ** (i + 1)
            layers += [Snake1d(d), _wn_tconv(d, out, 2 * s, stride=s, padding=math.ceil(s / 2), output_padding=s % 2),
                       _ResidualUnit(out, 1), _ResidualUnit(out, 3), _ResidualUnit(out, 9)]
            d = out
        layers += [Snake1d(d), _wn_conv(d, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        _init_xavier(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(1, 2))[:, 0]


def gaussian_kl(mean: torch.Tensor, logs: torch.Tensor, as_implemented: bool = True) -> torch.Tensor:
    """KL to ``N(0, I)``: mean over batch and time of the sum over channels (``[B, T, C]`` inputs).

    ``as_implemented=True`` (the reference, spec §3 / pitfall 6): ``1/2 (m^2 + exp(l) - l - 1)``
    with ``l`` the tensor the sampler uses as *log-sigma*, i.e. it is treated as a log-variance.
    ``False``: the exact KL of ``N(m, exp(l)^2)``, i.e. ``l -> 2 l``.
    """
    lv = logs if as_implemented else 2 * logs
    return (0.5 * (mean.pow(2) + lv.exp() - lv - 1)).sum(-1).mean()


class GaussianBottleneck(Quantizer):
    """LeakyReLU, 1x1 conv ``C -> 2 C`` split into mean and log-sigma (clamped to [-14, 14]);
    ``z = m + eps * exp(log-sigma)`` in training, ``m`` in eval (``sample=True`` forces a draw).

    A continuous bottleneck: :meth:`forward` returns ``qlats = z``, no tokens (``toks [B, T, 0]``;
    ``codebook_sizes == []``, so the codec's bitrate is 0: the latents are floats, spec §2.7) and
    the ``kl`` loss (:func:`gaussian_kl`).
    """

    codebook_sizes: list[int] = []

    def __init__(self, dim: int, kl_as_implemented: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.proj = _wn_conv(dim, 2 * dim, 1)
        self.kl_as_implemented = kl_as_implemented
        self.sample = False

    def posterior(self, lats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``lats [B, T, C] -> (mean, log_sigma)`` each ``[B, T, C]``."""
        h = self.proj(F.leaky_relu(lats.transpose(1, 2), 0.2))
        mean, logs = h.chunk(2, dim=1)
        return mean.transpose(1, 2), logs.clamp(-14, 14).transpose(1, 2)

    def forward(self, lats: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        mean, logs = self.posterior(lats)
        if self.training or self.sample:
            eps = torch.randn(mean.shape, generator=generator, device=generator.device if generator else mean.device)
            z = mean + eps.to(mean) * logs.exp()
        else:
            z = mean
        toks = torch.zeros(lats.shape[0], lats.shape[1], 0, dtype=torch.long, device=lats.device)
        return QuantizerOutput(z, toks, {"kl": gaussian_kl(mean, logs, self.kl_as_implemented)})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        raise CodecError("a DAC-VAE has continuous latents, not tokens: use DACVAE.lats_to_sig")


class DACVAE(Codec):
    """The DAC-VAE as a :class:`Codec` (trained with ``train_codec``, ``brain: gan``).

    Parameters
    ----------
    variant : str
        ``"dac_vae_64d_75hz"`` (config.yml, default) or ``"dac_vae_80d_50hz"`` (configx2.yml);
        ``latent_dim``, ``strides`` and ``decoder_strides`` override it.
    d_model, decoder_channels : int
        Encoder base width (64) and decoder width (1536).
    """

    def __init__(self, variant: str = "dac_vae_64d_75hz", sample_rate: int = 24000, d_model: int = 64,
                 decoder_channels: int = 1536, latent_dim: int | None = None, strides: Sequence[int] | None = None,
                 decoder_strides: Sequence[int] | None = None, kl_as_implemented: bool = True) -> None:
        if variant not in VARIANTS:
            raise CodecError(f"DAC-VAE variant {variant!r}: choose one of {', '.join(VARIANTS)}")
        cfg = VARIANTS[variant]
        latent_dim = latent_dim or cfg["latent_dim"]
        strides = tuple(strides or cfg["strides"])
        decoder_strides = tuple(decoder_strides or (cfg["decoder_strides"] if strides == cfg["strides"]
                                                    else tuple(reversed(strides))))
        if math.prod(strides) != math.prod(decoder_strides):
            raise CodecError(f"DAC-VAE: encoder hop {math.prod(strides)} != decoder hop {math.prod(decoder_strides)}")
        super().__init__(DACEncoder(sample_rate, latent_dim, d_model, strides),
                         GaussianBottleneck(latent_dim, kl_as_implemented),
                         DACDecoder(sample_rate, latent_dim, decoder_channels, decoder_strides))
        self.variant, self.latent_dim = variant, latent_dim

    @classmethod
    def tiny(cls, latent_dim: int = 8, strides: Sequence[int] = (2, 4), sample_rate: int = 24000) -> "DACVAE":
        """A few-thousand-parameter model for tests."""
        return cls(sample_rate=sample_rate, d_model=4, decoder_channels=16, latent_dim=latent_dim, strides=strides)

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (75 or 50 at 24 kHz)."""
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """0: the latents are continuous (spec §2.7: no bitrate is defined)."""
        return 0.0

    @property
    def side_info_bits(self) -> float:
        return 0.0

    @property
    def layout(self):
        raise CodecError("a DAC-VAE sends no token stream (continuous latents): it cannot write .sbc files")

    def load_token_models(self, folder) -> None:
        """No token stream, so no entropy model."""

    def describe(self) -> dict:
        return {"encoder": "DACEncoder", "quantizer": "GaussianBottleneck", "decoder": "DACDecoder",
                "variant": self.variant, "sample_rate": self.sample_rate, "output_sample_rate": self.output_sample_rate,
                "hop_length": self.hop_length, "frame_rate": self.frame_rate, "latent_dim": self.latent_dim,
                "codebook_sizes": [], "bitrate": 0.0, "side_info_bits": 0.0, "streams": [],
                "num_parameters": sum(p.numel() for p in self.parameters()), "streaming": False}

    @torch.no_grad()
    def posterior(self, sig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sig [B, T_wav]`` (right-padded to the hop) -> ``(mean, log_sigma)`` ``[B, T, C]``."""
        return self.quantizer.posterior(self.sig_to_feats(sig))

    @torch.no_grad()
    def sig_to_lats(self, sig: torch.Tensor, lens: torch.Tensor | None = None, sample: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents ``[B, T, C]``: the posterior mean, or one draw ``z`` with ``sample=True`` (what
        the reference's extraction stores, §1.3)."""
        mean, logs = self.posterior(sig)
        if not sample:
            return mean
        eps = torch.randn(mean.shape, generator=generator, device=generator.device if generator else mean.device)
        return mean + eps.to(mean) * logs.exp()

    @torch.no_grad()
    def lats_to_sig(self, lats: torch.Tensor) -> torch.Tensor:
        """``lats [B, T, C] -> sig [B, T * hop]``."""
        return self.decoder(lats)

    def sig_to_toks(self, sig, lens=None):
        raise CodecError("a DAC-VAE has continuous latents, not tokens: use sig_to_lats")

    def toks_to_sig(self, toks):
        raise CodecError("a DAC-VAE has continuous latents, not tokens: use lats_to_sig")


class DACMelLoss(nn.Module):
    """DAC's multi-scale mel loss (§3): sum over 7 scales (n_mels, window) = (5, 32), (10, 64),
    (20, 128), (40, 256), (80, 512), (160, 1024), (320, 2048), hop = window / 4, of the L1 between
    ``log10(max(mel, 1e-5))`` (magnitude mel, librosa/Slaney filters, 0 - Nyquist).

    Built on :class:`MultiResolutionMelLoss` (natural log, mean over scales): ``x R / ln 10``.
    """

    def __init__(self, sample_rate: int = 24000,
                 n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
                 windows: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048)) -> None:
        super().__init__()
        self.inner = MultiResolutionMelLoss(sample_rate, n_ffts=tuple(windows), n_mels=tuple(n_mels), eps=1e-5,
                                            mel_scale="slaney", mel_norm="slaney", log_mode="clamp")
        self.scale = len(windows) / math.log(10)

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        return self.inner(sig_hat, sig) * self.scale


_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


class _BandSTFT(nn.Module):
    def __init__(self, window: int, filters: int, bands=_BANDS) -> None:
        super().__init__()
        self.window, self.hop = window, window // 4
        n_bins = window // 2 + 1
        self.bands = [(int(a * n_bins), int(b * n_bins)) for a, b in bands]
        self.register_buffer("win", torch.hann_window(window), persistent=False)

        def stack():
            return nn.ModuleList([
                weight_norm(nn.Conv2d(2, filters, (3, 9), padding=(1, 4))),
                *[weight_norm(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), padding=(1, 4))) for _ in range(3)],
                weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))),
            ])

        self.band_convs = nn.ModuleList([stack() for _ in self.bands])
        self.conv_post = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, sig: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(sig[:, 0].float(), self.window, self.hop, window=self.win, return_complex=True)
        x = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, frames, bins]
        feats, outs = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs):
            h = x[..., lo:hi]
            for conv in convs:
                h = F.leaky_relu(conv(h), 0.1)
                feats.append(h)
            outs.append(h)
        h = self.conv_post(torch.cat(outs, dim=-1))
        feats.append(h)
        return h.flatten(1), feats


class MultiBandSTFTDiscriminator(nn.Module):
    """DAC's complex multi-band STFT discriminator: windows 2048 / 1024 / 512 (hop 1/4), five
    frequency bands each (0-0.1, 0.1-0.25, 0.25-0.5, 0.5-0.75, 0.75-1 of the spectrum)."""

    def __init__(self, windows: Sequence[int] = (2048, 1024, 512), filters: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(_BandSTFT(w, filters) for w in windows)

    def forward(self, sig: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(sig)
            scores.append(s)
            feats.append(f)
        return scores, feats


class DACDiscriminator(nn.Module):
    """MPD (periods 2, 3, 5, 7, 11; no MSD) + :class:`MultiBandSTFTDiscriminator`, on inputs with
    the DC removed and scaled to 0.8 peak (§2.1). ``sig [B, 1, T] -> (scores, feats)``.

    ``width`` scales the MPD channels and the STFT filters (1: the published size).
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), windows: Sequence[int] = (2048, 1024, 512),
                 width: float = 1.0) -> None:
        super().__init__()
        self.inner = CombinedDiscriminator([MultiPeriod(periods, width),
                                            MultiBandSTFTDiscriminator(windows, max(2, round(32 * width)))])

    def forward(self, sig: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        sig = sig - sig.mean(-1, keepdim=True)
        sig = 0.8 * sig / (sig.abs().amax(-1, keepdim=True) + 1e-9)
        return self.inner(sig)
