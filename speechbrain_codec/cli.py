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
available is a one-line error.
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

__all__ = ["main", "encode_file", "decode_file", "resolve_device", "audio_suffixes"]

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


def _tokens(codec, sig, src, device) -> "np.ndarray":
    """``toks [T, K]`` (numpy, CPU) of ``sig [T_wav]``, encoded on ``device``.

    A clip shorter than one frame, or than the encoder's analysis window, is zero-padded by
    whole frames (at most ``FRAME_SLACK`` beyond ``ceil(T_wav / hop)``) with a notice; the
    bitstream keeps the original sample count, so decoding restores the original length.
    """
    import torch

    from .bitstream import FRAME_SLACK
    from .utils import CodecError

    n, hop = sig.numel(), codec.hop_length
    x = to_device(sig[None], device)
    with torch.no_grad():
        if n >= (FRAME_SLACK + 1) * hop:
            return to_cpu(codec.sig_to_toks(x))[0].numpy()
        first = max(1, -(-n // hop))
        problem = "no frames"
        for frames in range(first, first + FRAME_SLACK + 1):
            try:
                toks = codec.sig_to_toks(torch.nn.functional.pad(x, (0, frames * hop - n)))
            except RuntimeError as err:  # e.g. reflect padding longer than the input
                problem = str(err).strip().splitlines()[0]
                continue
            if toks.shape[1] > 0:
                break
        else:
            raise CodecError(f"{src}: {n} samples are too short for this codec, even zero-padded to "
                             f"{frames * hop} ({problem})")
    if n < hop or frames > first:
        why = f"shorter than one frame ({hop} samples)" if n < hop else "shorter than the encoder's window"
        logger.warning("%s: %d samples, %s: zero-padded to %d samples (%d frame%s); decoding restores the %d samples",
                       src, n, why, frames * hop, frames, "s" if frames > 1 else "", n)
    return to_cpu(toks)[0].numpy()


def encode_file(codec, src: str | Path, dst: str | Path, entropy: bool = False, device=None) -> dict:
    """Encode one audio file with ``codec`` into a ``.sbc`` file; returns size facts.

    ``entropy=True`` range-codes the tokens with the checkpoint's token model. ``device``
    (default: the codec's) is where the signal is encoded; the tokens come back to the CPU.
    """
    from .bitstream import Bitstream, write_sbc
    from .dataio import load_audio
    from .quantizers import dedup
    from .utils import CodecError

    if entropy and codec.token_model is None:
        raise CodecError("the checkpoint has no entropy_model.json; fit one with `speechbrain-codec fit-entropy`")
    device = _codec_device(codec) if device is None else device
    sig = load_audio(src, codec.sample_rate)
    toks = _tokens(codec, sig, src, device)
    bs = Bitstream(toks, codec.sample_rate, codec.hop_length, sig.numel(), codec.codebook_sizes,
                   codec.config_hash, codec.token_model if entropy else None)
    try:
        size = write_sbc(dst, bs)
    except ValueError as err:  # the codec's output does not fit a plausible bitstream
        raise CodecError(f"{src}: {err}") from None
    runs = sum(len(dedup(toks[:, k])[0]) for k in range(toks.shape[1]))
    return {"file_bytes": size, "payload_bytes": size - bs.header_bytes(), "duration": bs.duration, "runs": runs}


def decode_file(codec, src: str | Path, dst: str | Path, device=None) -> dict:
    """Decode one ``.sbc`` file with ``codec`` (on ``device``, default the codec's) into a 16-bit
    WAV/FLAC file."""
    import torch

    from .bitstream import read_sbc
    from .dataio import save_audio
    from .utils import CodecError

    bs = read_sbc(src, codec.token_model)
    if bs.config_hash != codec.config_hash:
        raise CodecError(
            f"{src}: written by another model (codec hash {bs.config_hash}, the checkpoint's is "
            f"{codec.config_hash}); decode it with the checkpoint that encoded it"
        )
    if bs.codebook_sizes != codec.codebook_sizes or bs.hop_length != codec.hop_length:
        raise CodecError(f"{src}: codebooks {bs.codebook_sizes} / hop {bs.hop_length} do not fit the checkpoint")
    device = _codec_device(codec) if device is None else device
    toks = to_device(torch.as_tensor(bs.toks)[None], device)
    with torch.no_grad():
        sig = to_cpu(codec.toks_to_sig(toks))
    sig = codec.fit_length(sig, codec.output_length(bs.num_samples))[0]
    save_audio(dst, sig, codec.output_sample_rate)
    return {"duration": bs.duration}


def _batch(codec, command: str, items: list[tuple[str, Path]], out_dir: Path, entropy: bool = False,
           device=None) -> None:
    """Encode or decode ``[(ID, path)]`` into ``out_dir`` (atomic); write ``bitrate.json``."""
    from .utils import atomic_path, atomic_write_json

    start = time.perf_counter()
    with atomic_path(out_dir, is_dir=True) as tmp:
        if command == "encode":
            payload = size = dur = runs = 0.0
            for uid, src in items:
                facts = encode_file(codec, src, tmp / f"{uid}.sbc", entropy, device)
                payload, size, dur = payload + facts["payload_bytes"], size + facts["file_bytes"], dur + facts["duration"]
                runs += facts["runs"]
            rates = {
                "frame_rate": codec.frame_rate,
                "nominal_bitrate": codec.bitrate,
                "payload_bitrate": 8 * payload / dur if dur else None,
                "file_bitrate": 8 * size / dur if dur else None,
                "duration": dur,
                "files": len(items),
            }
            rates["encode_rtf"] = (time.perf_counter() - start) / dur if dur else None  # incl. file I/O
            if entropy:
                rates["entropy_coded"] = True
            if hasattr(codec.quantizer, "measured_bitrate") and dur:
                # variable-rate units (DPDP): log2 K bits per unit after merging repeats
                rates["dedup_bitrate"] = math.log2(codec.codebook_sizes[0]) * runs / dur
            atomic_write_json(tmp / "bitrate.json", rates)
        else:
            dur = sum(decode_file(codec, src, tmp / f"{uid}.wav", device)["duration"] for uid, src in items)
            src_rates = Path(items[0][1]).parent / "bitrate.json" if items else None
            if src_rates is not None and src_rates.is_file():
                rates = json.loads(src_rates.read_text())
                rates["decode_rtf"] = (time.perf_counter() - start) / dur if dur else None
                atomic_write_json(tmp / "bitrate.json", rates)


def _info(args) -> tuple[dict, int]:
    """Facts of the checkpoint and of each file; a bad file is one error line, the others are
    still described. Returns ``(facts, number of bad files)``."""
    from .bitstream import peek_header, read_sbc
    from .utils import CodecError

    facts: dict = {}
    failed = 0
    if args.checkpoint:
        from .codec import Codec

        codec = Codec.from_pretrained(args.checkpoint)
        facts["codec"] = {"config_hash": codec.config_hash, **codec.describe(),
                          "entropy_model": codec.token_model.hash if codec.token_model else None}
    for name in args.files:
        try:
            h = peek_header(name)  # validates the header, the payload's length and checksum
            model = codec.token_model if "codec" in facts else None
            if not h["entropy_coded"] or model is not None:
                read_sbc(name, model, notices=False)  # and the token ranges
        except CodecError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        duration = h["num_samples"] / h["sample_rate"]
        frame_rate = h["sample_rate"] / h["hop_length"]
        size = Path(name).stat().st_size
        facts[name] = {
            "sample_rate": h["sample_rate"],
            "frame_rate": frame_rate,
            "codebook_sizes": h["codebook_sizes"],
            "frames": h["frames"],
            "duration_s": round(duration, 4),
            "entropy_coded": h["entropy_coded"],
            "nominal_bitrate": round(frame_rate * sum(math.log2(n) for n in h["codebook_sizes"]), 2),
            "payload_bitrate": round(8 * h["payload_bytes"] / duration, 2) if duration else None,
            "file_bitrate": round(8 * size / duration, 2) if duration else None,
            "header_bytes": h["header_bytes"],
            "payload_bytes": h["payload_bytes"],
            "config_hash": h["config_hash"],
        }
        if "codec" in facts:
            facts[name]["matches_checkpoint"] = h["config_hash"] == facts["codec"]["config_hash"]
    return facts, failed


def _fit_entropy(codec, args) -> int:
    """Tokens of every manifest clip -> counts -> ``<checkpoint>/entropy_model.json``."""
    import torch

    from .codec import ENTROPY_MODEL
    from .dataio import load_audio, read_manifest
    from .entropy import TokenModel

    toks, seconds = [], 0.0
    for row in read_manifest(args.manifest, args.data_root).values():
        sig = load_audio(row["wav"], codec.sample_rate, notices=False)
        with torch.no_grad():
            toks.append(to_cpu(codec.sig_to_toks(to_device(sig[None], args.device)))[0].numpy())
        seconds += sig.numel() / codec.sample_rate
    model = TokenModel.fit(toks, codec.codebook_sizes, args.smoothing)
    model.save(Path(args.checkpoint) / ENTROPY_MODEL)
    ideal = sum(model.ideal_bits(t) for t in toks) / seconds
    print(f"fitted {ENTROPY_MODEL} on {len(toks)} clips ({seconds:.1f} s): ideal {ideal:.1f} b/s on them "
          f"(nominal {codec.bitrate:.1f} b/s)")
    return 0


def _print_info(facts: dict) -> None:
    for name, f in facts.items():
        print(f"{name}:")
        for key, value in f.items():
            print(f"  {key}: {value}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``speechbrain-codec``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="speechbrain-codec", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, helptext in (("encode", "audio -> .sbc"), ("decode", ".sbc -> audio")):
        p = sub.add_parser(cmd, help=helptext)
        p.add_argument("paths", nargs="+", metavar="IN... OUT",
                       help="input file(s) or one input folder, then the output file or folder")
        p.add_argument("--checkpoint", required=True, help="codec folder (codec.yaml, codec.ckpt) or hub id")
        p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
        if cmd == "encode":
            p.add_argument("--manifest", help="encode every utterance of this manifest (output: a folder)")
            p.add_argument("--data-root", help="value of {data_root} in the manifest")
            p.add_argument("--entropy", action="store_true",
                           help="range-code the tokens with the checkpoint's entropy_model.json")
    p = sub.add_parser("fit-entropy", help="fit the token model for --entropy on a manifest")
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--smoothing", type=float, default=1.0, help="added to every count")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    for extra in ("baselines", "evaluate", "report", "listening"):
        sub.add_parser(extra, help=f"see `speechbrain-codec {extra} --help`", add_help=False)
    p = sub.add_parser("info", help="describe .sbc files and/or a checkpoint")
    p.add_argument("files", nargs="*")
    p.add_argument("--checkpoint")
    p.add_argument("--json", action="store_true", help="print JSON")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("baselines", "evaluate", "report", "listening"):
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
        codec = to_device(Codec.from_pretrained(args.checkpoint, map_location=device), device)
        if args.command == "fit-entropy":
            return _fit_entropy(codec, args)
        encoding = args.command == "encode"
        work = functools.partial(encode_file, entropy=args.entropy) if encoding else decode_file
        suffix = ".sbc" if encoding else ".wav"
        manifest = args.manifest if encoding else None
        *inputs, output = args.paths
        if manifest or (len(inputs) == 1 and Path(inputs[0]).is_dir()):
            if manifest:
                from .dataio import read_manifest

                if inputs:
                    parser.error("with --manifest, give only the output folder")
                rows = read_manifest(manifest, args.data_root)
                items = [(uid, Path(r["wav"])) for uid, r in rows.items()]
                _check_collisions([(uid, Path(uid + suffix)) for uid, _ in items], manifest)
            else:
                items = _folder_items(Path(inputs[0]), encoding)
            _batch(codec, args.command, items, Path(output), encoding and args.entropy, device)
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
