"""Classical low-bitrate codecs as reference rows: Codec2 (700C, 1200, 3200) and Opus.

They run the Debian command-line tools (``c2enc``/``c2dec`` from package ``codec2``,
``opusenc``/``opusdec`` from ``opus-tools``). Payload and file rates are reported separately:
Codec2 700C writes each 28-bit frame in 4 bytes, and the Ogg container adds 1.4-2.2 kb/s to
short Opus files.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .dataio import resample
from .utils import CodecError

__all__ = ["BaselineResult", "Codec2", "Opus", "ogg_payload_bytes", "baseline_from_name"]


@dataclass
class BaselineResult:
    """A decoded signal (at the input rate) with its payload and file sizes in bits."""

    sig: np.ndarray
    payload_bits: int
    file_bits: int


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CodecError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[:200]}")


class Codec2:
    """Codec2 at 8 kHz: ``mode`` in {"700C", "1200", "3200", ...}.

    The payload counts the mode's nominal bits per frame; the file size is what ``c2enc``
    writes (700C packs each 28-bit frame in 4 bytes).
    """

    FRAME_BITS = {"3200": (64, 0.02), "2400": (48, 0.02), "1600": (64, 0.04), "1400": (56, 0.04),
                  "1300": (52, 0.04), "1200": (48, 0.04), "700C": (28, 0.04), "450": (18, 0.04)}

    def __init__(self, mode: str = "700C") -> None:
        if mode not in self.FRAME_BITS:
            raise ValueError(f"unknown Codec2 mode {mode}; known: {sorted(self.FRAME_BITS)}")
        self.mode = mode
        self.name = f"Codec2 {mode}"
        self.nominal_bitrate = self.FRAME_BITS[mode][0] / self.FRAME_BITS[mode][1]

    @staticmethod
    def available() -> bool:
        return shutil.which("c2enc") is not None and shutil.which("c2dec") is not None

    def run(self, sig: np.ndarray, sr: int) -> BaselineResult:
        x8 = resample(torch.as_tensor(sig, dtype=torch.float32), sr, 8000).numpy()
        pcm = np.round(np.clip(x8, -1, 1) * 32767).astype("<i2")
        with tempfile.TemporaryDirectory() as tmp:
            raw, bit, out = Path(tmp, "in.raw"), Path(tmp, "x.c2"), Path(tmp, "out.raw")
            raw.write_bytes(pcm.tobytes())
            _run(["c2enc", self.mode, str(raw), str(bit)])
            _run(["c2dec", self.mode, str(bit), str(out)])
            dec = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / 32768
            file_bits = 8 * bit.stat().st_size
        bits, period = self.FRAME_BITS[self.mode]
        n_frames = int(np.ceil(len(pcm) / (8000 * period)))
        y = resample(torch.from_numpy(dec), 8000, sr).numpy()
        return BaselineResult(y, n_frames * bits, file_bits)


def ogg_payload_bytes(data: bytes) -> int:
    """Bytes of Opus packets in an Ogg stream, without the two header packets and the pages."""
    pos, packets, current = 0, [], 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise CodecError("not an Ogg stream")
        n_seg = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + n_seg]
        pos += 27 + n_seg
        for value in lacing:
            current += value
            if value < 255:
                packets.append(current)
                current = 0
        pos += sum(lacing)
    return sum(packets[2:])


class Opus:
    """Opus (``opusenc --bitrate``) at 16 kHz; ``bitrate_kbps`` e.g. 6."""

    def __init__(self, bitrate_kbps: float = 6.0) -> None:
        self.bitrate_kbps = bitrate_kbps
        self.name = f"Opus {bitrate_kbps:g}k"
        self.nominal_bitrate = 1000.0 * bitrate_kbps

    @staticmethod
    def available() -> bool:
        return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None

    def run(self, sig: np.ndarray, sr: int) -> BaselineResult:
        with tempfile.TemporaryDirectory() as tmp:
            wav, ogg, out = Path(tmp, "in.wav"), Path(tmp, "x.opus"), Path(tmp, "out.wav")
            sf.write(wav, np.clip(sig, -1, 1), sr, subtype="PCM_16")
            _run(["opusenc", "--quiet", "--bitrate", f"{self.bitrate_kbps:g}", str(wav), str(ogg)])
            _run(["opusdec", "--quiet", "--rate", str(sr), str(ogg), str(out)])
            y, _ = sf.read(out, dtype="float32")
            data = ogg.read_bytes()
        if y.ndim > 1:
            y = y.mean(axis=1)
        return BaselineResult(y, 8 * ogg_payload_bytes(data), 8 * len(data))


def baseline_from_name(name: str):
    """``"codec2_700C"`` -> ``Codec2("700C")``; ``"opus_6k"`` -> ``Opus(6)``."""
    kind, _, arg = name.partition("_")
    if kind == "codec2":
        return Codec2(arg or "700C")
    if kind == "opus":
        return Opus(float(arg.rstrip("k") or 6))
    raise ValueError(f"unknown baseline {name}; use codec2_<mode> or opus_<kbps>k")


def main(argv: list[str] | None = None) -> int:
    """``speechbrain-codec baselines``: run classical codecs over a manifest.

    Writes ``OUT/<name>/<ID>.wav`` and ``OUT/<name>/bitrate.json`` per baseline (each folder
    atomically). A baseline whose tools are missing is skipped with a notice naming the Debian
    package to install.
    """
    import argparse
    import logging

    from .dataio import load_audio, read_manifest, save_audio
    from .utils import atomic_path, atomic_write_json

    log = logging.getLogger("speechbrain_codec")
    p = argparse.ArgumentParser(prog="speechbrain-codec baselines")
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("out_dir")
    p.add_argument("names", nargs="+", help="codec2_700C, codec2_1200, codec2_3200, opus_6k, ...")
    args = p.parse_args(argv)
    rows = read_manifest(args.manifest, args.data_root)
    packages = {Codec2: "codec2", Opus: "opus-tools"}
    for name in args.names:
        codec = baseline_from_name(name)
        if not codec.available():
            log.warning("%s skipped: its tools are not installed (apt-get install %s)", codec.name, packages[type(codec)])
            continue
        payload = file_bits = dur = 0.0
        with atomic_path(Path(args.out_dir) / name, is_dir=True) as tmp:
            for uid, row in rows.items():
                sig = load_audio(row["wav"], args.sample_rate, notices=False).numpy()
                res = codec.run(sig, args.sample_rate)
                save_audio(tmp / f"{uid}.wav", torch.from_numpy(np.ascontiguousarray(res.sig)), args.sample_rate)
                payload, file_bits, dur = payload + res.payload_bits, file_bits + res.file_bits, dur + len(sig) / args.sample_rate
            atomic_write_json(tmp / "bitrate.json", {
                "system": codec.name,
                "nominal_bitrate": codec.nominal_bitrate,
                "payload_bitrate": payload / dur,
                "file_bitrate": file_bits / dur,
                "duration": dur,
                "files": len(rows),
            })
    return 0
