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

``compile=True`` (or ``"dynamic"``) wraps each part's ``forward`` in ``torch.compile`` with
dynamic shapes: the first call per shape pattern compiles, later ones reuse it (on a small CPU
the first dynamic compile of a published FocalCodec takes many minutes). ``compile="static"``
compiles again for each new input shape and suits fixed-length inputs;
``benchmarks/inference_speed.py`` measures it (row ``exact+compile``, with its cold compile time).

:func:`batch_sig_to_toks` / :func:`batch_toks_to_sig` code a list of utterances in zero-padded
batches. Lobes that take lengths (FocalCodec's: WavLM masks padded keys, the focal modulation's
convolutions and global average see zeros past each utterance's end, Vocos' convolutions too and
its iSTFT runs per utterance; causal lobes never look ahead) give each utterance the tokens and
the waveform it gets alone (float rounding aside). Other codecs are batched only among
utterances of the same hop-padded length (the padding each gets alone); a codec of several
streams gives a dict per utterance, each frame stream cut to the utterance's own frames.

Which modules a mode converts is the codec's :meth:`~speechbrain_codec.codec.Codec.inference_parts`:
the sending side (signal -> the latents the quantizers read: FocalCodec's encoder and
compressor, SIREN's HuBERT and factoriser, a multi-stream codec's encoders and branch
compressors, the LM-loss codec's HuBERT) and the receiving side (quantized latents -> signal).
The quantizers (``Codec.fp32_modules``) and signal-processing front ends (``fp32_inference = True``:
the log-mel, YAAPT) stay fp32 in every mode, with their fp32 values also inside a bf16 part (the
waveform reaching a front end inside a bf16 part has been rounded to bf16, though), and so do
``Codec.latent_layers`` (the Linear layers that write or read the latents) in the int8 modes. A
part that is itself an ``nn.Linear`` is replaced by its int8 form. Codecs whose coding paths do not
cast to ``compute_dtype`` themselves (``casts_compute_dtype = False``) get forward hooks on their
bf16 parts that cast activations in and outputs back to fp32; a part whose codec calls another
method than ``forward`` (``Codec.inference_entries``: the LM-loss codec's ``model.decode``) casts
itself, and ``compile`` wraps that method. An int8 mode with no Linear layer to quantise (the
LM-loss codec's HiFi-GAN) is refused: it would be the exact mode under another name. A codec with
``batches = False`` (DP-SLM's) is coded one utterance per call.
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


def _parts(codec, sides=("send", "receive"), fp32: set[str] = frozenset()) -> dict[str, nn.Module]:
    """The modules a mode converts on ``sides`` (``Codec.inference_parts``), by attribute path;
    not an ``nn.Identity`` nor a part that is itself fp32 (an F0 tracker as a branch encoder)."""
    parts = codec.inference_parts()
    return {name: m for side in sides for name, m in parts[side].items()
            if not isinstance(m, nn.Identity) and name not in fp32}


def _fp32_names(codec) -> set[str]:
    """Paths of the modules that stay fp32 in every mode, with everything inside them:
    ``Codec.fp32_modules`` (the quantizers) and signal-processing front ends (a class attribute
    ``fp32_inference = True``, e.g. :class:`~speechbrain_codec.encoders.mel.LogMel`)."""
    keep = {id(m) for m in codec.fp32_modules()}
    tops = {name for name, m in codec.named_modules() if id(m) in keep or getattr(m, "fp32_inference", False)}
    return {name for name, _ in codec.named_modules() if _inside(name, tops)}


def _path(part_name: str, name: str) -> str:
    """The codec-level path of module ``name`` of the part at ``part_name``."""
    return f"{part_name}.{name}" if name else part_name


def _inside(name: str, prefixes: set[str]) -> bool:
    """Whether module path ``name`` is one of ``prefixes`` or inside one (``""``: the root, so everything)."""
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def _to_bf16(part: nn.Module, part_name: str, fp32: set[str]) -> None:
    """``part``'s floating parameters and buffers in bfloat16, except those of the fp32 modules
    inside it, which keep their fp32 values (not cast there and back)."""
    for name, m in part.named_modules():
        if _path(part_name, name) in fp32:
            continue
        for p in m.parameters(recurse=False):
            if p.is_floating_point():
                p.data = p.data.to(torch.bfloat16)
        for key, b in m.named_buffers(recurse=False):
            if b.is_floating_point():
                setattr(m, key, b.to(torch.bfloat16))


def _quantise_root(codec, part_name: str, part: nn.Linear) -> None:
    """A part that is itself an ``nn.Linear`` (a fusion layer): replaced by its dynamic int8 form
    (``quantize_dynamic`` swaps children only)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig

    part.qconfig = default_dynamic_qconfig
    codec.set_submodule(part_name, DynamicLinear.from_float(part))


def _bf16_in(module, args, kwargs):
    """Forward pre-hook of a bf16 part: floating activations (2-D and up, also in lists and
    tuples) in; lengths and other 1-D or integer inputs unchanged."""
    def cast(x):
        if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
            return type(x)(cast(v) for v in x)
        return x.to(torch.bfloat16) if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 2 else x
    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _fp32(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.dtype == torch.bfloat16 else x
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a NamedTuple
        return type(x)(*(_fp32(v) for v in x))
    if isinstance(x, (tuple, list)):
        return type(x)(_fp32(v) for v in x)
    if isinstance(x, dict):
        return {k: _fp32(v) for k, v in x.items()}
    return x


def _bf16_out(module, args, kwargs, out):
    """Forward hook of a bf16 part: its outputs back to fp32."""
    return _fp32(out)


def _int8_plan(codec, mode: str, fp32: set[str]) -> dict[str, tuple[nn.Module, set[str]]]:
    """``part path -> (part, names of its nn.Linear layers to quantise)`` for ``int8`` (both
    sides) or ``int8-dec`` (the receiving side); refuses a mode that would quantise nothing."""
    from .utils import CodecError

    keep = set(codec.latent_layers) | fp32
    plan = {}
    for part_name, part in _parts(codec, ("receive",) if mode == "int8-dec" else ("send", "receive"), fp32).items():
        # PyTorch's Transformer layers read their Linear layers' weights (fast-path checks),
        # which quantised layers do not have: those stay fp32
        builtin = {name for name, m in part.named_modules()
                   if isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer))}
        names = {name for name, m in part.named_modules()
                 if type(m) is nn.Linear and not _inside(_path(part_name, name), keep) and not _inside(name, builtin)}
        if names:
            plan[part_name] = (part, names)
    if not plan:
        side = "receiving side" if mode == "int8-dec" else "network"
        raise CodecError(f"optimize_for_inference: {type(codec).__name__}'s {side} has no nn.Linear layer to "
                         f"quantise, so {mode} would be the exact mode; use --precision fp32 (or bf16)")
    return plan


def optimize_for_inference(codec, mode: str = "exact", compile: bool | str = False):
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
    if compile not in (False, True, "dynamic", "static"):
        raise CodecError(f"optimize_for_inference: compile={compile!r}: expected False, True (= 'dynamic') or 'static'")
    fp32 = _fp32_names(codec)
    plan = _int8_plan(codec, mode, fp32) if mode in ("int8", "int8-dec") else {}
    codec.eval().requires_grad_(False)
    for module in codec.modules():
        if hasattr(module, "fast") and isinstance(module.fast, bool):
            module.fast = True
    if plan:
        from torch.ao.quantization import quantize_dynamic

        if "fbgemm" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "fbgemm"
        for part_name, (part, names) in plan.items():
            if "" in names:
                _quantise_root(codec, part_name, part)
            else:
                quantize_dynamic(part, names, dtype=torch.qint8, inplace=True)
    elif mode == "bf16":
        parts = _parts(codec, fp32=fp32)
        for name, part in parts.items():  # the quantizers and front ends stay fp32, also inside a part
            _to_bf16(part, name, fp32)
        if codec.casts_compute_dtype:
            codec.compute_dtype = torch.bfloat16
        else:  # the codec's own paths stay fp32: each part casts at its boundary
            for part in parts.values():
                part.register_forward_pre_hook(_bf16_in, with_kwargs=True)
                part.register_forward_hook(_bf16_out, with_kwargs=True)
    if compile:
        for name, part in _parts(codec, fp32=fp32).items():
            entry = codec.inference_entries.get(name, "forward")  # the method the codec's paths call
            setattr(part, entry, torch.compile(getattr(part, entry), dynamic=compile != "static"))
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
    """Tokens ``[N_i, K]`` of each signal ``[T_i]`` of ``sigs`` (a dict of them for a codec of
    several streams), coded in batches of up to ``batch_size`` utterances of similar length;
    each as ``codec.sig_to_toks(sig[None])[0]``.
    ``progress(n)`` is called after each batch with the number of utterances done in it."""
    out: list[torch.Tensor | None] = [None] * len(sigs)
    batch_size = batch_size if getattr(codec, "batches", True) else 1
    padded = [codec.pad(s[None])[0] for s in sigs]
    aware = _lengths_aware(codec)
    for group in _groups([p.shape[-1] for p in padded], batch_size, not aware):
        x = _pad_stack([padded[i] for i in group], 0)
        with inference_context(codec):
            if len(group) == 1 or not aware:
                toks = codec.sig_to_toks(x)
                for j, i in enumerate(group):
                    out[i] = _utterance(codec, toks, j, sigs[i].shape[-1])
            else:
                toks, frames = _aware_encode(codec, x, [padded[i].shape[-1] for i in group])
                for j, i in enumerate(group):
                    out[i] = toks[j, : frames[j]]
        if progress is not None:
            progress(len(group))
    return out


def _utterance(codec, toks, j: int, num_samples: int):
    """Utterance ``j`` of a batch's tokens; of a dict (several streams), each frame stream cut
    to the frames of the utterance's own ``num_samples`` (the batch was padded to the codec's
    hop, a multiple of every stream's)."""
    if not isinstance(toks, dict):
        return toks[j]
    return {spec.name: toks[spec.name][j] if spec.per_utterance else toks[spec.name][j, : spec.num_frames(num_samples)]
            for spec in codec.layout}


def _token_length(t):
    return tuple(v.shape[0] for v in t.values()) if isinstance(t, dict) else t.shape[0]


def _stack(items: list):
    """A batch of equally long token arrays (or dicts of them)."""
    if isinstance(items[0], dict):
        return {k: torch.stack([t[k] for t in items]) for k in items[0]}
    return _pad_stack(items, 0)


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
    """Signals ``[T_i]`` of each token array ``[N_i, K]`` (or dict of them), decoded in batches
    of up to ``batch_size`` (a codec of several streams: of equally long streams); each as
    ``codec.toks_to_sig(toks[None])[0]``."""
    out: list[torch.Tensor | None] = [None] * len(toks)
    batch_size = batch_size if getattr(codec, "batches", True) else 1
    aware = _lengths_aware(codec)
    for group in _groups([_token_length(t) for t in toks], batch_size, not aware):
        x = _stack([toks[i] for i in group])
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

