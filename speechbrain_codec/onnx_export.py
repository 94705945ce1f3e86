"""ONNX export of a :class:`~speechbrain_codec.codec.Codec`: offline encoder and decoder, and the
streaming steps of a causal codec with their caches as explicit inputs and outputs.

:func:`export_onnx` writes into a folder:

``encoder.onnx``
    ``sig`` float32 ``[B, T]`` (``T`` a multiple of ``hop_length``: pad with zeros as
    ``Codec.pad`` does) -> ``toks`` int64 ``[B, N, K]`` and ``lats`` float32 ``[B, N, L]``
    (the latents before quantisation). Batch and length are dynamic.
``decoder.onnx``
    ``toks`` int64 ``[B, N, K]`` -> ``sig`` float32 ``[B, N * output_hop_length]``.
``stream_encoder_first.onnx``, ``stream_encoder.onnx`` (causal codecs)
    The first chunk of a stream (``chunk`` ``[B, chunk_size]``) -> ``toks`` and the state; then
    each later chunk with the state -> ``toks`` and the next state. The state is the lobes'
    left contexts (the last input frames of every causal convolution, the attention keys and
    values of the last ``window_size - 1`` frames, which grow over the first chunks, and the
    stream position): the tensors named ``state.<i>`` in ``onnx.json``, fed back unchanged.
    Two graphs because the first chunk pads its convolutions by replicating its first frame,
    as offline coding does, where later chunks take the previous chunk's frames.
``stream_decoder_first.onnx``, ``stream_decoder.onnx``
    The same for ``toks [B, chunk_frames, K]`` -> ``sig``.
``onnx.json``
    Rates, hops, chunk sizes, every graph's input and output names, the opset, and the largest
    differences from PyTorch measured at export on a signal of another length than the one
    traced (:func:`check_onnx` computes them; ``onnxruntime`` needed).

The graphs are traced from the plain fp32 path (``torch.onnx.export``, TorchScript exporter,
so no ``onnxscript`` is needed): a codec prepared by ``optimize_for_inference`` is exported from
a plain copy of it (its ``exact`` sums in another order are a PyTorch-side speed-up; ``int8`` /
``bf16`` weights are refused: quantise the ONNX graphs with onnxruntime's tools instead).
Single-stream codecs only (FocalCodec and the toolkit's :class:`Codec` stacks).

Example
-------
>>> from speechbrain_codec.focalcodec import PUBLISHED, build_focalcodec
>>> import json, tempfile
>>> cfg = json.loads(json.dumps(PUBLISHED["focalcodec_50hz"]))
>>> cfg["encoder_config"].update(hidden_dims=[8] * 7, num_layers=1, dim=16, ffn_dim=32)
>>> cfg["compressor_config"].update(input_dim=16, hidden_dims=[16, 8, 8])
>>> cfg["decompressor_config"].update(output_dim=16, hidden_dims=[8, 8, 16])
>>> cfg["decoder_config"].update(input_dim=16, dim=16, ffn_dim=32, num_layers=1)
>>> codec = build_focalcodec(cfg).eval()
>>> meta = export_onnx(codec, tempfile.mkdtemp(), check=True)  # doctest: +SKIP
>>> meta["check"]["encoder"]["token_agreement"]  # doctest: +SKIP
1.0
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["check_onnx", "export_onnx"]

OPSET = 17


def _plain_copy(codec, for_export: bool = True):
    """An fp32 CPU copy of ``codec`` on its plain path (``for_export``: with the real-valued
    iSTFT that ONNX can express)."""
    from .utils import CodecError

    mode = getattr(codec, "inference_mode", None)
    if mode and not mode.startswith("exact"):
        raise CodecError(f"export_onnx: this codec runs in {mode} (reduced-precision weights); export the fp32 "
                         "codec (load it again) and quantise the ONNX graphs with onnxruntime if needed")
    if type(codec).__name__ != "Codec" and not hasattr(codec, "compressor"):
        raise CodecError(f"export_onnx: {type(codec).__name__} is not a single-stream Codec stack")
    plain = copy.deepcopy(codec).cpu().float().eval().requires_grad_(False)
    for module in plain.modules():
        if hasattr(module, "fast") and isinstance(module.fast, bool):
            module.fast = False
        if hasattr(module, "real_istft"):  # ONNX has no complex numbers
            module.real_istft = for_export
        fwd = getattr(module, "forward", None)
        if getattr(fwd, "_torchdynamo_orig_callable", None) is not None:  # torch.compile'd lobes
            module.forward = fwd._torchdynamo_orig_callable
    plain.inference_mode, plain.compute_dtype = None, None
    return plain


class _Encode(nn.Module):
    def __init__(self, codec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, sig: torch.Tensor):
        c = self.codec
        lats = c.compressor(c.encoder(sig))
        return c.quantizer(lats).toks, lats


class _Decode(nn.Module):
    def __init__(self, codec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, toks: torch.Tensor) -> torch.Tensor:
        c = self.codec
        return c.decoder(c.decompressor(c.quantizer.toks_to_qlats(toks)))


def _stream_call(codec, side: str, x: torch.Tensor, cache: dict) -> torch.Tensor:
    if side == "encoder":
        lats = codec.compressor(codec.encoder(x, cache=cache), cache=cache)
        return codec.quantizer(lats).toks
    return codec.decoder(codec.decompressor(codec.quantizer.toks_to_qlats(x), cache=cache), cache=cache)


def _flatten(cache: dict, keys: list) -> list[torch.Tensor]:
    out = []
    for module in keys:
        value = cache[module]
        if isinstance(value, tuple):
            out.extend(value)
        elif torch.is_tensor(value):
            out.append(value)
        else:  # a stream position
            out.append(torch.as_tensor(value, dtype=torch.long))
    return out


class _StreamFirst(nn.Module):
    def __init__(self, codec, side: str, keys: list) -> None:
        super().__init__()
        self.codec, self.side, self.keys = codec, side, keys

    def forward(self, x: torch.Tensor):
        cache: dict = {}
        y = _stream_call(self.codec, self.side, x, cache)
        return (y, *_flatten(cache, self.keys))


class _StreamStep(nn.Module):
    def __init__(self, codec, side: str, keys: list, kinds: list[str]) -> None:
        super().__init__()
        self.codec, self.side, self.keys, self.kinds = codec, side, keys, kinds

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        cache, i = {}, 0
        for module, kind in zip(self.keys, self.kinds):
            if kind == "pair":
                cache[module] = (state[i], state[i + 1])
                i += 2
            else:
                cache[module] = state[i]
                i += 1
        y = _stream_call(self.codec, self.side, x, cache)
        return (y, *_flatten(cache, self.keys))


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: the check below is what counts
        torch.onnx.export(module, args, str(tmp), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    tmp.replace(path)


def _state_layout(codec, side: str, x: torch.Tensor) -> tuple[list, list[str], dict]:
    """The cache's keys in the order the lobes fill it, each entry's kind, and the cache after a
    first call (to trace the step graph from)."""
    cache: dict = {}
    with torch.no_grad():
        _stream_call(codec, side, x, cache)
    kinds = ["pair" if isinstance(v, tuple) else "tensor" if torch.is_tensor(v) else "position" for v in cache.values()]
    return list(cache), kinds, cache


def export_onnx(codec, out_dir: str | Path, streaming: bool | None = None, check: bool = True,
                example_seconds: float = 1.0) -> dict:
    """Export ``codec``'s graphs into ``out_dir`` (see the module docstring); returns the
    metadata written to ``onnx.json``. ``streaming``: also the stream steps (default: when the
    codec streams). ``check``: run the graphs with onnxruntime against PyTorch (:func:`check_onnx`)."""
    from .utils import CodecError

    plain = _plain_copy(codec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    streaming = bool(getattr(plain, "streaming", False)) if streaming is None else streaming
    if streaming and not getattr(plain, "streaming", False):
        raise CodecError("export_onnx: streaming=True needs a causal codec whose lobes all stream")
    hop = plain.hop_length
    n = max(4, round(example_seconds * plain.sample_rate / hop)) * hop
    if streaming:
        n = -(-n // plain.chunk_size) * plain.chunk_size
    sig = torch.randn(1, n, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        toks = plain.sig_to_toks(sig)
    K = toks.shape[-1]
    meta = {
        "format": "speechbrain-codec onnx 1", "opset": OPSET, "sample_rate": plain.sample_rate,
        "output_sample_rate": plain.output_sample_rate, "hop_length": hop,
        "output_hop_length": plain.output_hop_length, "codebook_sizes": plain.codebook_sizes,
        "config_hash": getattr(plain, "config_hash", ""),
        "graphs": {
            "encoder": {"file": "encoder.onnx", "inputs": ["sig"], "outputs": ["toks", "lats"]},
            "decoder": {"file": "decoder.onnx", "inputs": ["toks"], "outputs": ["sig"]},
        },
    }
    _export(_Encode(plain), (sig,), out / "encoder.onnx", ["sig"], ["toks", "lats"],
            {"sig": {0: "batch", 1: "samples"}, "toks": {0: "batch", 1: "frames"}, "lats": {0: "batch", 1: "frames"}})
    _export(_Decode(plain), (toks,), out / "decoder.onnx", ["toks"], ["sig"],
            {"toks": {0: "batch", 1: "frames"}, "sig": {0: "batch", 1: "samples"}})
    if streaming:
        meta["chunk_size"] = plain.chunk_size
        meta["chunk_frames"] = plain.chunk_size // hop
        firsts = {"encoder": sig[:, : plain.chunk_size], "decoder": toks[:, : meta["chunk_frames"]]}
        seconds = {"encoder": sig[:, plain.chunk_size: 2 * plain.chunk_size],
                   "decoder": toks[:, meta["chunk_frames"]: 2 * meta["chunk_frames"]]}
        for side, (x_name, y_name) in (("encoder", ("chunk", "toks")), ("decoder", ("toks", "sig"))):
            keys, kinds, cache = _state_layout(plain, side, firsts[side])
            state = _flatten(cache, keys)
            # a convolution's left context, an attention layer's keys and values, the stream position
            flat_kinds = [k for kd in kinds for k in (("keys", "values") if kd == "pair" else ("context" if kd == "tensor" else kd,))]
            names = [f"state.{i}" for i in range(len(state))]
            new = [f"new_state.{i}" for i in range(len(state))]
            dyn_first = {x_name: {0: "batch"}, **{k: {0: "batch"} for k in new}}
            dyn_step = {x_name: {0: "batch"}, y_name: {0: "batch"}}
            for i, t in enumerate(state):
                if t.dim():
                    axes = {0: "batch"}
                    if t.dim() == 4:  # attention keys / values: [B, H, S, hd], S grows to window - 1
                        axes[2] = f"past_{i}"
                    dyn_step[names[i]], dyn_step[new[i]] = axes, dict(axes)
                    if t.dim() == 4:
                        dyn_first[new[i]] = dict(axes)
            out_y = "sig" if side == "decoder" else "toks"
            _export(_StreamFirst(plain, side, keys), (firsts[side],), out / f"stream_{side}_first.onnx",
                    [x_name], [out_y, *new], dyn_first)
            _export(_StreamStep(plain, side, keys, kinds), (seconds[side], *state), out / f"stream_{side}.onnx",
                    [x_name, *names], [out_y, *new], dyn_step)
            meta["graphs"][f"stream_{side}_first"] = {"file": f"stream_{side}_first.onnx", "inputs": [x_name],
                                                       "outputs": [out_y, *new]}
            meta["graphs"][f"stream_{side}"] = {"file": f"stream_{side}.onnx", "inputs": [x_name, *names],
                                                 "outputs": [out_y, *new],
                                                 "state": [{"name": nm, "kind": kd, "shape_after_first": list(t.shape)}
                                                           for nm, kd, t in zip(names, flat_kinds, state)]}
    if check:
        meta["check"] = check_onnx(codec, out, meta)
    tmp = out / "onnx.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(out / "onnx.json")
    return meta


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_onnx(codec, folder: str | Path, meta: dict | None = None, seconds: float = 1.7, seed: int = 1) -> dict:
    """Run the exported graphs in ``folder`` with onnxruntime and compare with ``codec``'s
    PyTorch plain path on ``seconds`` of noise-like speech of another length than the traced
    one (batch of 2 offline): token agreement, the largest latent and waveform differences, and
    for the stream graphs the same over a whole stream."""
    folder = Path(folder)
    meta = meta or json.loads((folder / "onnx.json").read_text())
    plain = _plain_copy(codec, for_export=False)
    hop = plain.hop_length
    g = torch.Generator().manual_seed(seed)
    n = max(4, round(seconds * plain.sample_rate / hop)) * hop
    sig = torch.randn(2, n, generator=g) * 0.1
    with torch.no_grad():
        ref_toks = plain.sig_to_toks(sig)
        ref_lats = plain.sig_to_lats(sig)
        ref_sig = plain.toks_to_sig(ref_toks)
    report = {}
    toks, lats = _session(folder / "encoder.onnx").run(None, {"sig": sig.numpy()})
    toks, lats = torch.from_numpy(toks), torch.from_numpy(lats)
    report["encoder"] = {"samples": n, "batch": 2, "token_agreement": (toks == ref_toks).float().mean().item(),
                         "lats_max_abs_diff": (lats - ref_lats).abs().max().item()}
    (wav,) = _session(folder / "decoder.onnx").run(None, {"toks": ref_toks.numpy()})
    report["decoder"] = {"frames": ref_toks.shape[1], "sig_max_abs_diff": (torch.from_numpy(wav) - ref_sig).abs().max().item()}
    if "stream_encoder" in meta["graphs"]:
        chunk, frames = meta["chunk_size"], meta["chunk_frames"]
        m = max(3, -(-n // chunk)) * chunk
        ssig = torch.randn(1, m, generator=g) * 0.1
        with torch.no_grad():
            s_ref = plain.stream_sig_to_toks(ssig)
            s_wav = plain.stream_toks_to_sig(s_ref)
        for side, xs, ref in (("encoder", ssig.split(chunk, -1), s_ref), ("decoder", s_ref.split(frames, 1), s_wav)):
            first, step = _session(folder / f"stream_{side}_first.onnx"), _session(folder / f"stream_{side}.onnx")
            in_name = meta["graphs"][f"stream_{side}"]["inputs"][0]
            names = meta["graphs"][f"stream_{side}"]["inputs"][1:]
            ys, state = [], None
            for x in xs:
                if state is None:
                    y, *state = first.run(None, {in_name: x.numpy()})
                else:
                    y, *state = step.run(None, {in_name: x.numpy(), **dict(zip(names, state))})
                ys.append(torch.from_numpy(y))
            got = torch.cat(ys, -1 if side == "decoder" else 1)
            if side == "encoder":
                report["stream_encoder"] = {"chunks": len(xs), "token_agreement": (got == ref).float().mean().item()}
            else:
                report["stream_decoder"] = {"chunks": len(xs), "sig_max_abs_diff": (got - ref).abs().max().item()}
    return report
