"""WavTokenizer (Ji et al., 2024): a single-codebook 24 kHz codec, as DP-SLM's token vocoder.

DP-SLM (its spec, §2.6) resynthesises with the WavTokenizer release ``small_600_24k_4096``
(hop 600, 40 Hz, 4096 codes, 480 b/s; a 75 Hz ``small_320_24k_4096`` is also published),
re-hosted by github.com/nicolvisser/WavTokenizer. This module builds the same network in our
lobes, with the reference's parameter names, so the published state dict loads unchanged
(strictly, all 199 tensors, the unused EnCodec SEANet decoder included):

* ``feature_extractor.encodec.encoder`` (:class:`SEANetEncoder`): EnCodec's 24 kHz SEANet
  encoder (weight-normalised convolutions, ``n_filters`` 32, one residual block per stage with
  compress 2, ELU, strided convolutions of kernel ``2 r`` for the ratios ``downsamples``
  reversed, a 2-layer LSTM with a skip connection, a last convolution to ``dimension`` 512).
  Non-causal "reflect" padding with EnCodec's extra right padding, so ``T`` samples give
  ``ceil(T / hop)`` frames (no zero padding to a multiple of the hop beforehand);
* ``feature_extractor.encodec.quantizer`` (:class:`WavTokenizerVQ`): one EnCodec-style
  Euclidean codebook of ``vq_bins`` 4096 codewords: nearest codeword by
  ``-(|x|^2 - 2 x.e + |e|^2)`` (argmax, first index), codebook initialised by k-means
  (``vq_kmeans`` 200 iterations) on the first training batch, EMA updates (decay 0.99,
  Laplace smoothing 1e-5), dead codes (EMA count < 2) replaced by batch vectors, a commitment
  loss ``mse(sg(q), x)``, straight-through output;
* ``feature_extractor.encodec.decoder`` (:class:`SEANetDecoder`): EnCodec's SEANet decoder
  (ratios 8, 5, 4, 2), built and loaded as in the reference but never used for synthesis;
* ``backbone`` (:class:`VocosBackbone`): a 7-tap embedding convolution, a ``pos_net``
  (two ResNet blocks with GroupNorm(32) and dropout 0.1, a single-head self-attention block,
  two ResNet blocks, a GroupNorm), an adaptive LayerNorm, ``num_layers`` ConvNeXt blocks with
  adaptive LayerNorms (scale and shift embeddings per "bandwidth id"; inference uses id 0,
  :attr:`WavTokenizer.bandwidth_id`) and layer scale ``1 / num_layers``, a final LayerNorm;
* ``head`` (:class:`ISTFTHead`): a linear layer to ``n_fft + 2`` (log magnitude, phase),
  ``exp`` clipped at 100, and the inverse STFT with "same" padding
  (:func:`~speechbrain_codec.decoders.vocos.istft_same`, the reference's overlap-add with the
  window-envelope normalisation; Hann window, a saved buffer ``head.istft.window``).

Checked against the reference on both published hops (``tests/unit/test_wavtokenizer_golden.py``,
golden tensors of ``../shared/golden/wavtokenizer``): codes exactly, every stage and the
waveform within 1e-5.

As a :class:`~speechbrain_codec.codec.Codec`: :class:`WavTokenizer` *is* one (encoder =
the SEANet encoder, quantizer = the VQ, decoder = backbone + head), so ``forward(sig)`` gives
the :class:`~speechbrain_codec.codec.CodecOutput` that
:class:`~speechbrain_codec.training.GANCodecBrain` trains (the quantizer's ``commit`` loss; the
reference's generator loss is ``45 mel + 1000 commit`` + MPD / MRD adversarial and
feature-matching terms), ``sig_to_toks`` / ``toks_to_sig`` run the ``.sbc`` bitstream commands,
and :meth:`WavTokenizer.save_codec` writes a folder that ``speechbrain-codec encode/decode
--codec`` loads (``codec.yaml`` + the state dict with the reference names).

Deliberate differences from the reference: the k-means initialisation computes distances as
``|x|^2 - 2 x.e + |e|^2`` (the reference broadcasts an ``[N, K, D]`` difference tensor, 40 GB
for one published training batch); under ``torch.distributed`` the codebook is not
synchronised (the reference's broadcast is commented out too). Like the reference, a dead-code
replacement is overwritten by the EMA renormalisation of the same step.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .codec import Codec
from .decoders.base import Decoder
from .decoders.hifigan import WeightNormConv1d, WeightNormConvTranspose1d
from .decoders.vocos import istft_same
from .encoders.base import Encoder
from .quantizers.base import Quantizer, QuantizerOutput
from .utils import CodecError, load_state_checked

__all__ = [
    "PUBLISHED",
    "AdaLayerNorm",
    "EuclideanCodebook",
    "ISTFTHead",
    "SEANetDecoder",
    "SEANetEncoder",
    "VocosBackbone",
    "WavTokenizer",
    "WavTokenizerDecoder",
    "WavTokenizerVQ",
    "tiny_wavtokenizer",
]

logger = logging.getLogger("speechbrain_codec")

SAMPLE_RATE = 24000

# The two published configurations (github.com/nicolvisser/WavTokenizer configs.py), in the
# reference's WavTokenizerArgs layout. Widths not in the reference's arguments (hard-coded there):
# SEANet n_filters 32, latent dimension 512.
PUBLISHED = {
    "small_600_24k_4096": {
        "feature_extractor": {"encodec_model": "encodec_24khz", "bandwidths": [6.6, 6.6, 6.6, 6.6],
                              "train_codebooks": True, "num_quantizers": 1, "downsamples": [6, 5, 5, 4],
                              "vq_bins": 4096, "vq_kmeans": 200},
        "backbone": {"input_channels": 512, "dim": 768, "intermediate_dim": 2304, "num_layers": 12,
                     "adanorm_num_embeddings": 4},
        "head": {"dim": 768, "n_fft": 2400, "hop_length": 600, "padding": "same"},
    },
    "small_320_24k_4096": {
        "feature_extractor": {"encodec_model": "encodec_24khz", "bandwidths": [6.6, 6.6, 6.6, 6.6],
                              "train_codebooks": True, "num_quantizers": 1, "downsamples": [8, 5, 4, 2],
                              "vq_bins": 4096, "vq_kmeans": 200},
        "backbone": {"input_channels": 512, "dim": 768, "intermediate_dim": 2304, "num_layers": 12,
                     "adanorm_num_embeddings": 4},
        "head": {"dim": 768, "n_fft": 1280, "hop_length": 320, "padding": "same"},
    },
}


# ---------------------------------------------------------------------------------------------
# EnCodec SEANet (streamable convolutions without the streaming: non-causal, reflect padding)
# ---------------------------------------------------------------------------------------------
def _pad1d(x: torch.Tensor, left: int, right: int, mode: str = "reflect") -> torch.Tensor:
    """EnCodec's ``pad1d``: reflect padding that also works when the input is shorter than the
    padding (zero-extended first, the extension cut afterwards)."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    length, extra = x.shape[-1], 0
    max_pad = max(left, right)
    if length <= max_pad:
        extra = max_pad - length + 1
        x = F.pad(x, (0, extra))
    out = F.pad(x, (left, right), mode="reflect")
    return out[..., : out.shape[-1] - extra]


