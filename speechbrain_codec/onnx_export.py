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
    The first chunk of a stream (``chunk`` ``[B, chunk_size]``; the last chunk of a stream may be
    shorter, a multiple of ``hop_length``) -> ``toks`` and the state; then each later chunk with
    the state -> ``toks`` and the next state. The state is the lobes'
    left contexts (the last input frames of every causal convolution, the attention keys and
    values of the last ``window_size - 1`` frames, which grow over the first chunks, and the
    stream position): the tensors named ``state.<i>`` in ``onnx.json``, fed back unchanged.
    Two graphs because the first chunk pads its convolutions by replicating its first frame,
    as offline coding does, where later chunks take the previous chunk's frames.
``stream_decoder_first.onnx``, ``stream_decoder.onnx``
    The same for ``toks [B, chunk_frames, K]`` -> ``sig``.
``onnx.json``
    Rates, hops, chunk sizes, every graph's input and output names (and each state tensor's kind
    and shape after the first chunk), the opset, and the largest differences from PyTorch
    measured at export on signals of other lengths than the ones traced (:func:`check_onnx`
    computes them; ``onnxruntime`` needed). :class:`OnnxCodec` runs such a folder.

The graphs are traced from the plain fp32 path (``torch.onnx.export``, TorchScript exporter,
so no ``onnxscript`` is needed): a codec prepared by ``optimize_for_inference`` is exported from
a plain copy of it (its ``exact`` sums in another order are a PyTorch-side speed-up; ``int8`` /
``bf16`` weights are refused: quantise the ONNX graphs with onnxruntime's tools instead).
Single-stream codecs only (FocalCodec and the toolkit's :class:`Codec` stacks).

Example
-------
Online (``tests/unit/test_onnx_export.py`` runs the same on the golden checkpoints):

>>> from speechbrain_codec.focalcodec import load_focalcodec
>>> codec = load_focalcodec("lucadellalib/focalcodec_50hz")  # doctest: +SKIP
>>> meta = export_onnx(codec, "onnx/")  # doctest: +SKIP
>>> meta["check"]["encoder"]["token_agreement"]  # doctest: +SKIP
1.0
>>> OnnxCodec("onnx/").sig_to_toks(torch.zeros(1, 16000)).shape  # doctest: +SKIP
torch.Size([1, 50, 1])
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["OnnxCodec", "check_onnx", "export_onnx"]

OPSET = 17


def _plain_copy(codec, for_export: bool = True):
    """An fp32 CPU copy of ``codec`` on its plain path (``for_export``: with the real-valued
    iSTFT that ONNX can express)."""
    from .utils import CodecError

    mode = getattr(codec, "inference_mode", None)
    if mode and not mode.startswith("exact"):
        raise CodecError(f"export_onnx: this codec runs in {mode} (reduced-precision weights); export the fp32 "
                         "codec (load it again) and quantise the ONNX graphs with onnxruntime if needed")
    if not hasattr(codec, "compressor") or len(list(codec.layout)) != 1:
        raise CodecError(f"export_onnx: {type(codec).__name__} is not a single-stream Codec stack")
    plain = copy.deepcopy(codec).cpu().float().eval().requires_grad_(False)
    for module in plain.modules():
        if hasattr(module, "fast") and isinstance(module.fast, bool):
            module.fast = False
        if hasattr(module, "real_istft"):  # ONNX has no complex numbers
            module.real_istft = for_export
        module.__dict__.pop("forward", None)  # optimize_for_inference(compile=True)'s wrappers
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


class _Stream(nn.Module):
    """One stream step of ``side``: ``(x, *state) -> (y, *next state)``; no state: the first
    chunk (the cache starts empty)."""

    def __init__(self, codec, side: str, keys: list, kinds: list[str]) -> None:
        super().__init__()
        self.codec, self.side, self.keys, self.kinds = codec, side, keys, kinds

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        cache, rest = {}, list(state)
        for module, kind in zip(self.keys, self.kinds) if state else ():
            cache[module] = (rest.pop(0), rest.pop(0)) if kind == "pair" else rest.pop(0)
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
            # the time axis is dynamic too: a stream's last chunk may be shorter (padded to the hop)
            dyn_first = {x_name: {0: "batch", 1: "length"}, y_name: {0: "batch", 1: "out_length"},
                         **{k: {0: "batch"} for k in new}}
            dyn_step = {x_name: {0: "batch", 1: "length"}, y_name: {0: "batch", 1: "out_length"}}
            for i, t in enumerate(state):
                if t.dim():
                    axes = {0: "batch"}
                    if t.dim() == 4:  # attention keys / values: [B, H, S, hd], S grows to window - 1
                        axes[2] = f"past_{i}"
                    dyn_step[names[i]], dyn_step[new[i]] = axes, dict(axes)
                    if t.dim() == 4:
                        dyn_first[new[i]] = dict(axes)
            out_y = "sig" if side == "decoder" else "toks"
            _export(_Stream(plain, side, keys, kinds), (firsts[side],), out / f"stream_{side}_first.onnx",
                    [x_name], [out_y, *new], dyn_first)
            _export(_Stream(plain, side, keys, kinds), (seconds[side], *state), out / f"stream_{side}.onnx",
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


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxCodec:
    """The graphs of an :func:`export_onnx` folder run by onnxruntime (CPU), behind the coding
    API of :class:`~speechbrain_codec.codec.Codec`: ``sig_to_toks`` (zero-pads to the hop as
    ``Codec.pad``), ``sig_to_lats``, ``toks_to_sig``, ``stream_encoder()`` / ``stream_decoder()``
    (objects called chunk by chunk; a shorter last chunk, zero-padded to the hop, ends the stream),
    ``stream_sig_to_toks`` / ``stream_toks_to_sig``, ``batch_sig_to_toks`` / ``batch_toks_to_sig``
    (one utterance per run). Inputs and outputs are torch tensors on the CPU.
    """

    def __init__(self, folder: str | Path, threads: int | None = None, meta: dict | None = None) -> None:
        from .utils import CodecError

        self.folder = Path(folder)
        try:
            self.meta = meta or json.loads((self.folder / "onnx.json").read_text())
        except (OSError, ValueError) as err:
            raise CodecError(f"{self.folder}: no readable onnx.json ({err}); run export-onnx first") from None
        self.threads, self._sessions = threads, {}
        self.sample_rate, self.output_sample_rate = self.meta["sample_rate"], self.meta["output_sample_rate"]
        self.hop_length, self.output_hop_length = self.meta["hop_length"], self.meta["output_hop_length"]
        self.streaming = "stream_encoder" in self.meta["graphs"]
        self.chunk_size = self.meta.get("chunk_size")

    def session(self, graph: str):
        if graph not in self._sessions:
            self._sessions[graph] = _session(self.folder / self.meta["graphs"][graph]["file"], self.threads)
        return self._sessions[graph]

    def pad(self, sig: torch.Tensor) -> torch.Tensor:
        rem = (-sig.shape[-1]) % self.hop_length
        return nn.functional.pad(sig, (0, rem)) if rem else sig

    def _encode(self, sig: torch.Tensor):
        toks, lats = self.session("encoder").run(None, {"sig": self.pad(sig).float().contiguous().numpy()})
        return torch.from_numpy(toks), torch.from_numpy(lats)

    def sig_to_toks(self, sig: torch.Tensor) -> torch.Tensor:
        return self._encode(sig)[0]

    def sig_to_lats(self, sig: torch.Tensor) -> torch.Tensor:
        return self._encode(sig)[1]

    def toks_to_sig(self, toks: torch.Tensor) -> torch.Tensor:
        (sig,) = self.session("decoder").run(None, {"toks": toks.long().contiguous().numpy()})
        return torch.from_numpy(sig)

    def stream_encoder(self) -> "_OnnxStream":
        return _OnnxStream(self, "encoder")

    def stream_decoder(self) -> "_OnnxStream":
        return _OnnxStream(self, "decoder")

    def stream_sig_to_toks(self, sig: torch.Tensor) -> torch.Tensor:
        enc = self.stream_encoder()
        return torch.cat([enc(c) for c in sig.split(self.chunk_size, dim=-1)], dim=1)

    def stream_toks_to_sig(self, toks: torch.Tensor) -> torch.Tensor:
        dec = self.stream_decoder()
        return torch.cat([dec(t) for t in toks.split(self.meta["chunk_frames"], dim=1)], dim=-1)

    def batch_sig_to_toks(self, sigs: list[torch.Tensor], batch_size: int = 1, progress=None) -> list[torch.Tensor]:
        return [self.sig_to_toks(s[None])[0] for s in sigs]

    def batch_toks_to_sig(self, toks: list[torch.Tensor], batch_size: int = 1, progress=None) -> list[torch.Tensor]:
        return [self.toks_to_sig(t[None])[0] for t in toks]


class _OnnxStream:
    def __init__(self, codec: OnnxCodec, side: str) -> None:
        from .utils import CodecError

        if not codec.streaming:
            raise CodecError(f"{codec.folder}: no streaming graphs (export a causal codec without --no-streaming)")
        self.codec, self.side, self.state, self.done = codec, side, None, False
        graph = codec.meta["graphs"][f"stream_{side}"]
        self.x_name, self.names = graph["inputs"][0], graph["inputs"][1:]
        self.size = codec.chunk_size if side == "encoder" else codec.meta["chunk_frames"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from .utils import CodecError

        if self.done:
            raise CodecError("onnx stream: a chunk shorter than the chunk size ended the stream")
        n = x.shape[-1] if self.side == "encoder" else x.shape[1]
        if n != self.size:
            if n > self.size or n == 0:
                raise CodecError(f"onnx stream: chunks of {self.size} {'samples' if self.side == 'encoder' else 'frames'}, got {n}")
            self.done = True  # a shorter last chunk, as Codec.stream_encoder / stream_decoder take it
            if self.side == "encoder":
                x = self.codec.pad(x)
        feed = {self.x_name: (x.float() if self.side == "encoder" else x.long()).contiguous().numpy()}
        if self.state is None:
            y, *self.state = self.codec.session(f"stream_{self.side}_first").run(None, feed)
        else:
            y, *self.state = self.codec.session(f"stream_{self.side}").run(None, {**feed, **dict(zip(self.names, self.state))})
        return torch.from_numpy(y)


def check_onnx(codec, folder: str | Path, meta: dict | None = None, seconds: float = 1.7, seed: int = 1) -> dict:
    """Run the exported graphs in ``folder`` with onnxruntime (:class:`OnnxCodec`) and compare
    with ``codec``'s PyTorch plain path on ``seconds`` of noise of another length than the traced
    one (batch of 2 offline): token agreement, the largest latent and waveform differences, and
    for the stream graphs the same over a whole stream."""
    folder = Path(folder)
    ort_codec = OnnxCodec(folder, meta=meta)
    plain = _plain_copy(codec, for_export=False)
    hop = plain.hop_length
    g = torch.Generator().manual_seed(seed)
    n = max(4, round(seconds * plain.sample_rate / hop)) * hop
    sig = torch.randn(2, n, generator=g) * 0.1
    with torch.no_grad():
        ref_toks = plain.sig_to_toks(sig)
        ref_lats = plain.sig_to_lats(sig)
        ref_sig = plain.toks_to_sig(ref_toks)
    toks, lats = ort_codec._encode(sig)
    report = {"encoder": {"samples": n, "batch": 2, "token_agreement": (toks == ref_toks).float().mean().item(),
                          "lats_max_abs_diff": (lats - ref_lats).abs().max().item()},
              "decoder": {"frames": ref_toks.shape[1],
                          "sig_max_abs_diff": (ort_codec.toks_to_sig(ref_toks) - ref_sig).abs().max().item()}}
    if ort_codec.streaming:
        chunk = ort_codec.chunk_size
        # whole chunks and a last one of 1.5 hops (padded to 2, a shorter step)
        ssig = torch.randn(1, max(3, -(-n // chunk)) * chunk + 3 * hop // 2, generator=g) * 0.1
        with torch.no_grad():
            s_ref = plain.stream_sig_to_toks(ssig)
            s_wav = plain.stream_toks_to_sig(s_ref)
        report["stream_encoder"] = {"chunks": -(-ssig.shape[-1] // chunk),
                                    "token_agreement": (ort_codec.stream_sig_to_toks(ssig) == s_ref).float().mean().item()}
        report["stream_decoder"] = {"chunks": -(-ssig.shape[-1] // chunk),
                                    "sig_max_abs_diff": (ort_codec.stream_toks_to_sig(s_ref) - s_wav).abs().max().item()}
    return report
