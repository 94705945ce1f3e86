"""Inference paths of a :class:`~speechbrain_codec.codec.Codec`: precision modes, batched coding.

:func:`optimize_for_inference` (also ``Codec.optimize_for_inference``, CLI ``--precision`` /
``--compile``) prepares a codec for coding, never for training:

``exact``
    fp32, ``eval()``, no gradients, ``torch.inference_mode`` around the coding paths, and the
    lobes' inference code: FocalCodec's WavLM convolutions as one matrix product over unfolded
    frames, channels-last (no transposes between its 7 layers), computed over blocks of 64
    output frames so that the large early activations stay in the cache; its relative position
    bias gathered from a per-distance table built once instead of bucketed per call; streaming
    chunks' grouped and dense convolutions as matrix products (:func:`~speechbrain_codec.nn.
    stream_conv1d`), the focal modulation's 1x1 and transposed convolutions as matrix products,
    channels-last. The same sums in another order: the tokens are those of the plain path (tested
    on the golden weights), waveforms agree to float rounding.
``int8``
    ``exact`` + dynamic int8 quantisation of every ``nn.Linear`` (weights int8 per tensor,
    activations quantised per call; ``torch.ao.quantization.quantize_dynamic``), except the
    layers that write or read the latents (the compressor's ``out_proj``, the decompressor's
    ``in_proj``), which stay fp32. Lossy: tokens agree with fp32 at the rate that
    ``benchmarks/inference_speed.py`` measures.
``int8-dec``
    ``exact`` on the sending side (encoder, compressor: the tokens are fp32's, bit for bit) and
    ``int8`` on the receiving side (decompressor, decoder): only the decoded waveform is lossy
    (its SNR against fp32 is measured by the benchmark). At batch 1 every streaming chunk reads
    all the weights, so a quarter of the decoder's bytes is what lets a causal codec stream
    faster than real time on a small CPU with the fp32 bitstream.
``bf16``
    ``exact`` with the lobes' weights and activations in bfloat16 (the quantizer and its
    latents stay fp32; outputs come back as fp32). Lossy as ``int8``.

``compile=True`` wraps each lobe's ``forward`` in ``torch.compile`` (dynamic shapes): the first
call per shape pattern compiles (minutes on a small CPU), later ones reuse it.

:func:`batch_sig_to_toks` / :func:`batch_toks_to_sig` code a list of utterances in zero-padded
batches. Lobes that take lengths (FocalCodec's: WavLM masks padded keys, the focal modulation's
convolutions and global average see zeros past each utterance's end, Vocos' convolutions too and
its iSTFT runs per utterance; causal lobes never look ahead) give each utterance the tokens and
the waveform it gets alone (float rounding aside). Other codecs are batched only among
utterances of the same length, which needs no padding.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["MODES", "batch_sig_to_toks", "batch_toks_to_sig", "inference_context", "optimize_for_inference"]

logger = logging.getLogger("speechbrain_codec")

MODES = ("exact", "int8", "int8-dec", "bf16")
#: the CLI's --precision names for the modes
PRECISIONS = {"fp32": "exact", "int8": "int8", "int8-dec": "int8-dec", "bf16": "bf16"}


def _lobes(codec) -> list[nn.Module]:
    return [m for m in (codec.encoder, codec.compressor, codec.decompressor, codec.decoder) if not isinstance(m, nn.Identity)]


def _keep_fp32(codec) -> set[str]:
    """Names of the Linear layers next to the latents (int8 mode leaves them in fp32)."""
    names = set()
    for lobe_name, attr in (("compressor", "out_proj"), ("decompressor", "in_proj")):
        lobe = getattr(codec, lobe_name)
        if isinstance(getattr(lobe, attr, None), nn.Linear):
            names.add(f"{lobe_name}.{attr}")
    return names


def optimize_for_inference(codec, mode: str = "exact", compile: bool = False):
    """Prepare ``codec`` (in place) for coding in ``mode`` (``exact``, ``int8``, ``int8-dec`` or
    ``bf16``; see the module docstring); returns it. Call once, after loading; the codec cannot train after.

    Example
    -------
    >>> from speechbrain_codec.focalcodec import PUBLISHED, build_focalcodec
    >>> import copy, json
    >>> cfg = json.loads(json.dumps(PUBLISHED["focalcodec_50hz"]))
    >>> cfg["encoder_config"].update(hidden_dims=[8] * 7, num_layers=1, dim=16, ffn_dim=32)
    >>> cfg["compressor_config"].update(input_dim=16, hidden_dims=[16, 8, 8])
    >>> cfg["decompressor_config"].update(output_dim=16, hidden_dims=[8, 8, 16])
    >>> cfg["decoder_config"].update(input_dim=16, dim=16, ffn_dim=32, num_layers=1)
    >>> codec = build_focalcodec(cfg).eval()
    >>> sig = torch.randn(1, 8000)
    >>> plain = codec.sig_to_toks(sig)
    >>> fast = copy.deepcopy(codec).optimize_for_inference("exact")
    >>> torch.equal(fast.sig_to_toks(sig), plain)
    True
    """
    from .utils import CodecError

    if mode not in MODES:
        raise CodecError(f"optimize_for_inference: mode {mode!r} is not one of {', '.join(MODES)}")
    if getattr(codec, "inference_mode", None):
        raise CodecError(f"optimize_for_inference: this codec is already prepared ({codec.inference_mode}); load it again")
    codec.eval().requires_grad_(False)
    for module in codec.modules():
        if hasattr(module, "fast") and isinstance(module.fast, bool):
            module.fast = True
    if mode in ("int8", "int8-dec"):
        from torch.ao.quantization import quantize_dynamic

        keep = _keep_fp32(codec)
        targets = {name for name, m in codec.named_modules() if type(m) is nn.Linear and name not in keep}
        if "fbgemm" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "fbgemm"
        lobes = ("decompressor", "decoder") if mode == "int8-dec" else ("encoder", "compressor", "decompressor", "decoder")
        for lobe_name in lobes:
            lobe = getattr(codec, lobe_name)
            mine = {n[len(lobe_name) + 1:] for n in targets if n.startswith(lobe_name + ".")}
            if mine:
                quantize_dynamic(lobe, mine, dtype=torch.qint8, inplace=True)
    elif mode == "bf16":
        for lobe in _lobes(codec):
            lobe.to(torch.bfloat16)
        codec.compute_dtype = torch.bfloat16
    if compile:
        for lobe in _lobes(codec):
            lobe.forward = torch.compile(lobe.forward, dynamic=True)
    codec.inference_mode = mode + ("+compile" if compile else "")
    return codec


def inference_context(codec):
    """``torch.inference_mode()`` for a prepared codec, ``torch.no_grad()`` otherwise."""
    return torch.inference_mode() if getattr(codec, "inference_mode", None) else torch.no_grad()


# ---------------------------------------------------------------------------------- batching
def _lengths_aware(codec) -> bool:
    """Whether every lobe codes a zero-padded batch as its utterances alone."""
    from .compressors import FocalCompressor, FocalDecompressor
    from .decoders import VocosDecoder
    from .encoders import FocalWavLM

    ok_enc = isinstance(codec.encoder, FocalWavLM)
    ok_comp = isinstance(codec.compressor, (FocalCompressor, nn.Identity))
    ok_decomp = isinstance(codec.decompressor, (FocalDecompressor, nn.Identity))
    ok_dec = isinstance(codec.decoder, VocosDecoder) or bool(getattr(codec.decoder, "causal", False))
    return ok_enc and ok_comp and ok_decomp and ok_dec and type(codec).__name__ == "Codec"


def _groups(lengths: list[int], batch_size: int, exact_only: bool) -> list[list[int]]:
    """Indices in batches of at most ``batch_size``, sorted by length (equal lengths only when
    ``exact_only``)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < batch_size and (not exact_only or lengths[groups[-1][0]] == lengths[i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _pad_stack(items: list[torch.Tensor], dim: int) -> torch.Tensor:
    n = max(t.shape[dim] for t in items)
    out = []
    for t in items:
        pad = [0, 0] * (t.dim() - 1 - dim) + [0, n - t.shape[dim]]
        out.append(nn.functional.pad(t, pad) if n > t.shape[dim] else t)
    return torch.stack(out)


def batch_sig_to_toks(codec, sigs: list[torch.Tensor], batch_size: int = 8, progress=None) -> list[torch.Tensor]:
    """Tokens ``[N_i, K]`` of each signal ``[T_i]`` of ``sigs``, coded in batches of up to
    ``batch_size`` utterances of similar length; each as ``codec.sig_to_toks(sig[None])[0]``.
    ``progress(n)`` is called after each batch with the number of utterances done in it."""
    out: list[torch.Tensor | None] = [None] * len(sigs)
    padded = [codec.pad(s[None])[0] for s in sigs]
    aware = _lengths_aware(codec)
    for group in _groups([p.shape[-1] for p in padded], batch_size, not aware):
        x = _pad_stack([padded[i] for i in group], 0)
        with inference_context(codec):
            if len(group) == 1 or not aware:
                toks = codec.sig_to_toks(x)
                for j, i in enumerate(group):
                    out[i] = toks[j]
            else:
                toks, frames = _aware_encode(codec, x, [padded[i].shape[-1] for i in group])
                for j, i in enumerate(group):
                    out[i] = toks[j, : frames[j]]
        if progress is not None:
            progress(len(group))
    return out


def _aware_encode(codec, x: torch.Tensor, lengths: list[int]):
    enc = codec.encoder
    frames = torch.tensor([enc.num_frames(n) for n in lengths], device=x.device)
    dtype = getattr(codec, "compute_dtype", None)
    with torch.no_grad():
        T = enc.num_frames(x.shape[-1])
        lens = (frames.double() - 0.5) / T  # ceil(lens * T) = frames, robust to rounding
        feats = enc(x if dtype is None else x.to(dtype), lens.to(torch.float32))
        comp = codec.compressor
        lats = comp(feats, lengths=frames) if not isinstance(comp, nn.Identity) else feats
        toks = codec.quantizer(lats.float()).toks
    down = getattr(comp, "downsample", 1)
    return toks, (-(-frames // down) if down > 1 else frames).tolist()


def batch_toks_to_sig(codec, toks: list[torch.Tensor], batch_size: int = 8, progress=None) -> list[torch.Tensor]:
    """Signals ``[T_i]`` of each token array ``[N_i, K]``, decoded in batches of up to
    ``batch_size``; each as ``codec.toks_to_sig(toks[None])[0]``."""
    out: list[torch.Tensor | None] = [None] * len(toks)
    aware = _lengths_aware(codec)
    for group in _groups([t.shape[0] for t in toks], batch_size, not aware):
        x = _pad_stack([toks[i] for i in group], 0)
        with inference_context(codec):
            if len(group) == 1 or not aware:
                sig = codec.toks_to_sig(x)
                for j, i in enumerate(group):
                    out[i] = sig[j]
            else:
                sigs = _aware_decode(codec, x, [toks[i].shape[0] for i in group])
                for j, i in enumerate(group):
                    out[i] = sigs[j]
        if progress is not None:
            progress(len(group))
    return out


def _aware_decode(codec, toks: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    dtype = getattr(codec, "compute_dtype", None)
    n = torch.tensor(lengths, device=toks.device)
    qlats = codec.quantizer.toks_to_qlats(toks)
    decomp = codec.decompressor
    if dtype is not None:
        qlats = qlats.to(dtype)
    feats = decomp(qlats, lengths=n) if not isinstance(decomp, nn.Identity) else qlats
    frames = n * getattr(decomp, "upsample", 1)
    dec = codec.decoder
    if hasattr(dec, "forward_lengths"):
        return [s.float() for s in dec.forward_lengths(feats, frames)]
    sig = dec(feats).float()  # a causal decoder: no output depends on later (padded) frames
    hop = sig.shape[-1] // feats.shape[1]
    return [sig[b, : int(f) * hop] for b, f in enumerate(frames.tolist())]