class _NormConv1d(nn.Module):
    """Holds the weight-normalised convolution as ``.conv`` (EnCodec's ``NormConv1d``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.conv = WeightNormConv1d(*args, **kwargs)


class _NormConvTranspose1d(nn.Module):
    """Holds the weight-normalised transposed convolution as ``.convtr``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.convtr = WeightNormConvTranspose1d(*args, **kwargs)


class SConv1d(nn.Module):
    """EnCodec's non-causal ``SConv1d``: ``(k - 1) d - (s - 1)`` samples of reflect padding split
    evenly (the extra one on the left), plus the right padding that makes the last window
    complete, so ``L`` samples give ``ceil(L / s)`` frames."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, pad_mode: str = "reflect") -> None:
        super().__init__()
        self.conv = _NormConv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.kernel_size, self.stride, self.dilation, self.pad_mode = kernel_size, stride, dilation, pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = (self.kernel_size - 1) * self.dilation + 1, self.stride
        total = k - s
        length = x.shape[-1]
        n_frames = (length - k + total) / s + 1
        extra = (math.ceil(n_frames) - 1) * s + (k - total) - length
        right = total // 2
        return self.conv.conv(_pad1d(x, total - right, right + extra, self.pad_mode))


class SConvTranspose1d(nn.Module):
    """EnCodec's non-causal ``SConvTranspose1d``: the ``k - s`` extra output samples trimmed
    evenly (the extra one on the left)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.convtr = _NormConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr.convtr(x)
        total = self.kernel_size - self.stride
        right = total // 2
        return y[..., total - right : y.shape[-1] - right]


