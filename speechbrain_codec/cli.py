"""``speechbrain-codec`` command line: encode, decode, info.

Examples
--------
    speechbrain-codec encode speech.wav speech.sbc --checkpoint exp/codec
    speechbrain-codec decode speech.sbc speech_dec.wav --checkpoint exp/codec
    speechbrain-codec info speech.sbc [--checkpoint exp/codec]
    speechbrain-codec encode a.wav b.flac outdir/ --checkpoint exp/codec   # several files
    speechbrain-codec encode --manifest test.csv --data-root DATA outdir/ --checkpoint exp/codec
    speechbrain-codec decode sbc_dir/ wav_dir/ --checkpoint exp/codec
    speechbrain-codec baselines --manifest test.csv --data-root DATA outdir/ codec2_700C opus_6k
    speechbrain-codec evaluate --manifest test.csv --system mine=wav_dir --out results.json
    speechbrain-codec report results.json --out results.md --plots plots/ [--format focalcodec_s]
    speechbrain-codec listening make test/ --reference ref/ --system a=dir_a --system b=dir_b
    speechbrain-codec listening parse results/mushra_test/mushra.csv --screening --out summary/

Batch forms (a manifest or a folder as input) write their output folder atomically, with a
``bitrate.json`` (nominal, payload and file bits per second over the whole set).
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

__all__ = ["main", "encode_file", "decode_file"]

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


def _targets(inputs: list[str], output: str, suffix: str) -> list[tuple[Path, Path]]:
    from .utils import CodecError

    out = Path(output)
    if len(inputs) > 1 or out.is_dir() or output.endswith("/"):
        if out.exists() and not out.is_dir():
            raise CodecError(f"{out}: several inputs need an output folder, but this is a file")
        out.mkdir(parents=True, exist_ok=True)
        return [(Path(i), out / (Path(i).stem + suffix)) for i in inputs]
    return [(Path(inputs[0]), out)]


def encode_file(codec, src: str | Path, dst: str | Path, entropy: bool = False) -> dict:
    """Encode one audio file with ``codec`` into a ``.sbc`` file; returns size facts.

    ``entropy=True`` range-codes the tokens with the checkpoint's token model.
    """
    import torch

    from .bitstream import Bitstream, write_sbc
    from .dataio import load_audio
    from .quantizers import dedup
    from .utils import CodecError

    if entropy and codec.token_model is None:
        raise CodecError("the checkpoint has no entropy_model.json; fit one with `speechbrain-codec fit-entropy`")
    sig = load_audio(src, codec.sample_rate)
    with torch.no_grad():
        toks = codec.sig_to_toks(sig[None])[0].cpu().numpy()
    bs = Bitstream(toks, codec.sample_rate, codec.hop_length, sig.numel(), codec.codebook_sizes,
                   codec.config_hash, codec.token_model if entropy else None)
    size = write_sbc(dst, bs)
    runs = sum(len(dedup(toks[:, k])[0]) for k in range(toks.shape[1]))
    return {"file_bytes": size, "payload_bytes": size - bs.header_bytes(), "duration": bs.duration, "runs": runs}


def decode_file(codec, src: str | Path, dst: str | Path) -> dict:
    """Decode one ``.sbc`` file with ``codec`` into a 16-bit WAV/FLAC file."""
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
    with torch.no_grad():
        sig = codec.toks_to_sig(torch.as_tensor(bs.toks)[None])
    sig = codec.fit_length(sig, codec.output_length(bs.num_samples))[0]
    save_audio(dst, sig, codec.output_sample_rate)
    return {"duration": bs.duration}


def _batch(codec, command: str, items: list[tuple[str, Path]], out_dir: Path, entropy: bool = False) -> None:
    """Encode or decode ``[(ID, path)]`` into ``out_dir`` (atomic); write ``bitrate.json``."""
    from .utils import atomic_path, atomic_write_json

    start = time.perf_counter()
    with atomic_path(out_dir, is_dir=True) as tmp:
        if command == "encode":
            payload = size = dur = runs = 0.0
            for uid, src in items:
                facts = encode_file(codec, src, tmp / f"{uid}.sbc", entropy)
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
            dur = sum(decode_file(codec, src, tmp / f"{uid}.wav")["duration"] for uid, src in items)
            src_rates = Path(items[0][1]).parent / "bitrate.json" if items else None
            if src_rates is not None and src_rates.is_file():
                rates = json.loads(src_rates.read_text())
                rates["decode_rtf"] = (time.perf_counter() - start) / dur if dur else None
                atomic_write_json(tmp / "bitrate.json", rates)


def _info(args) -> dict:
    from .bitstream import peek_header, read_sbc

    facts: dict = {}
    if args.checkpoint:
        from .codec import Codec

        codec = Codec.from_pretrained(args.checkpoint)
        facts["codec"] = {"config_hash": codec.config_hash, **codec.describe(),
                          "entropy_model": codec.token_model.hash if codec.token_model else None}
    for name in args.files:
        h = peek_header(name)
        model = codec.token_model if "codec" in facts else None
        if not h["entropy_coded"] or model is not None:
            read_sbc(name, model)  # validates the payload (checksum, size, ranges)
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
    return facts


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
            toks.append(codec.sig_to_toks(sig[None].to(args.device))[0].cpu().numpy())
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
        p.add_argument("--device", default="cpu")
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
    p.add_argument("--device", default="cpu")
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
            facts = _info(args)
            print(json.dumps(facts, indent=2)) if args.json else _print_info(facts)
            return 0
        from .codec import Codec

        codec = Codec.from_pretrained(args.checkpoint, map_location=args.device).to(args.device)
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
            else:
                pattern = "*.wav" if encoding else "*.sbc"
                items = [(p.stem, p) for p in sorted(Path(inputs[0]).glob(pattern))]
                if not items:
                    raise CodecError(f"{inputs[0]}: no {pattern} files to {args.command}")
            _batch(codec, args.command, items, Path(output), encoding and args.entropy)
            return 0
        if not inputs:
            parser.error(f"{args.command} needs an input and an output")
        failed = 0
        for src, dst in _targets(inputs, output, suffix):
            try:
                work(codec, src, dst)
            except CodecError as err:
                print(f"error: {err}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
