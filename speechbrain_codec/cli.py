"""``speechbrain-codec`` command line: encode, decode, info.

Examples
--------
    speechbrain-codec encode speech.wav speech.sbc --checkpoint exp/codec
    speechbrain-codec decode speech.sbc speech_dec.wav --checkpoint exp/codec
    speechbrain-codec info speech.sbc [--checkpoint exp/codec]
    speechbrain-codec encode a.wav b.flac outdir/ --checkpoint exp/codec   # several files
    speechbrain-codec encode --manifest test.csv --data-root DATA outdir/ --checkpoint exp/codec
    speechbrain-codec encode audio_dir/ sbc_dir/ --checkpoint exp/codec --device cuda
    speechbrain-codec decode sbc_dir/ wav_dir/ --checkpoint exp/codec
    speechbrain-codec decode --manifest test.csv sbc_dir/ wav_dir/ --checkpoint exp/codec --precision int8
    speechbrain-codec encode x.wav x.sbc --checkpoint lucadellalib/focalcodec_12_5hz --precision fp32
    speechbrain-codec export-onnx onnx_dir/ --checkpoint exp/codec   # + streaming steps for causal codecs
    speechbrain-codec baselines --manifest test.csv --data-root DATA outdir/ codec2_700C opus_6k
    speechbrain-codec evaluate --manifest test.csv --system mine=wav_dir --out results.json
    speechbrain-codec report results.json --out results.md --plots plots/ [--format focalcodec_s]
    speechbrain-codec listening make test/ --reference ref/ --system a=dir_a --system b=dir_b
    speechbrain-codec listening parse results/mushra_test/mushra.csv --screening --out summary/

Batch forms (a manifest or a folder as input) write their output folder atomically, with a
``bitrate.json`` (nominal, payload and file bits per second over the whole set). A folder input
takes every file whose suffix is one of the formats libsndfile reads here (``audio_suffixes()``:
.wav, .flac, .ogg, .mp3, ...; other files are skipped with a notice) and writes ``<stem>.sbc``;
inputs that would share an output name (``a.wav`` and ``a.flac``) are refused before anything is
written. A folder of ``.sbc`` files decodes to ``<stem>.wav``. A clip shorter than the encoder
accepts (under one frame) is zero-padded with a notice and decodes to its original length.
``--device`` (cpu, cuda, cuda:N, mps) places the codec and the signals; a device that is not
available is a one-line error. Batch forms code ``--batch-size`` (default 8) utterances of
similar length together, each exactly as it is coded alone (sorted by length, zero-padded,
masked), with a progress bar and a throughput line (RTF, hours of audio per second) on stderr.
``--precision fp32|bf16|int8|int8-dec`` (and ``--compile``) selects an inference path
(:mod:`speechbrain_codec.inference`): fp32 gives the plain path's tokens; bf16 / int8 are lossy;
int8-dec gives fp32's tokens and an int8 decoder (lossy waveform).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
import time
from pathlib import Path

__all__ = ["main", "encode_file", "decode_file", "bitrate_summary", "resolve_device", "audio_suffixes"]

logger = logging.getLogger("speechbrain_codec")


class _StderrHandler(logging.StreamHandler):
    """Writes notices to the current ``sys.stderr`` (which tests and callers may swap)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_notices() -> None:
    """Print the toolkit's warnings as ``notice: ...`` lines on stderr (once per process)."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("notice: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def resolve_device(spec: str):
    """``torch.device`` for a ``--device`` value, or a one-line CodecError when it is unknown or
    not available here (``cuda`` without a GPU: "CUDA requested but not available").

    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("gpu")
    Traceback (most recent call last):
    ...
    speechbrain_codec.utils.CodecError: --device gpu: not a device; use cpu, cuda, cuda:N or mps
    """
    import torch

    from .utils import CodecError

    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise CodecError(f"--device {spec}: not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CodecError(f"--device {spec}: CUDA requested but not available (torch sees no GPU); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CodecError(f"--device {spec}: CUDA device {device.index} requested but only {count} available")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise CodecError(f"--device {spec}: MPS requested but not available; use --device cpu")
    elif device.type != "cpu":
        raise CodecError(f"--device {spec}: not supported; use cpu, cuda, cuda:N or mps")
    return device


def to_device(x, device):
    """Move a codec or a tensor to ``device`` (the one place the command line does so)."""
    return x.to(device)


def to_cpu(x):
    """A result tensor, detached and on the CPU, for writing."""
    return x.detach().cpu()


def _codec_device(codec):
    import torch

    param = next(iter(codec.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


# libsndfile major formats -> file suffixes they use (RAW and MAT are left out: ambiguous)
_FORMAT_SUFFIXES = {
    "WAV": (".wav",), "WAVEX": (".wav",), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",), "AIFF": (".aiff", ".aif", ".aifc"), "AU": (".au", ".snd"), "CAF": (".caf",),
    "W64": (".w64",), "RF64": (".rf64",), "NIST": (".nist", ".sph"), "IRCAM": (".sf",), "VOC": (".voc",),
    "HTK": (".htk",), "SVX": (".svx", ".8svx", ".iff"), "PAF": (".paf",), "PVF": (".pvf",), "XI": (".xi",),
    "SD2": (".sd2",), "AVR": (".avr",), "WVE": (".wve",), "SDS": (".sds",),
}


def audio_suffixes() -> set[str]:
    """Suffixes (lower case) of the audio formats the installed libsndfile reads; a folder
    input is encoded file by file for these, as single-file mode reads any of them."""
    import soundfile as sf

    return {suffix for fmt in sf.available_formats() for suffix in _FORMAT_SUFFIXES.get(fmt, ())}


def _check_collisions(pairs: list[tuple[object, Path]], where: str | Path) -> None:
    """Refuse inputs that would be written to the same output (``a.wav``, ``a.flac`` -> ``a.sbc``);
    names are compared case-insensitively, as some file systems do."""
    from .utils import CodecError

    by_out: dict[str, list] = {}
    for src, dst in pairs:
        by_out.setdefault(str(dst).casefold(), []).append((src, dst))
    clashes = [group for group in by_out.values() if len(group) > 1]
    if clashes:
        text = "; ".join(" and ".join(str(src) for src, _ in group) + f" -> {group[0][1].name}" for group in clashes)
        raise CodecError(f"{where}: inputs would overwrite each other's output ({text}); rename one of them "
                         "or process them into separate folders")


def _folder_items(folder: Path, encoding: bool) -> list[tuple[str, Path]]:
    """``[(stem, path)]`` of the audio (encode) or ``.sbc`` (decode) files of ``folder``."""
    from .utils import CodecError

    suffixes = audio_suffixes() if encoding else {".sbc"}
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    chosen = [p for p in files if p.suffix.lower() in suffixes]
    skipped = [p.name for p in files if p.suffix.lower() not in suffixes and p.name != "bitrate.json"]
    common = [x for x in (".wav", ".flac", ".ogg", ".mp3") if x in suffixes]
    what = f"audio files ({', '.join(common)} or another libsndfile format)" if encoding else ".sbc files"
    if skipped:
        shown = ", ".join(skipped[:5]) + (f", ... ({len(skipped) - 5} more)" if len(skipped) > 5 else "")
        logger.warning("%s: skipped %d file(s) that are not %s: %s", folder, len(skipped), what, shown)
    if not chosen:
        raise CodecError(f"{folder}: no {what} to {'encode' if encoding else 'decode'}")
    suffix = ".sbc" if encoding else ".wav"
    _check_collisions([(p, Path(p.stem + suffix)) for p in chosen], folder)
    return [(p.stem, p) for p in chosen]


def _targets(inputs: list[str], output: str, suffix: str) -> list[tuple[Path, Path]]:
    from .utils import CodecError

    out = Path(output)
    if len(inputs) > 1 or out.is_dir() or output.endswith("/"):
        if out.exists() and not out.is_dir():
            raise CodecError(f"{out}: several inputs need an output folder, but this is a file")
        pairs = [(Path(i), out / (Path(i).stem + suffix)) for i in inputs]
        _check_collisions(pairs, out)
        out.mkdir(parents=True, exist_ok=True)
        return pairs
    return [(Path(inputs[0]), out)]


def _tokens(codec, sig, src, device, streaming: bool = False) -> dict:
    """``stream name -> toks [N, K]`` (numpy, CPU, frame rate) of ``sig [T_wav]``, encoded on
    ``device``.

    A clip shorter than one frame, or than the encoder's analysis window, is zero-padded by
    whole frames (at most ``FRAME_SLACK`` beyond ``ceil(T_wav / hop)``) with a notice; the
    bitstream keeps the original sample count, so decoding restores the original length.
    """
    import torch

    from .bitstream import FRAME_SLACK
    from .utils import CodecError

    def numpy(toks) -> dict:
        return {name: to_cpu(t)[0].numpy() for name, t in codec.token_dict(toks).items()}

    timed = [s.name for s in codec.layout if not s.per_utterance]
    n, hop = sig.numel(), codec.hop_length
    x = to_device(sig[None], device)
    to_toks = codec.stream_sig_to_toks if streaming else codec.sig_to_toks
    with torch.no_grad():
        if n >= (FRAME_SLACK + 1) * hop:
            return numpy(to_toks(x))
        first = max(1, -(-n // hop))
        problem = "no frames"
        for frames in range(first, first + FRAME_SLACK + 1):
            try:
                toks = numpy(to_toks(torch.nn.functional.pad(x, (0, frames * hop - n))))
            except RuntimeError as err:  # e.g. reflect padding longer than the input
                problem = str(err).strip().splitlines()[0]
                continue
            if all(toks[name].shape[0] > 0 for name in timed):
                break
        else:
            raise CodecError(f"{src}: {n} samples are too short for this codec, even zero-padded to "
                             f"{frames * hop} ({problem})")
    if len(codec.layout.streams) > 1:
        # padded to whole frames of every stream (hop = their least common multiple): send each
        # frame stream's own ceil(n / hop_s) frames (at least one), as a longer clip would
        toks = {s.name: toks[s.name] if s.per_utterance else toks[s.name][: max(1, s.num_frames(n))]
                for s in codec.layout}
    if n < hop or frames > first:
        why = f"shorter than the encoder's window or {hop} samples" if len(codec.layout.streams) > 1 else (
            f"shorter than one frame ({hop} samples)" if n < hop else "shorter than the encoder's window")
        logger.warning("%s: %d samples, %s: zero-padded to %d samples; decoding restores the %d samples",
                       src, n, why, frames * hop, n)
    return toks


def _sent_streams(codec, toks: dict) -> list:
    """What the bitstream holds of each stream (deduplicated units for unit streams)."""
    from .bitstream import StreamTokens

    return [StreamTokens.from_frames(spec, toks[spec.name]) for spec in codec.layout]


def encode_file(codec, src: str | Path, dst: str | Path, entropy: bool = False, device=None,
                streaming: bool = False) -> dict:
    """Encode one audio file with ``codec`` into a ``.sbc`` file; returns size facts: file,
    header and payload bytes (and per stream), the duration and the units sent per unit stream.

    ``entropy=True`` range-codes the streams that have a token model in the checkpoint. ``device``
    (default: the codec's) is where the signal is encoded; the tokens come back to the CPU.
    ``streaming=True`` encodes chunk by chunk (:meth:`Codec.stream_sig_to_toks`; a causal codec).
    """
    from .dataio import load_audio
    from .utils import CodecError

    if entropy and not codec.token_models:
        raise CodecError("the checkpoint has no entropy model; fit one with `speechbrain-codec fit-entropy`")
    device = _codec_device(codec) if device is None else device
    sig = load_audio(src, codec.sample_rate)
    return _write_tokens(codec, _tokens(codec, sig, src, device, streaming), sig.numel(), src, dst, entropy)


def _write_tokens(codec, toks: dict, num_samples: int, src, dst, entropy: bool) -> dict:
    """Write ``toks`` (``_tokens``'s) of a ``num_samples`` clip to the ``.sbc`` file ``dst``."""
    from .bitstream import Bitstream, write_sbc
    from .utils import CodecError

    streams = _sent_streams(codec, toks)
    bs = Bitstream.from_streams(streams, codec.sample_rate, num_samples, codec.config_hash,
                                codec.token_models if entropy else None)
    try:
        data, per_stream = bs.encode()
    except ValueError as err:  # the codec's output does not fit a plausible bitstream
        raise CodecError(f"{src}: {err}") from None
    size = write_sbc(dst, data)
    return {"file_bytes": size, "payload_bytes": sum(per_stream.values()), "header_bytes": size - sum(per_stream.values()),
            "stream_payload_bytes": per_stream, "duration": bs.duration,
            "units": {s.spec.name: int(s.toks.shape[0]) for s in streams if s.spec.kind == "units"}}


def _check_fits(codec, bs, src) -> None:
    """Refuse a bitstream whose streams are not the checkpoint's."""
    from .utils import CodecError

    if bs.config_hash != codec.config_hash:
        raise CodecError(
            f"{src}: written by another model (codec hash {bs.config_hash}, the checkpoint's is "
            f"{codec.config_hash}); decode it with the checkpoint that encoded it"
        )
    mine = {s.name: s for s in codec.layout}
    theirs = {s.spec.name: s.spec for s in bs.streams}
    if len(bs.streams) == 1 and len(mine) == 1 and bs.streams[0].spec.kind == "frames":
        # versions 1-2 (every frame stored) also fit a unit-stream codec
        (s,), (m,) = theirs.values(), mine.values()
        ok = s.codebook_sizes == m.codebook_sizes and s.hop_length == m.hop_length
    else:
        ok = theirs == mine
    if not ok:
        def fmt(specs):
            return "; ".join(f"{s.name} {s.kind} hop {s.hop_length} codebooks {list(s.codebook_sizes)}"
                             for s in specs.values())
        raise CodecError(f"{src}: streams ({fmt(theirs)}) do not fit the checkpoint's ({fmt(mine)})")


def decode_file(codec, src: str | Path, dst: str | Path, device=None, streaming: bool = False) -> dict:
    """Decode one ``.sbc`` file with ``codec`` (on ``device``, default the codec's) into a 16-bit
    WAV/FLAC file; ``streaming=True`` decodes chunk by chunk (:meth:`Codec.stream_toks_to_sig`)."""
    import torch

    from .bitstream import read_sbc

    bs = read_sbc(src, codec.token_models or None)
    _check_fits(codec, bs, src)
    device = _codec_device(codec) if device is None else device
    toks = {name: to_device(torch.as_tensor(t)[None], device) for name, t in bs.token_dict().items()}
    with torch.no_grad():
        to_sig = codec.stream_toks_to_sig if streaming else codec.toks_to_sig
        sig = to_cpu(to_sig(codec.from_token_dict(toks)))
    _save_decoded(codec, sig, bs.num_samples, dst)
    return {"duration": bs.duration}


def _save_decoded(codec, sig, num_samples: int, dst) -> None:
    """``sig [1, T]`` cut / extended to the clip's output length, written as 16-bit audio."""
    from .dataio import save_audio

    save_audio(dst, codec.fit_length(sig, codec.output_length(num_samples))[0], codec.output_sample_rate)


def bitrate_summary(codec, facts: list[dict], seconds_taken: float | None = None, entropy: bool = False) -> dict:
    """``bitrate.json`` of a set of encoded files (``encode_file``'s facts): the nominal rate,
    the measured payload / header / file rates over the total duration (``file_bitrate`` is
    8 x the files' bytes / their seconds), per stream, and the side information."""
    dur = sum(f["duration"] for f in facts)
    layout = codec.layout

    def rate(nbytes):
        return 8 * nbytes / dur if dur else None

    streams = {}
    for spec in layout:
        nbytes = sum(f["stream_payload_bytes"][spec.name] for f in facts)
        row = {"kind": spec.kind, "nominal_bitrate": spec.nominal_bitrate(codec.sample_rate),
               "payload_bitrate": rate(nbytes), "payload_bytes": nbytes}
        if spec.kind == "units":
            units = sum(f["units"][spec.name] for f in facts)
            row["units_per_second"] = units / dur if dur else None
            row["units_bitrate"] = spec.bits_per_frame * units / dur if dur else None  # R x H (H = log2 N)
        if spec.per_utterance:
            row["side_info_bits"] = spec.bits_per_frame
        streams[spec.name] = row
    side = sum(r["payload_bytes"] for r in streams.values() if r["kind"] == "utterance")
    rates = {
        "frame_rate": codec.frame_rate,
        "nominal_bitrate": codec.bitrate,
        "side_info_bits": codec.side_info_bits,
        # the side information spread over these files' own durations
        "nominal_bitrate_with_side_info": (codec.bitrate + codec.side_info_bits * len(facts) / dur) if dur else None,
        "payload_bitrate": rate(sum(f["payload_bytes"] for f in facts)),
        "side_info_bitrate": rate(side),
        "header_bitrate": rate(sum(f["header_bytes"] for f in facts)),
        "file_bitrate": rate(sum(f["file_bytes"] for f in facts)),
        "file_bytes": sum(f["file_bytes"] for f in facts),
        "duration": dur,
        "files": len(facts),
        "streams": streams,
    }
    units = [r for r in streams.values() if r["kind"] == "units"]
    if units and dur:  # variable-rate units (DPDP): log2 N bits per unit after merging repeats
        rates["dedup_bitrate"] = sum(r["units_bitrate"] for r in units)
    if seconds_taken is not None:
        rates["encode_rtf"] = seconds_taken / dur if dur else None  # incl. file I/O
    if entropy:
        rates["entropy_coded"] = True
    return rates


def _batchable(codec, streaming: bool, batch_size: int) -> bool:
    """Whether ``_batch`` codes several utterances per call (offline)."""
    return batch_size > 1 and not streaming and hasattr(codec, "batch_sig_to_toks") and getattr(codec, "batches", True)


class _Progress:
    """A progress bar on stderr (tqdm; silent when stderr is not a terminal unless forced)."""

    def __init__(self, total: int, what: str, unit_seconds: bool = False) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=what, unit="utt", file=sys.stderr, leave=False,
                        disable=None if total > 1 else True, dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _throughput(command: str, n: int, audio_s: float, taken: float) -> dict:
    """The throughput facts of a batch run, printed as one line on stderr."""
    facts = {"utterances": n, "audio_seconds": round(audio_s, 3), "seconds": round(taken, 3),
             "rtf": taken / audio_s if audio_s else None,
             "audio_hours_per_second": audio_s / 3600 / taken if taken else None}
    rtf = f"RTF {facts['rtf']:.3f}" if facts["rtf"] is not None else "RTF -"
    speed = f"{audio_s / taken:.1f} s of audio per second" if taken else "-"
    print(f"{command}d {n} utterance(s), {audio_s / 3600:.4f} h of audio in {taken:.1f} s: {rtf}, {speed} "
          f"({facts['audio_hours_per_second'] or 0:.2e} h/s)", file=sys.stderr)
    return facts


def _encode_batched(codec, items, tmp: Path, entropy: bool, device, batch_size: int, progress) -> list[dict]:
    """Encode ``items`` in batches of similar length (longest first within the sorted order
    does not matter: every utterance gets the tokens it gets alone); short clips (the padding
    rules of ``_tokens``) are coded one by one."""
    from .bitstream import FRAME_SLACK
    from .dataio import load_audio

    facts: dict[int, dict] = {}
    lengths = []
    for uid, src in items:
        try:
            import soundfile as sf

            info = sf.info(str(src))
            lengths.append(info.frames * codec.sample_rate / max(info.samplerate, 1))
        except Exception:  # let load_audio report it, in order
            lengths.append(0.0)
    order = sorted(range(len(items)), key=lambda i: (lengths[i], i))
    short = (FRAME_SLACK + 1) * codec.hop_length
    for start in range(0, len(order), batch_size * 4):  # bounded memory: a few batches of audio at a time
        window = order[start : start + batch_size * 4]
        sigs = {i: load_audio(items[i][1], codec.sample_rate) for i in window}
        long_ = [i for i in window if sigs[i].numel() >= short]
        for i in window:
            if sigs[i].numel() < short:
                uid, src = items[i]
                facts[i] = _write_tokens(codec, _tokens(codec, sigs[i], src, device), sigs[i].numel(), src,
                                         tmp / f"{uid}.sbc", entropy)
                progress(1)
        toks = codec.batch_sig_to_toks([to_device(sigs[i], device) for i in long_], batch_size, progress)
        for i, t in zip(long_, toks):
            uid, src = items[i]
            facts[i] = _write_tokens(codec, {name: to_cpu(v).numpy() for name, v in codec.token_dict(t).items()},
                                     sigs[i].numel(), src, tmp / f"{uid}.sbc", entropy)
    return [facts[i] for i in range(len(items))]


def _decode_batched(codec, items, tmp: Path, device, batch_size: int, progress) -> float:
    """Decode ``items`` (``.sbc`` files) in batches of similar length; returns the audio seconds."""
    import torch

    from .bitstream import read_sbc
    from .inference import _token_length

    streams = []
    for uid, src in items:
        bs = read_sbc(src, codec.token_models or None)
        _check_fits(codec, bs, src)
        streams.append(bs)
    toks = [codec.from_token_dict({name: to_device(torch.as_tensor(t), device) for name, t in bs.token_dict().items()})
            for bs in streams]
    order = sorted(range(len(items)), key=lambda i: (_token_length(toks[i]), i))
    for start in range(0, len(order), batch_size * 4):
        window = order[start : start + batch_size * 4]
        sigs = codec.batch_toks_to_sig([toks[i] for i in window], batch_size, progress)
        for i, sig in zip(window, sigs):
            _save_decoded(codec, to_cpu(sig)[None], streams[i].num_samples, tmp / f"{items[i][0]}.wav")
    return sum(bs.duration for bs in streams)


def _batch(codec, command: str, items: list[tuple[str, Path]], out_dir: Path, entropy: bool = False,
           device=None, streaming: bool = False, batch_size: int = 1) -> None:
    """Encode or decode ``[(ID, path)]`` into ``out_dir`` (atomic); write ``bitrate.json``.

    ``batch_size > 1`` codes utterances of similar length together
    (:meth:`Codec.batch_sig_to_toks`: each gets the tokens and waveform it gets alone); a
    progress bar and a throughput line (RTF, audio hours per second) go to stderr, and the
    throughput into ``bitrate.json``."""
    from .utils import atomic_path, atomic_write_json

    device = _codec_device(codec) if device is None else device
    batched = _batchable(codec, streaming, batch_size)
    progress = _Progress(len(items), command)
    start = time.perf_counter()
    try:
        with atomic_path(out_dir, is_dir=True) as tmp:
            if command == "encode":
                if batched:
                    facts = _encode_batched(codec, items, tmp, entropy, device, batch_size, progress)
                else:
                    facts = []
                    for uid, src in items:
                        facts.append(encode_file(codec, src, tmp / f"{uid}.sbc", entropy, device, streaming))
                        progress(1)
                taken = time.perf_counter() - start
                rates = bitrate_summary(codec, facts, taken, entropy)
                rates["encode_streaming"] = streaming
                rates["encode_throughput"] = _throughput(command, len(items), rates["duration"] or 0.0, taken)
                rates["encode_throughput"]["batch_size"] = batch_size if batched else 1
                atomic_write_json(tmp / "bitrate.json", rates)
            else:
                if batched:
                    dur = _decode_batched(codec, items, tmp, device, batch_size, progress)
                else:
                    dur = 0.0
                    for uid, src in items:
                        dur += decode_file(codec, src, tmp / f"{uid}.wav", device, streaming)["duration"]
                        progress(1)
                taken = time.perf_counter() - start
                report = _throughput(command, len(items), dur, taken)
                report["batch_size"] = batch_size if batched else 1
                src_rates = Path(items[0][1]).parent / "bitrate.json" if items else None
                if src_rates is not None and src_rates.is_file():
                    rates = json.loads(src_rates.read_text())
                    rates["decode_rtf"] = taken / dur if dur else None
                    rates["decode_streaming"] = streaming
                    rates["decode_throughput"] = report
                    atomic_write_json(tmp / "bitrate.json", rates)
    finally:
        progress.close()


def _info(args) -> tuple[dict, int]:
    """Facts of the checkpoint and of each file; a bad file is one error line, the others are
    still described. Returns ``(facts, number of bad files)``."""
    from .bitstream import pack_stream, peek_header, read_sbc
    from .streams import StreamLayout, StreamSpec
    from .utils import CodecError

    facts: dict = {}
    failed = 0
    codec = None
    if args.checkpoint:
        from .codec import Codec

        codec = Codec.from_pretrained(args.checkpoint, trust_remote_code=args.trust_remote_code)
        facts["codec"] = {"config_hash": codec.config_hash, **codec.describe(),
                          "entropy_models": {n: m.hash for n, m in codec.token_models.items()}}
    for name in args.files:
        bs = None
        try:
            h = peek_header(name)  # validates the header, the payload's length and checksum
            models = codec.token_models if codec is not None else {}
            if not h["entropy_coded"] or models:
                bs = read_sbc(name, models or None, notices=False)  # and the token ranges
        except CodecError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        duration = h["num_samples"] / h["sample_rate"]
        layout = StreamLayout([StreamSpec.from_dict(s) for s in h["streams"].values()], h["sample_rate"])

        def rate(nbytes):
            return round(8 * nbytes / duration, 2) if duration else None

        streams = {}
        for spec in layout:
            s = h["streams"][spec.name]
            row = {"kind": spec.kind, "frame_rate": spec.frame_rate(h["sample_rate"]),
                   "codebook_sizes": list(spec.codebook_sizes),
                   ("units" if spec.kind == "units" else "frames" if spec.kind == "frames" else "codes"): s["count"],
                   "nominal_bitrate": round(spec.nominal_bitrate(h["sample_rate"]), 2),
                   "payload_bytes": s["payload_bytes"], "payload_bitrate": rate(s["payload_bytes"]),
                   "entropy_coded": s["entropy_coded"], "arithmetic": spec.arithmetic(h["sample_rate"])}
            if spec.durations:
                row["run_lengths"] = "stored"
            if spec.per_utterance:
                row["side_info_bits"] = spec.bits_per_frame
            if bs is not None:  # the other coding of the same tokens: plain, and entropy-coded where a model exists
                st = bs[spec.name]
                tail = len(pack_stream(st.durations - 1, st.duration_radix())) if spec.durations and len(st.durations) else 0
                row["plain_payload_bitrate"] = rate(len(st.plain_payload()))
                model = models.get(spec.name)
                if model is not None and not spec.per_utterance:
                    row["entropy_coded_bitrate"] = rate(len(model.encode(st.toks)) + tail)
            streams[spec.name] = row
        facts[name] = {
            "version": h["version"],
            "sample_rate": h["sample_rate"],
            "duration_s": round(duration, 4),
            "entropy_coded": h["entropy_coded"],
            "nominal_bitrate": round(layout.bitrate, 2),
            "side_info_bits": layout.side_info_bits,
            "nominal_bitrate_with_side_info": round(layout.bitrate + layout.side_info_bits / duration, 2) if duration else None,
            "payload_bitrate": rate(h["payload_bytes"]),
            "file_bitrate": rate(h["file_bytes"]),
            "header_bytes": h["header_bytes"],
            "payload_bytes": h["payload_bytes"],
            "streams": streams,
            "config_hash": h["config_hash"],
        }
        if len(layout.streams) == 1:  # the flat facts of a single-stream file
            s = layout.streams[0]
            facts[name].update({"frame_rate": s.frame_rate(h["sample_rate"]), "codebook_sizes": list(s.codebook_sizes),
                                "units" if s.kind == "units" else "frames": h["streams"][s.name]["count"]})
        if codec is not None:
            facts[name]["matches_checkpoint"] = h["config_hash"] == codec.config_hash
    return facts, failed


def _fit_entropy(codec, args) -> int:
    """Tokens of every manifest clip -> one token model per frame or unit stream (the units
    after deduplication) -> ``<checkpoint>/entropy_model[.<stream>].json``."""
    from .codec import entropy_model_file
    from .dataio import load_audio, read_manifest
    from .entropy import fit_token_model

    sent, seconds = [], 0.0
    for row in read_manifest(args.manifest, args.data_root).values():
        sig = load_audio(row["wav"], codec.sample_rate, notices=False)
        toks = _tokens(codec, sig, row["wav"], args.device)  # short clips padded as encode pads them
        sent.append({s.spec.name: s.toks for s in _sent_streams(codec, toks)})
        seconds += sig.numel() / codec.sample_rate
    opts = {"smoothing": args.smoothing} if args.model == "order0" else {"order": args.order}
    for spec in codec.layout:
        if spec.per_utterance:  # one code per utterance: too few to fit, sent plainly
            continue
        toks = [s[spec.name] for s in sent]
        model = fit_token_model(args.model, toks, list(spec.codebook_sizes), **opts)
        model.save(Path(args.checkpoint) / entropy_model_file(spec.name))
        ideal = sum(model.ideal_bits(t) for t in toks) / seconds
        print(f"fitted {entropy_model_file(spec.name)} ({args.model}) on {len(toks)} clips ({seconds:.1f} s): "
              f"ideal {ideal:.1f} b/s on them (nominal {spec.nominal_bitrate(codec.sample_rate):.1f} b/s)")
    return 0


def _print_info(facts: dict) -> None:
    for name, f in facts.items():
        print(f"{name}:")
        for key, value in f.items():
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                print(f"  {key}:")
                for sub, row in value.items():
                    print(f"    {sub}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
            else:
                print(f"  {key}: {value}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``speechbrain-codec``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="speechbrain-codec", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, helptext in (("encode", "audio -> .sbc"), ("decode", ".sbc -> audio")):
        p = sub.add_parser(cmd, help=helptext)
        p.add_argument("paths", nargs="+", metavar="IN... OUT",
                       help="input file(s) or one input folder, then the output file or folder")
        p.add_argument("--checkpoint", required=True,
                       help="codec folder (codec.yaml, codec.ckpt), a published FocalCodec folder (config.json + weights) or a hub id")
        p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
        p.add_argument("--trust-remote-code", action="store_true",
                       help="load a codec.yaml that calls code outside the toolkit (only from a source you trust)")
        p.add_argument("--streaming", action="store_true",
                       help=f"{cmd} chunk by chunk as a streaming {'sender' if cmd == 'encode' else 'receiver'} "
                            "would (causal codecs; the same tokens as offline)")
        p.add_argument("--precision", choices=["fp32", "bf16", "int8", "int8-dec"], default=None,
                       help="the inference path (Codec.optimize_for_inference): fp32 = exact (the tokens of the plain "
                            "path, faster), bf16 / int8 = reduced-precision weights (faster, lossy), int8-dec = fp32 tokens and an "
                            "int8 decoder (lossy waveform; streams faster); default: the plain path")
        p.add_argument("--compile", action="store_true", help="torch.compile the lobes (the first call compiles: slow)")
        p.add_argument("--batch-size", type=int, default=8,
                       help="manifest / folder inputs: utterances of similar length coded together (default 8; 1: one by one)")
        if cmd == "encode":
            p.add_argument("--manifest", help="encode every utterance of this manifest (output: a folder)")
            p.add_argument("--data-root", help="value of {data_root} in the manifest")
            p.add_argument("--entropy", action="store_true",
                           help="range-code the tokens with the checkpoint's entropy_model.json")
        else:
            p.add_argument("--manifest", help="decode <IN>/<ID>.sbc for every ID of this manifest (IN: a folder of .sbc)")
    p = sub.add_parser("fit-entropy", help="fit the token model for --entropy on a manifest")
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--model", choices=["order0", "ngram"], default="order0",
                   help="order0: a categorical per codebook; ngram: a back-off n-gram over each codebook")
    p.add_argument("--order", type=int, default=2, help="n-gram order (--model ngram; 2: orders 3-4 measured no better)")
    p.add_argument("--smoothing", type=float, default=1.0, help="added to every count (--model order0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--trust-remote-code", action="store_true", help="as for encode")
    for extra in ("baselines", "evaluate", "report", "listening", "leaderboard"):
        sub.add_parser(extra, help=f"see `speechbrain-codec {extra} --help`", add_help=False)
    p = sub.add_parser("export-onnx", help="ONNX graphs of a codec (offline, and streaming steps), checked with onnxruntime")
    p.add_argument("out_dir", help="folder for encoder.onnx, decoder.onnx, stream_*.onnx and onnx.json")
    p.add_argument("--checkpoint", required=True, help="as for encode")
    p.add_argument("--no-streaming", action="store_true", help="causal codecs: skip the streaming step graphs")
    p.add_argument("--no-check", action="store_true", help="do not run the graphs with onnxruntime against PyTorch")
    p.add_argument("--trust-remote-code", action="store_true", help="as for encode")
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p = sub.add_parser("info", help="describe .sbc files and/or a checkpoint")
    p.add_argument("files", nargs="*")
    p.add_argument("--checkpoint")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--trust-remote-code", action="store_true", help="as for encode")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("baselines", "evaluate", "report", "listening", "leaderboard"):
        setup_notices()
        from importlib import import_module

        from .utils import CodecError

        try:
            return import_module(f"speechbrain_codec.{argv[0]}").main(argv[1:])
        except CodecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    args = parser.parse_args(argv)

    setup_notices()
    from .utils import CodecError

    try:
        if args.command == "info":
            if not args.files and not args.checkpoint:
                parser.error("info needs .sbc files or --checkpoint")
            facts, failed = _info(args)
            print(json.dumps(facts, indent=2)) if args.json else _print_info(facts)
            return 1 if failed else 0
        from .codec import Codec

        device = args.device = resolve_device(args.device)
        codec = to_device(Codec.from_pretrained(args.checkpoint, map_location=device,
                                                trust_remote_code=args.trust_remote_code), device)
        if args.command == "fit-entropy":
            return _fit_entropy(codec, args)
        if args.command == "export-onnx":
            from .onnx_export import export_onnx

            meta = export_onnx(codec, args.out_dir, streaming=False if args.no_streaming else None,
                               check=not args.no_check)
            for name, graph in meta["graphs"].items():
                print(f"{Path(args.out_dir) / graph['file']}: {', '.join(graph['inputs'][:3])}"
                      f"{' ...' if len(graph['inputs']) > 3 else ''} -> {', '.join(graph['outputs'][:2])}"
                      f"{' ...' if len(graph['outputs']) > 2 else ''}")
            if "check" in meta:
                print("onnxruntime vs PyTorch: " + "; ".join(
                    f"{k} " + ", ".join(f"{m} {v:.3g}" for m, v in r.items() if isinstance(v, float))
                    for k, r in meta["check"].items()))
            return 0
        encoding = args.command == "encode"
        if args.streaming and not getattr(codec, "streaming", False):
            raise CodecError(f"{args.checkpoint}: --streaming needs a causal codec whose lobes all stream; "
                             "this one does not (drop --streaming)")
        if args.batch_size < 1:
            raise CodecError(f"--batch-size {args.batch_size}: give 1 or more")
        if args.precision or args.compile:
            if not hasattr(codec, "optimize_for_inference"):
                raise CodecError(f"{args.checkpoint}: this codec has no inference modes (drop --precision / --compile)")
            from .inference import PRECISIONS

            codec.optimize_for_inference(PRECISIONS[args.precision or "fp32"], compile=args.compile)
        work = functools.partial(encode_file, entropy=args.entropy) if encoding else decode_file
        work = functools.partial(work, streaming=args.streaming)
        suffix = ".sbc" if encoding else ".wav"
        manifest = args.manifest
        *inputs, output = args.paths
        if manifest or (len(inputs) == 1 and Path(inputs[0]).is_dir()):
            if manifest:
                from .dataio import read_manifest

                if encoding and inputs:
                    parser.error("with --manifest, give only the output folder")
                if not encoding and (len(inputs) != 1 or not Path(inputs[0]).is_dir()):
                    parser.error("decode --manifest needs the folder of .sbc files, then the output folder")
                rows = read_manifest(manifest, args.data_root if encoding else None)
                if encoding:
                    items = [(uid, Path(r["wav"])) for uid, r in rows.items()]
                else:
                    items = [(uid, Path(inputs[0]) / f"{uid}.sbc") for uid in rows]
                    missing = [str(p) for _, p in items if not p.is_file()]
                    if missing:
                        raise CodecError(f"{manifest}: {len(missing)} utterance(s) have no .sbc in {inputs[0]} "
                                         f"(first: {missing[0]}); encode them first (encode --manifest)")
                _check_collisions([(uid, Path(uid + suffix)) for uid, _ in items], manifest)
            else:
                items = _folder_items(Path(inputs[0]), encoding)
            _batch(codec, args.command, items, Path(output), encoding and args.entropy, device, args.streaming,
                   args.batch_size)
            return 0
        if not inputs:
            parser.error(f"{args.command} needs an input and an output")
        failed = 0
        for src, dst in _targets(inputs, output, suffix):
            try:
                work(codec, src, dst, device=device)
            except CodecError as err:
                print(f"error: {err}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. an output folder that cannot be created; the message names the path
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