class SLSTM(nn.Module):
    """LSTM over time with a skip connection, ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)
        y, _ = self.lstm(x)
        return (y + x).permute(1, 2, 0)


class SEANetResnetBlock(nn.Module):
    """``shortcut(x) + conv1(elu(conv3(elu(x))))`` with ``dim // compress`` hidden channels and a
    1x1 convolution as the shortcut (EnCodec's ``true_skip=False``)."""

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1, compress: int = 2) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(), SConv1d(dim, hidden, kernel_size, dilation=dilation), nn.ELU(), SConv1d(hidden, dim, 1)
        )
        self.shortcut = SConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class SEANetEncoder(Encoder):
    """EnCodec's SEANet encoder as WavTokenizer configures it: ``sig [B, T] -> feats [B, N, C]``
    with ``N = ceil(T / hop_length)``, ``hop_length = prod(ratios)``.

    Parameters
    ----------
    ratios : list of int
        Upsampling ratios as the reference writes them (applied reversed here: [6, 5, 5, 4]
        downsamples by 4, 5, 5, 6).
    n_filters, dimension : int
        Base width (doubled at every stage) and output channels.
    lstm : int
        LSTM layers before the last convolution.
    sample_rate : int
        Input rate.

    Example
    -------
    >>> enc = SEANetEncoder([6, 5, 5, 4], n_filters=2, dimension=8)
    >>> enc(torch.randn(2, 1201)).shape, enc.hop_length
    (torch.Size([2, 3, 8]), 600)
    """

    def __init__(self, ratios=(6, 5, 5, 4), n_filters: int = 32, dimension: int = 512, lstm: int = 2,
                 sample_rate: int = SAMPLE_RATE, kernel_size: int = 7, last_kernel_size: int = 7,
                 residual_kernel_size: int = 3, compress: int = 2) -> None:
        super().__init__()
        self.sample_rate, self.out_channels = sample_rate, dimension
        self.ratios = list(reversed(list(ratios)))
        self.hop_length = math.prod(self.ratios)
        mult = 1
        layers: list[nn.Module] = [SConv1d(1, n_filters, kernel_size)]
        for ratio in self.ratios:
            layers += [SEANetResnetBlock(mult * n_filters, residual_kernel_size, 1, compress), nn.ELU(),
                       SConv1d(mult * n_filters, mult * n_filters * 2, 2 * ratio, stride=ratio)]
            mult *= 2
        if lstm:
            layers.append(SLSTM(mult * n_filters, lstm))
        layers += [nn.ELU(), SConv1d(mult * n_filters, dimension, last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def encode(self, sig: torch.Tensor) -> torch.Tensor:
        """``sig [B, T] or [B, 1, T] -> emb [B, C, N]`` (the reference's channels-first layout)."""
        if sig.dim() == 2:
            sig = sig[:, None]
        if sig.dim() != 3 or sig.shape[1] != 1:
            raise ValueError(f"SEANetEncoder expects a mono signal [B, T] or [B, 1, T], got {list(sig.shape)}")
        if sig.shape[-1] == 0:
            raise ValueError("SEANetEncoder got an empty signal")
        return self.model(sig)

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """``sig [B, T] -> feats [B, ceil(T / hop_length), C]`` (``lens`` is not used: the
        reference encodes padded frames like any others)."""
        return self.encode(sig).transpose(1, 2)


class SEANetDecoder(nn.Module):
    """EnCodec's SEANet decoder ``z [B, C, N] -> sig [B, 1, N * prod(ratios)]``; part of the
    published checkpoint, unused by WavTokenizer's synthesis (the Vocos backbone decodes).

    Example
    -------
    >>> SEANetDecoder([8, 5, 4, 2], n_filters=2, dimension=8)(torch.randn(1, 8, 3)).shape
    torch.Size([1, 1, 960])
    """

    def __init__(self, ratios=(8, 5, 4, 2), n_filters: int = 32, dimension: int = 512, lstm: int = 2,
                 kernel_size: int = 7, last_kernel_size: int = 7, residual_kernel_size: int = 3,
                 compress: int = 2) -> None:
        super().__init__()
        mult = 2 ** len(ratios)
        layers: list[nn.Module] = [SConv1d(dimension, mult * n_filters, kernel_size)]
        if lstm:
            layers.append(SLSTM(mult * n_filters, lstm))
        for ratio in ratios:
            layers += [nn.ELU(), SConvTranspose1d(mult * n_filters, mult * n_filters // 2, 2 * ratio, stride=ratio),
                       SEANetResnetBlock(mult * n_filters // 2, residual_kernel_size, 1, compress)]
            mult //= 2
        layers += [nn.ELU(), SConv1d(n_filters, 1, last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)


# ---------------------------------------------------------------------------------------------
# EnCodec-style vector quantizer (one codebook)
# ---------------------------------------------------------------------------------------------
def _sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    n = samples.shape[0]
    if n >= num:
        idx = torch.randperm(n, device=samples.device)[:num]
    else:
        idx = torch.randint(0, n, (num,), device=samples.device)
    return samples[idx]


def _neg_dist(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """The reference's ``-(|x|^2 - 2 x e^T + |e|^2)`` ``[N, K]`` (float32 outside autocast)."""
    e = embed.t()
    return -(x.pow(2).sum(1, keepdim=True) - 2 * x @ e + e.pow(2).sum(0, keepdim=True))


class EuclideanCodebook(nn.Module):
    """EnCodec's ``EuclideanCodebook`` (buffers ``inited``, ``cluster_size``, ``embed``,
    ``embed_avg``; see the module docstring for the training rules).

    Example
    -------
    >>> cb = EuclideanCodebook(4, 8, kmeans_init=False)
    >>> cb.encode(torch.randn(5, 4)).shape
    torch.Size([5])
    """

    def __init__(self, dim: int, codebook_size: int, kmeans_init: bool = True, kmeans_iters: int = 10,
                 decay: float = 0.99, epsilon: float = 1e-5, threshold_ema_dead_code: float = 2) -> None:
        super().__init__()
        self.decay, self.epsilon = decay, epsilon
        self.codebook_size, self.kmeans_iters = codebook_size, kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        if kmeans_init:
            embed = torch.zeros(codebook_size, dim)
        else:
            embed = torch.empty(codebook_size, dim)
            nn.init.kaiming_uniform_(embed)
        self.register_buffer("inited", torch.tensor([float(not kmeans_init)]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, D] -> [N]`` nearest codeword (first index at a tie)."""
        with torch.autocast(x.device.type, enabled=False):
            return _neg_dist(x.float(), self.embed.float()).max(dim=-1).indices

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.embed)

    @torch.no_grad()
    def init_embed_(self, data: torch.Tensor) -> None:
        """k-means (``kmeans_iters`` iterations from random samples) on the first batch."""
        if self.inited.item():
            return
        data = data.float()
        means = _sample_vectors(data, self.codebook_size)
        bins = torch.zeros(self.codebook_size, device=data.device, dtype=torch.long)
        for _ in range(self.kmeans_iters):
            buckets = _neg_dist(data, means).max(dim=-1).indices
            bins = torch.bincount(buckets, minlength=self.codebook_size)
            zero = bins == 0
            new = torch.zeros_like(means).index_add_(0, buckets, data) / bins.masked_fill(zero, 1)[:, None]
            means = torch.where(zero[:, None], means, new)
        self.embed.copy_(means)
        self.embed_avg.copy_(means)
        self.cluster_size.copy_(bins)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def _expire_codes(self, x: torch.Tensor) -> None:
        if self.threshold_ema_dead_code == 0:
            return
        expired = self.cluster_size < self.threshold_ema_dead_code
        if expired.any():
            self.embed.copy_(torch.where(expired[:, None], _sample_vectors(x, self.codebook_size), self.embed))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D] -> (codewords [N, D], indices [N])``; EMA update in training mode."""
        self.init_embed_(x)
        idx = self.encode(x)
        q = self.decode(idx)
        if self.training:
            with torch.no_grad():
                xf = x.detach().float()
                self._expire_codes(xf)
                onehot = F.one_hot(idx, self.codebook_size).type(xf.dtype)
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_((xf.t() @ onehot).t(), alpha=1 - self.decay)
                n = self.cluster_size.sum()
                smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
                self.embed.copy_(self.embed_avg / smoothed[:, None])
        return q, idx


class _VQLayer(nn.Module):
    """``VectorQuantization`` (no projection: the codebook has the latent's width)."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(**kwargs)


class _RVQ(nn.Module):
    def __init__(self, num_quantizers: int, **kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_VQLayer(**kwargs) for _ in range(num_quantizers)])


class WavTokenizerVQ(Quantizer):
    """WavTokenizer's quantizer (EnCodec's ``ResidualVectorQuantizer`` with one codebook) behind
    the :class:`~speechbrain_codec.quantizers.Quantizer` interface: ``lats [B, T, C] ->``
    codewords (straight-through in training), ``toks [B, T, 1]``, ``losses["commit"] =
    mse(sg(q), lats)``.

    Example
    -------
    >>> vq = WavTokenizerVQ(8, 64, kmeans_init=False).eval()
    >>> out = vq(torch.randn(2, 5, 8))
    >>> out.toks.shape, vq.bits_per_frame, torch.equal(vq.toks_to_qlats(out.toks), out.qlats)
    (torch.Size([2, 5, 1]), 6.0, True)
    """

    def __init__(self, dim: int, bins: int = 4096, kmeans_iters: int = 200, kmeans_init: bool = True,
                 decay: float = 0.99, num_quantizers: int = 1) -> None:
        super().__init__()
        if num_quantizers != 1:
            raise ValueError(f"WavTokenizer has one codebook (num_quantizers 1), got {num_quantizers}")
        self.dim, self.bins, self.codebook_sizes = dim, bins, [bins]
        self.vq = _RVQ(num_quantizers, dim=dim, codebook_size=bins, kmeans_init=kmeans_init,
                       kmeans_iters=kmeans_iters, decay=decay)

    @property
    def codebook(self) -> EuclideanCodebook:
        return self.vq.layers[0]._codebook

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        flat = lats.reshape(-1, self.dim)
        q, idx = self.codebook(flat)
        q = q.view_as(lats).to(lats.dtype)
        commit = F.mse_loss(q.detach().float(), lats.float())
        if self.training:
            q = lats + (q - lats).detach()
        return QuantizerOutput(q, idx.view(*lats.shape[:-1], 1), {"commit": commit})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        return self.codebook.decode(toks[..., 0].long())


# ---------------------------------------------------------------------------------------------
# Vocos backbone with adaptive LayerNorm, and the iSTFT head
# ---------------------------------------------------------------------------------------------
class AdaLayerNorm(nn.Module):
    """LayerNorm (no affine) then ``x * scale[id] + shift[id]`` (embeddings per condition id)."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.scale(cond_id) + self.shift(cond_id)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7-tap conv, (adaptive) LayerNorm, Linear-GELU-Linear, layer scale, residual."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float,
                 adanorm_num_embeddings: int | None = None) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.adanorm = adanorm_num_embeddings is not None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if self.adanorm else nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                      if layer_scale_init_value > 0 else None)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.norm(y, cond_id) if self.adanorm else self.norm(y)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.transpose(1, 2)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)  # written out as the reference (F.silu rounds differently)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """``x + conv2(drop(swish(gn2(conv1(swish(gn1(x)))))))``, 3-tap convolutions."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = _group_norm(channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.norm2 = _group_norm(channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over time with 1x1 q/k/v/out convolutions and a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = nn.Conv1d(channels, channels, 1)
        self.k = nn.Conv1d(channels, channels, 1)
        self.v = nn.Conv1d(channels, channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        w = torch.bmm(q.permute(0, 2, 1), k) * (int(q.shape[1]) ** -0.5)
        w = F.softmax(w, dim=2)
        return x + self.proj_out(torch.bmm(v, w.permute(0, 2, 1)))


class VocosBackbone(nn.Module):
    """WavTokenizer's Vocos backbone: ``x [B, C_in, T]`` (channels first, as the reference) ->
    ``[B, T, dim]``; ``cond_id`` is the bandwidth id (a ``[1]`` long tensor).

    Example
    -------
    >>> bb = VocosBackbone(8, 32, 64, 1, adanorm_num_embeddings=4)
    >>> bb(torch.randn(2, 8, 5), torch.tensor([0])).shape
    torch.Size([2, 5, 32])
    """

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 layer_scale_init_value: float | None = None, adanorm_num_embeddings: int | None = None) -> None:
        super().__init__()
        if dim % 32:
            raise ValueError(f"the backbone's GroupNorm(32) needs dim divisible by 32, got {dim}")
        self.input_channels = input_channels
        self.embed = nn.Conv1d(input_channels, dim, 7, padding=3)
        self.adanorm = adanorm_num_embeddings is not None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if self.adanorm else nn.LayerNorm(dim, eps=1e-6)
        scale = layer_scale_init_value or 1 / num_layers
        self.convnext = nn.ModuleList(
            [ConvNeXtBlock(dim, intermediate_dim, scale, adanorm_num_embeddings) for _ in range(num_layers)]
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)  # before pos_net, as the reference
        self.pos_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim), AttnBlock(dim), ResnetBlock(dim),
                                     ResnetBlock(dim), _group_norm(dim))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pos_net(self.embed(x)).transpose(1, 2)
        if self.adanorm:
            if cond_id is None:
                raise ValueError("this backbone has adaptive LayerNorms: pass a bandwidth id")
            x = self.norm(x, cond_id)
        else:
            x = self.norm(x)
        x = x.transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond_id)
        return self.final_layer_norm(x.transpose(1, 2))


class _ISTFT(nn.Module):
    """Inverse STFT; the Hann window is a saved buffer (``head.istft.window``)."""

    def __init__(self, n_fft: int, hop_length: int, padding: str = "same") -> None:
        super().__init__()
        if padding not in ("same", "center"):
            raise ValueError(f"iSTFT padding must be 'same' or 'center', got {padding!r}")
        self.n_fft, self.hop_length, self.padding = n_fft, hop_length, padding
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.n_fft, self.window, center=True)
        return istft_same(spec, self.n_fft, self.hop_length, self.window)


class ISTFTHead(nn.Module):
    """``x [B, T, dim] -> sig [B, T * hop_length]``: linear to log magnitude and phase,
    ``mag = min(exp(.), 100)``, ``S = mag (cos p + i sin p)``, inverse STFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same") -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = _ISTFT(n_fft, hop_length, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.out(x).transpose(1, 2)
        mag, p = x.float().chunk(2, dim=1)
        mag = torch.exp(mag).clip(max=1e2)
        return self.istft(torch.complex(mag * torch.cos(p), mag * torch.sin(p)))


class WavTokenizerDecoder(Decoder):
    """Backbone + head as a :class:`~speechbrain_codec.decoders.Decoder`:
    ``x [B, T, C] -> sig [B, T * hop_length]`` with the bandwidth id ``bandwidth_id``.

    Example
    -------
    >>> dec = WavTokenizerDecoder(VocosBackbone(8, 32, 64, 1, adanorm_num_embeddings=4),
    ...                           ISTFTHead(32, 64, 16))
    >>> dec(torch.randn(1, 5, 8)).shape
    torch.Size([1, 80])
    """

    def __init__(self, backbone: VocosBackbone, head: ISTFTHead, sample_rate: int = SAMPLE_RATE,
                 bandwidth_id: int = 0) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.in_channels = backbone.input_channels
        self.hop_length = head.istft.hop_length
        self.sample_rate, self.bandwidth_id = sample_rate, bandwidth_id

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"WavTokenizerDecoder expects [B, T, {self.in_channels}], got {list(x.shape)}")
        cond = torch.tensor([self.bandwidth_id], device=x.device)
        return self.head(self.backbone(x.transpose(1, 2), cond))


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------
class _EncodecModel(nn.Module):
    def __init__(self, encoder: SEANetEncoder, decoder: SEANetDecoder, quantizer: WavTokenizerVQ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.quantizer = encoder, decoder, quantizer


class _EncodecFeatures(nn.Module):
    def __init__(self, encodec: _EncodecModel) -> None:
        super().__init__()
        self.encodec = encodec


def _flat_config(cfg: dict) -> dict:
    """The reference's ``WavTokenizerArgs`` dict (``feature_extractor`` / ``backbone`` / ``head``;
    also inside a Lightning config's ``model.init_args``) -> :class:`WavTokenizer` keywords."""
    if "model" in cfg and isinstance(cfg["model"], dict):
        cfg = cfg["model"].get("init_args", cfg["model"])
    parts = {}
    for key in ("feature_extractor", "backbone", "head"):
        part = cfg.get(key)
        if not isinstance(part, dict):
            raise KeyError(key)
        parts[key] = part.get("init_args", part)
    fe, bb, hd = parts["feature_extractor"], parts["backbone"], parts["head"]
    if fe.get("encodec_model", "encodec_24khz") != "encodec_24khz":
        raise ValueError(f"unsupported encodec_model {fe['encodec_model']!r} (only encodec_24khz)")
    downsamples = fe.get("downsamples", fe.get("dowmsamples"))  # the reference's yaml spells it "dowmsamples"
    return dict(
        downsamples=list(downsamples), dimension=int(bb["input_channels"]), vq_bins=int(fe.get("vq_bins", 4096)),
        vq_kmeans=int(fe.get("vq_kmeans", 200)), num_quantizers=int(fe.get("num_quantizers", 1)),
        bandwidths=list(fe.get("bandwidths", [6.6] * 4)), dim=int(bb["dim"]),
        intermediate_dim=int(bb["intermediate_dim"]), num_layers=int(bb["num_layers"]),
        layer_scale_init_value=bb.get("layer_scale_init_value"),
        adanorm_num_embeddings=bb.get("adanorm_num_embeddings"), n_fft=int(hd["n_fft"]),
        head_hop_length=int(hd["hop_length"]), padding=hd.get("padding", "same"), head_dim=int(hd["dim"]),
    )


class WavTokenizer(Codec):
    """WavTokenizer with the reference's parameter names (see the module docstring).

    Parameters
    ----------
    downsamples : list of int
        SEANet ratios as the reference's config writes them ([6, 5, 5, 4]: hop 600, 40 Hz;
        [8, 5, 4, 2]: hop 320, 75 Hz).
    n_filters, dimension : int
        SEANet base width (32) and latent size (512; the VQ's and the backbone's input size).
    vq_bins, vq_kmeans, num_quantizers : int
        Codebook size (4096), k-means iterations of the codebook initialisation (200), codebooks (1).
    kmeans_init : bool
        Initialise the codebook by k-means on the first training batch (the reference); False:
        a random (Kaiming-uniform) codebook usable at once.
    bandwidths : list of float
        The reference's per-id bandwidths (unused with one codebook; kept for the config).
    dim, intermediate_dim, num_layers, layer_scale_init_value, adanorm_num_embeddings
        Vocos backbone (768, 2304, 12, 1/12, 4 embeddings).
    n_fft, head_hop_length, padding, head_dim
        iSTFT head (2400 / 1280, the hop, "same", the backbone's dim).
    bandwidth_id : int
        Adaptive-LayerNorm embedding used for synthesis (0, as DP-SLM).
    decoder_ratios : list of int
        The unused EnCodec decoder's ratios ([8, 5, 4, 2] in both releases).

    Example
    -------
    >>> model = tiny_wavtokenizer(hop=600).eval()
    >>> codes = model.encode(torch.randn(1, 1, 24000))
    >>> codes.shape, model.decode(codes).shape, model.frame_rate, model.bitrate
    (torch.Size([1, 1, 40]), torch.Size([1, 1, 24000]), 40.0, 480.0)
    """

    def __init__(
        self,
        downsamples=(6, 5, 5, 4),
        n_filters: int = 32,
        dimension: int = 512,
        vq_bins: int = 4096,
        vq_kmeans: int = 200,
        num_quantizers: int = 1,
        kmeans_init: bool = True,
        bandwidths=(6.6, 6.6, 6.6, 6.6),
        dim: int = 768,
        intermediate_dim: int = 2304,
        num_layers: int = 12,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = 4,
        n_fft: int = 2400,
        head_hop_length: int | None = None,
        padding: str = "same",
        head_dim: int | None = None,
        bandwidth_id: int = 0,
        decoder_ratios=(8, 5, 4, 2),
        lstm: int = 2,
    ) -> None:
        hop = math.prod(downsamples)
        head_hop_length = hop if head_hop_length is None else int(head_hop_length)
        if head_hop_length != hop:
            raise ValueError(f"the head's hop_length {head_hop_length} != the encoder's hop {hop} "
                             f"(prod of downsamples {list(downsamples)})")
        if head_dim is not None and int(head_dim) != dim:
            raise ValueError(f"the head's dim {head_dim} != the backbone's dim {dim}")
        if adanorm_num_embeddings is not None and not 0 <= bandwidth_id < adanorm_num_embeddings:
            raise ValueError(f"bandwidth_id {bandwidth_id} outside the {adanorm_num_embeddings} embeddings")
        encoder = SEANetEncoder(downsamples, n_filters, dimension, lstm)
        seanet_decoder = SEANetDecoder(decoder_ratios, n_filters, dimension, lstm)
        quantizer = WavTokenizerVQ(dimension, vq_bins, vq_kmeans, kmeans_init, num_quantizers=num_quantizers)
        backbone = VocosBackbone(dimension, dim, intermediate_dim, num_layers, layer_scale_init_value,
                                 adanorm_num_embeddings)
        head = ISTFTHead(dim, n_fft, hop, padding)
        decoder = WavTokenizerDecoder(backbone, head, SAMPLE_RATE, bandwidth_id)
        super().__init__(encoder, quantizer, decoder)  # Codec's attributes and checks
        # ... but the lobes live under the reference's names: unregister Codec's, keep views
        for name in ("encoder", "quantizer", "decoder"):
            del self._modules[name]
        object.__setattr__(self, "_decoder_view", decoder)
        self.feature_extractor = _EncodecFeatures(_EncodecModel(encoder, seanet_decoder, quantizer))
        self.backbone, self.head = backbone, head
        self.config = dict(
            downsamples=list(downsamples), n_filters=n_filters, dimension=dimension, vq_bins=vq_bins,
            vq_kmeans=vq_kmeans, num_quantizers=num_quantizers, kmeans_init=kmeans_init,
            bandwidths=list(bandwidths), dim=dim, intermediate_dim=intermediate_dim, num_layers=num_layers,
            layer_scale_init_value=layer_scale_init_value, adanorm_num_embeddings=adanorm_num_embeddings,
            n_fft=n_fft, padding=padding, bandwidth_id=bandwidth_id, decoder_ratios=list(decoder_ratios),
            lstm=lstm,
        )

    # ------------------------------------------------------------------ the Codec lobes
    @property
    def encoder(self) -> SEANetEncoder:
        return self.feature_extractor.encodec.encoder

    @property
    def quantizer(self) -> WavTokenizerVQ:
        return self.feature_extractor.encodec.quantizer

    @property
    def decoder(self) -> WavTokenizerDecoder:
        return self._decoder_view

    @property
    def bandwidth_id(self) -> int:
        return self._decoder_view.bandwidth_id

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            object.__setattr__(new, key, copy.deepcopy(value, memo))
        return new

    def pad(self, sig: torch.Tensor) -> torch.Tensor:
        """No padding: the SEANet's own (reflect) padding makes ``ceil(T / hop)`` frames, as the
        reference (zero padding to a multiple of the hop would change the last frame's code)."""
        return sig

    # ------------------------------------------------------------------ the reference's API
    def _cond(self, device) -> torch.Tensor:
        return torch.tensor([self.bandwidth_id], device=device)

    @torch.no_grad()
    def encode_features(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, 1, T] or [B, T] -> (features [B, C, N], codes [B, 1, N])``: the reference's
        ``encode`` (quantised features, channels first), codes batch-first."""
        emb = self.encoder.encode(wav)
        idx = self.quantizer.codebook.encode(emb.transpose(1, 2).reshape(-1, emb.shape[1]))
        codes = idx.view(emb.shape[0], 1, emb.shape[2])
        return self.codes_to_features(codes), codes

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, 1, T] (or [B, T]) at 24 kHz -> codes [B, 1, ceil(T / hop)]`` (int64, 0..4095)."""
        return self.encode_features(wav)[1]

    def codes_to_features(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, 1, N] (or [B, N]) -> features [B, C, N]`` (codebook lookup)."""
        if codes.dim() == 2:
            codes = codes[:, None]
        if codes.dim() != 3 or codes.shape[1] != 1:
            raise ValueError(f"WavTokenizer codes must be [B, 1, N] or [B, N], got {list(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.quantizer.bins):
            raise ValueError(f"WavTokenizer codes must lie in [0, {self.quantizer.bins}), got "
                             f"{int(codes.min())}..{int(codes.max())}")
        return self.quantizer.codebook.decode(codes[:, 0].long()).transpose(1, 2)

    def features_to_wav(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, C, N] -> wav [B, N * hop]``: the reference's ``decode``."""
        return self.head(self.backbone(features, self._cond(features.device)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, 1, N] (or [B, N]) -> wav [B, 1, N * hop]`` at 24 kHz."""
        return self.features_to_wav(self.codes_to_features(codes))[:, None]

    # ------------------------------------------------------------------ loading and saving
    def codec_yaml(self) -> str:
        """A ``codec.yaml`` (HyperPyYAML) that builds this model."""
        lines = ["# WavTokenizer (speechbrain_codec.wavtokenizer); codec.ckpt holds the reference's state dict",
                 "codec: !new:speechbrain_codec.wavtokenizer.WavTokenizer"]
        lines += [f"    {k}: {json.dumps(v)}" for k, v in self.config.items()]
        return "\n".join(lines) + "\n"

    def save_codec(self, folder: str | os.PathLike) -> None:
        """Write a codec folder (``codec.yaml``, ``codec.ckpt`` with the reference's parameter
        names, ``codec.json``) for ``speechbrain-codec encode/decode --codec folder`` and
        :meth:`Codec.from_pretrained <speechbrain_codec.codec.Codec.from_pretrained>`."""
        self.save_pretrained(folder, self.codec_yaml())

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, map_location: str | torch.device = "cpu",
                        trust_remote_code: bool = False) -> "WavTokenizer":
        """Load a WavTokenizer from

        * a published folder: a config (``config.json`` or ``*.yaml``, the reference's
          ``WavTokenizerArgs`` layout or the upstream Lightning config) and weights
          (``*.safetensors``, or a ``.ckpt`` / ``.pt`` / ``.pth`` / ``.bin`` PyTorch file, a
          Lightning checkpoint's ``state_dict`` filtered to ``feature_extractor.*``, ``backbone.*``
          and ``head.*`` as the reference's loader does); a folder with weights only and a name
          containing ``600_24k`` / ``320_24k`` uses the matching :data:`PUBLISHED` config;
        * a folder written by :meth:`save_codec`;
        * a Hugging Face hub id of either (downloaded with ``huggingface_hub``).

        SEANet ``n_filters`` and ``dimension`` (not in the reference's config) are read off the
        weights. Loading is strict (every key, every shape).

        Raises
        ------
        CodecError
            No such folder and no download, no config or weights, or weights that do not fit.
        """
        folder = Path(source)
        if not folder.is_dir():
            if folder.exists() or str(source).startswith((".", "/", "~")):
                raise CodecError(f"{source}: not a WavTokenizer folder (expected a config and weights)")
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(str(source)))
            except Exception as err:
                raise CodecError(f"{source}: no such folder, and the hub download failed ({type(err).__name__}); "
                                 "pass a local folder with the config and the weights") from None
        if (folder / "codec.yaml").is_file():
            model = Codec.from_pretrained(folder, map_location, trust_remote_code)
            if not isinstance(model, WavTokenizer):
                raise CodecError(f"{folder}: codec.yaml builds a {type(model).__name__}, not a WavTokenizer")
            return model
        cfg = _find_config(folder)
        wpath = _find_weights(folder)
        state = _read_state(wpath, map_location)
        try:
            kwargs = _flat_config(cfg)
        except (KeyError, TypeError, ValueError) as err:
            raise CodecError(f"{folder}: the config is not a WavTokenizer config ({type(err).__name__}: {err})") from None
        w0 = state.get("feature_extractor.encodec.encoder.model.0.conv.conv.weight_v")
        emb = state.get("feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed")
        if w0 is None or emb is None:
            raise CodecError(f"{wpath}: not a WavTokenizer state dict (no SEANet encoder or codebook)")
        if int(emb.shape[1]) != kwargs["dimension"]:
            raise CodecError(f"{wpath}: codebook width {emb.shape[1]} != the config's backbone input_channels "
                             f"{kwargs['dimension']}; use the config that came with these weights")
        kwargs["n_filters"] = int(w0.shape[0])
        try:
            model = cls(**kwargs)
        except ValueError as err:
            raise CodecError(f"{folder}: {err}") from None
        load_state_checked(model, state, str(wpath), "Use the config that came with these weights")
        model.to(map_location)
        model.config_hash = model.compute_config_hash(model.codec_yaml())
        return model.eval()


_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def _find_config(folder: Path) -> dict:
    import yaml

    candidates = [folder / "config.json"] + sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    for path in candidates:
        if not path.is_file():
            continue
        try:
            cfg = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        except Exception as err:
            raise CodecError(f"{path}: not readable ({type(err).__name__})") from None
        if isinstance(cfg, dict):
            return cfg
    for name, cfg in PUBLISHED.items():
        if name.split("_", 1)[1] in folder.name or any(name.split("_", 1)[1] in p.name for p in folder.iterdir()):
            return copy.deepcopy(cfg)
    raise CodecError(f"{folder}: no WavTokenizer config (config.json or *.yaml); add the release's config")


def _find_weights(folder: Path) -> Path:
    for suffix in _WEIGHT_SUFFIXES:
        found = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file())
        if found:
            preferred = [p for p in found if "state_dict" in p.name or "wavtokenizer" in p.name.lower()]
            return (preferred or found)[0]
    raise CodecError(f"{folder}: no weights (*.safetensors or *.ckpt); download the release's checkpoint")


def _read_state(path: Path, map_location) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device=str(map_location))
        else:
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        why = (str(err).strip().splitlines() or [""])[0][:160]
        raise CodecError(f"{path}: not a readable checkpoint ({type(err).__name__}: {why})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CodecError(f"{path}: not a state dict")
    return {k: v for k, v in state.items() if k.startswith(("feature_extractor.", "backbone.", "head."))}


def tiny_wavtokenizer(hop: int = 600, n_filters: int = 2, dimension: int = 16, dim: int = 32,
                      intermediate_dim: int = 64, num_layers: int = 1, vq_bins: int = 4096, vq_kmeans: int = 10,
                      kmeans_init: bool = False, seed: int | None = 0) -> WavTokenizer:
    """A randomly initialised WavTokenizer small enough for tests and debug recipes (every layer
    kind, ratio, kernel and n_fft of the release; widths shrunk). ``hop``: 600 (40 Hz) or 320
    (75 Hz). ``kmeans_init=False`` gives a random codebook usable without training.

    Example
    -------
    >>> m = tiny_wavtokenizer(hop=320)
    >>> m.frame_rate, m.codebook_sizes
    (75.0, [4096])
    """
    key = {600: "small_600_24k_4096", 320: "small_320_24k_4096"}.get(hop)
    if key is None:
        raise ValueError(f"hop must be 600 or 320 (the published variants), got {hop}")
    kwargs = _flat_config(PUBLISHED[key])
    kwargs.update(n_filters=n_filters, dimension=dimension, dim=dim, intermediate_dim=intermediate_dim,
                  num_layers=num_layers, vq_bins=vq_bins, vq_kmeans=vq_kmeans, kmeans_init=kmeans_init,
                  head_dim=dim)
    if seed is not None:
        torch.manual_seed(seed)
    return WavTokenizer(**kwargs)
