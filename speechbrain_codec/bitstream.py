"""The ``.sbc`` bitstream: a versioned, checksummed header and each token stream packed at its
exact width, at its own length.

A file holds the token streams of one utterance (see :mod:`speechbrain_codec.streams`): frame
streams (``T_s`` frames of ``K_s`` codebooks at the stream's own hop), unit streams (the
deduplicated units, optionally with their run lengths) and per-utterance codes. Its size is the
bitrate the toolkit reports: ``8 x file bytes / seconds``, of which the header is the fixed
cost and each stream's payload is listed in the header.

Layout of version 3 (all integers little-endian)::

    size  field
    4     magic b"\\x89SBC"
    1     version (3)
    1     flags (bit 0: at least one stream is entropy coded; the token models' hash follows)
    4     sample_rate (Hz) of the codec's input
    8     num_samples (length of the original signal, to trim the decoded one)
    8     codec configuration hash (see ``Codec.compute_config_hash``)
    1     S, the number of streams; then S stream records:
            1   kind (bits 0-1: 0 frames, 1 units, 2 per utterance; bit 2: run lengths stored;
                bit 3: entropy coded)
            1   L, then L bytes: the stream's name (ASCII)
            4   hop_length (input samples per frame; 0 per utterance)
            4   count N (frames; deduplicated units; 1 per utterance)
            1   K, then 4K bytes: codebook sizes N_1..N_K
            4   (run lengths stored only) D, the longest run, in frames
            4   payload bytes of this stream
    8     (flag bit 0 only) hash of the token models (``speechbrain_codec.entropy``)
    4     CRC-32 of the payload
    4     payload length in bytes (the sum of the streams')
    4     CRC-32 of every header byte before it

Payload: the streams in header order. A plain frame or unit stream holds its K codebooks one after the other,
each N tokens as a mixed-radix number in base N_k, in blocks of ``BLOCK`` tokens; a block of n
tokens takes ``ceil(n * log2 N_k / 8)`` bytes (power-of-two codebooks: plain bit packing; FSQ's
1000 codes waste no fraction of a bit per token), so a stream is within one byte per codebook
(and block) of ``N * log2(N_k) / 8``. Run lengths follow their units' codebooks: ``d - 1`` in
base D. A per-utterance code is one mixed-radix number of ``ceil(sum_k log2 N_k / 8)`` bytes (a
64-bit speaker code: 8 bytes). An entropy-coded stream holds the 32-bit words of a range coder (constriction) coding its
tokens with the checkpoint's token model of that stream, then its run lengths plain.

Every header is checked on reading: the header CRC, sample rate in 1..384000 Hz, hop lengths in
1..sample rate, codebook sizes >= 2, a frame count within ``FRAME_SLACK`` (4) frames of
``ceil(num_samples / hop)`` (our codecs give exactly that, or one frame less where a non-causal
WavLM front end drops the edge frame; a clip shorter than the encoder's window is zero-padded
by a frame or two), at most that many units and run lengths that sum to it, one code per
per-utterance stream, plain stream sizes that match their counts, and a payload of the announced
length and CRC. Any failure is a one-line :class:`CodecError` naming the file.

Versions 1 and 2 (one stream of ``T`` frames of ``K`` codebooks, every frame stored) are still
read; version 1 has no header checksum and is read with a notice. Their layout::

    offset size  field
    0      4     magic b"\\x89SBC"
    4      1     version (1 or 2)
    5      1     flags (bit 0: entropy coded)
    6      4     sample_rate (Hz)
    10     4     hop_length
    14     8     num_samples
    22     4     num_frames T
    26     1     num_codebooks K
    27     4K    codebook sizes N_1..N_K
    27+4K  8     codec configuration hash
    35+4K  4     CRC-32 of the payload
    39+4K  8     (entropy-coded files only) hash of the token model
    H-8    4     (version 2) payload length in bytes
    H-4    4     (version 2) CRC-32 of the header bytes before it

:func:`build_header` and :func:`parse_header` are the only places that know the layouts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .streams import SINGLE_STREAM, StreamLayout, StreamSpec
from .utils import CodecError, atomic_path

__all__ = ["Bitstream", "StreamTokens", "Header", "StreamRecord", "build_header", "parse_header", "write_sbc",
           "read_sbc", "peek_header", "pack_stream", "unpack_stream", "stream_bytes", "dedup_rows",
           "models_hash", "pack_code", "unpack_code", "MAGIC", "VERSION", "READ_VERSIONS", "FRAME_SLACK"]

logger = logging.getLogger("speechbrain_codec")

MAGIC = b"\x89SBC"
VERSION = 3
READ_VERSIONS = (1, 2, 3)
FLAG_ENTROPY = 1
ENTROPY_NAME = "entropy_model.json"
BLOCK = 4096
MAX_SAMPLE_RATE = 384_000
MAX_CODEBOOK_SIZE = 2**32 - 1  # what the 4-byte field holds
MAX_STREAMS = 64
FRAME_SLACK = 4
_FIXED = struct.Struct("<4sBBIIQIB")  # versions 1-2
_TRAILER = struct.Struct("<II")  # version >= 2: payload length, CRC-32 of the header before it
_FIXED3 = struct.Struct("<4sBBIQ8sB")  # magic, version, flags, sample rate, samples, config hash, S
_KIND_CODES = {"frames": 0, "units": 1, "utterance": 2}
_KIND_NAMES = {v: k for k, v in _KIND_CODES.items()}
_KIND_DURATIONS, _KIND_ENTROPY = 4, 8


def _block_bytes(n_tokens: int, radix: int) -> int:
    radix = int(radix)  # a numpy integer would overflow
    return ((radix**n_tokens - 1).bit_length() + 7) // 8 if n_tokens else 0


def pack_stream(toks: np.ndarray, radix: int) -> bytes:
    """Pack integers ``0 <= toks < radix`` (1-D) at ``log2(radix)`` bits each.

    Example
    -------
    >>> data = pack_stream(np.array([3, 0, 999, 5]), 1000)
    >>> len(data), unpack_stream(data, 4, 1000).tolist()
    (5, [3, 0, 999, 5])
    """
    out, radix = bytearray(), int(radix)
    toks = [int(t) for t in np.asarray(toks).reshape(-1)]
    for start in range(0, len(toks), BLOCK):
        block = toks[start : start + BLOCK]
        value = 0
        for t in block:
            value = value * radix + t
        out += value.to_bytes(_block_bytes(len(block), radix), "little")
    return bytes(out)


def unpack_stream(data: bytes, n_tokens: int, radix: int) -> np.ndarray:
    """Inverse of :func:`pack_stream`."""
    toks = np.empty(n_tokens, dtype=np.int64)
    pos, radix = 0, int(radix)
    for start in range(0, n_tokens, BLOCK):
        n = min(BLOCK, n_tokens - start)
        size = _block_bytes(n, radix)
        value = int.from_bytes(data[pos : pos + size], "little")
        pos += size
        if value >= radix**n:
            raise ValueError("block value out of range")
        for i in range(n - 1, -1, -1):
            value, toks[start + i] = divmod(value, radix)
    return toks


def stream_bytes(n_tokens: int, radix: int) -> int:
    """Bytes that :func:`pack_stream` writes for ``n_tokens`` tokens."""
    full, rest = divmod(n_tokens, BLOCK)
    return full * _block_bytes(BLOCK, radix) + _block_bytes(rest, radix)




def dedup_rows(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs of equal frames ``[T, K]`` -> ``(units [U, K], durations [U])``.

    >>> u, d = dedup_rows(np.array([[0], [0], [3], [3], [3], [1]]))
    >>> u.ravel().tolist(), d.tolist()
    ([0, 3, 1], [2, 3, 1])
    """
    frames = np.asarray(frames)
    if frames.shape[0] == 0:
        return frames.copy(), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero((np.diff(frames, axis=0) != 0).any(axis=1)) + 1
    starts = np.concatenate([[0], change])
    return frames[starts], np.diff(np.concatenate([starts, [frames.shape[0]]])).astype(np.int64)


def models_hash(models: Mapping[str, object]) -> str:
    """The 16-hex-digit hash a header stores for the token models of its entropy-coded streams:
    the model's own hash for one stream, else a hash over ``name=hash`` pairs."""
    if len(models) == 1:
        return next(iter(models.values())).hash
    text = ";".join(f"{name}={m.hash}" for name, m in sorted(models.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pack_code(code, radices) -> bytes:
    """One code of K codebooks (a per-utterance code) as one mixed-radix number:
    ``ceil(sum_k log2 N_k / 8)`` bytes (64 binary codebooks: 8 bytes).

    >>> data = pack_code([1, 0, 1, 999], [2, 2, 2, 1000])
    >>> len(data), unpack_code(data, [2, 2, 2, 1000]).tolist()
    (2, [1, 0, 1, 999])
    """
    value = 0
    for t, n in zip([int(t) for t in code], radices):
        value = value * int(n) + t
    return value.to_bytes(_block_bytes(1, math.prod(int(n) for n in radices)), "little")


def unpack_code(data: bytes, radices) -> np.ndarray:
    """Inverse of :func:`pack_code`."""
    radices = [int(n) for n in radices]
    value = int.from_bytes(data, "little")
    if value >= math.prod(radices):
        raise ValueError("code out of range")
    out = np.empty(len(radices), dtype=np.int64)
    for i in range(len(radices) - 1, -1, -1):
        value, out[i] = divmod(value, radices[i])
    return out


# ---------------------------------------------------------------------- the version-3 header
@dataclass
class StreamRecord:
    """One stream's entry in a header: its spec, how many tokens rows it holds (``count``),
    whether it is entropy coded, the run-length radix (units with durations) and its payload
    size (``None`` only for version-1 entropy-coded files, which do not store it)."""

    spec: StreamSpec
    count: int
    entropy_coded: bool = False
    duration_radix: int = 0
    payload_bytes: int | None = None

    def plain_bytes(self) -> int:
        """Payload bytes of this stream stored plainly."""
        return self.token_bytes_plain() + self.duration_bytes()

    def token_bytes_plain(self) -> int:
        if self.spec.per_utterance:  # the K codes as one mixed-radix number
            return _block_bytes(1, math.prod(self.spec.codebook_sizes)) if self.count else 0
        return sum(stream_bytes(self.count, n) for n in self.spec.codebook_sizes)

    def duration_bytes(self) -> int:
        return stream_bytes(self.count, self.duration_radix) if self.spec.durations else 0


@dataclass
class Header:
    """What a ``.sbc`` header holds (layouts in the module docstring); versions 1 and 2 are
    read into one frame stream named ``tokens``. ``size`` is the header's length in bytes."""

    version: int
    sample_rate: int
    num_samples: int
    config_hash: str
    streams: list[StreamRecord]
    payload_crc: int = 0
    model_hash: str | None = None
    payload_length: int | None = None
    size: int = 0

    @property
    def entropy_coded(self) -> bool:
        return any(r.entropy_coded for r in self.streams)

    @property
    def layout(self) -> StreamLayout:
        return StreamLayout([r.spec for r in self.streams], self.sample_rate)


def _expected_frames(num_samples: int, hop: int) -> int:
    return -(-num_samples // hop)


def _implausible3(h: Header) -> str | None:
    """Why a version-3 header's values cannot describe a file this toolkit writes, or ``None``."""
    sr = h.sample_rate
    if not h.streams:
        return "no streams"
    if not 1 <= sr <= MAX_SAMPLE_RATE:
        return f"sample rate {sr} Hz (expected 1..{MAX_SAMPLE_RATE})"
    if all(r.spec.per_utterance for r in h.streams):
        return "only per-utterance streams"
    for r in h.streams:
        s, what = r.spec, f"stream {r.spec.name}: "
        sizes = list(s.codebook_sizes)
        if max(sizes) > MAX_CODEBOOK_SIZE:
            return what + f"codebook sizes {sizes} (expected 2..2^32-1)"
        if s.per_utterance:
            if r.count != 1:
                return what + f"{r.count} codes in a per-utterance stream (expected 1)"
        else:
            if not 1 <= s.hop_length <= sr:
                return what + f"hop length {s.hop_length} (expected 1..{sr}, the sample rate)"
            expected = _expected_frames(h.num_samples, s.hop_length)
            high = max(expected, 1) + FRAME_SLACK
            if s.kind == "frames" and not expected - FRAME_SLACK <= r.count <= high:
                return what + (f"{r.count} frames for {h.num_samples} samples at hop {s.hop_length} "
                               f"(expected ceil({h.num_samples} / {s.hop_length}) = {expected}, +-{FRAME_SLACK})")
            if s.kind == "units" and r.count > high:
                return what + f"{r.count} units for {h.num_samples} samples at hop {s.hop_length} (at most {high})"
            if s.durations and not (r.count == 0 or 1 <= r.duration_radix <= high):
                return what + f"longest run {r.duration_radix} frames (expected 1..{high})"
        if r.payload_bytes is not None:
            if not r.entropy_coded and r.payload_bytes != r.plain_bytes():
                return what + (f"payload {r.payload_bytes} bytes, {r.count} rows of {sizes} "
                               f"take {r.plain_bytes()}")
            if r.entropy_coded and r.payload_bytes < r.duration_bytes():
                return what + f"payload {r.payload_bytes} bytes, its run lengths alone take {r.duration_bytes()}"
    if h.payload_length is not None and all(r.payload_bytes is not None for r in h.streams):
        total = sum(r.payload_bytes for r in h.streams)
        if h.payload_length != total:
            return f"payload length {h.payload_length} bytes, its streams announce {total}"
    return None


def build_header(h: Header) -> bytes:
    """The bytes of header ``h`` (version 3; versions 1 and 2 for one frame stream, to test
    readers)."""
    if h.version in (1, 2):
        (r,) = h.streams
        if r.spec.kind != "frames":
            raise ValueError("versions 1 and 2 hold one frame stream")
        return _build_legacy(LegacyHeader(
            h.version, r.entropy_coded, h.sample_rate, r.spec.hop_length, h.num_samples, r.count,
            list(r.spec.codebook_sizes), h.config_hash, h.payload_crc, h.model_hash,
            h.payload_length if h.version >= 2 else None))
    problem = _implausible3(h)
    if problem:
        raise ValueError(f"refusing to write an implausible header: {problem}")
    if h.entropy_coded != (h.model_hash is not None):
        raise ValueError("an entropy-coded header needs the token models' hash (and only it)")
    if len(h.streams) > MAX_STREAMS:
        raise ValueError(f"{len(h.streams)} streams (at most {MAX_STREAMS})")
    out = bytearray(_FIXED3.pack(MAGIC, 3, FLAG_ENTROPY if h.entropy_coded else 0, h.sample_rate, h.num_samples,
                                 bytes.fromhex(h.config_hash.ljust(16, "0")[:16]), len(h.streams)))
    for r in h.streams:
        s = r.spec
        kind = _KIND_CODES[s.kind] | (_KIND_DURATIONS if s.durations else 0) | (_KIND_ENTROPY if r.entropy_coded else 0)
        name = s.name.encode("ascii")
        out += struct.pack("<BB", kind, len(name)) + name
        out += struct.pack("<IIB", s.hop_length or 0, r.count, len(s.codebook_sizes))
        out += struct.pack(f"<{len(s.codebook_sizes)}I", *s.codebook_sizes)
        if s.durations:
            out += struct.pack("<I", r.duration_radix)
        out += struct.pack("<I", r.payload_bytes)
    if h.entropy_coded:
        out += bytes.fromhex(h.model_hash)
    out += struct.pack("<II", h.payload_crc, h.payload_length)
    out += struct.pack("<I", zlib.crc32(bytes(out)))
    return bytes(out)


def parse_header(data: bytes, name: str = "<bytes>", notices: bool = True) -> Header:
    """Parse and check the header at the start of ``data`` (a whole ``.sbc`` file's content).

    Raises :class:`CodecError` naming ``name`` for an empty or truncated file, a foreign file,
    an unknown version or flags, a header checksum mismatch (versions 2, 3) and implausible
    values. A version-1 header (no checksum) is accepted with a notice when ``notices``.
    """
    n = len(data)
    truncated = f"{name}: truncated header ({n} bytes); the file is incomplete or corrupt, re-encode it"
    corrupt = f"{name}: implausible header: {{}}; the file is corrupt, re-encode it"
    if n == 0:
        raise CodecError(f"{name}: empty file (0 bytes), not a speechbrain-codec bitstream; re-encode it")
    if n < len(MAGIC) and MAGIC.startswith(data):
        raise CodecError(truncated)
    if data[:4] != MAGIC:
        raise CodecError(f"{name}: not a speechbrain-codec bitstream (bad magic); encode it with `speechbrain-codec encode`")
    if n < 5:
        raise CodecError(truncated)
    version = data[4]
    if version not in READ_VERSIONS:
        raise CodecError(f"{name}: bitstream version {version}, this toolkit reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))}; upgrade speechbrain-codec")
    if version in (1, 2):
        return _from_legacy(_parse_legacy(data, name, notices))
    if n < _FIXED3.size:
        raise CodecError(truncated)
    _, _, flags, sr, n_samples, config_hash, n_streams = _FIXED3.unpack_from(data, 0)
    if flags & ~FLAG_ENTROPY:
        raise CodecError(f"{name}: unsupported flags {flags:#x} in a version-3 bitstream; the file is corrupt")
    pos, records = _FIXED3.size, []

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > n:
            raise CodecError(truncated)
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    if not 1 <= n_streams <= MAX_STREAMS:
        raise CodecError(corrupt.format(f"{n_streams} streams (expected 1..{MAX_STREAMS})"))
    for _ in range(n_streams):
        kind, length = take("<BB")
        if pos + length > n:
            raise CodecError(truncated)
        raw_name = bytes(data[pos : pos + length])
        pos += length
        hop, count, k = take("<IIB")
        sizes = take(f"<{k}I") if k else ()
        if kind & ~0x0F or kind & 3 not in _KIND_NAMES:
            raise CodecError(corrupt.format(f"stream kind byte {kind:#x}"))
        durations = bool(kind & _KIND_DURATIONS)
        radix = take("<I")[0] if durations else 0
        (payload_bytes,) = take("<I")
        try:
            kind_name = _KIND_NAMES[kind & 3]
            spec = StreamSpec(raw_name.decode("ascii"), tuple(sizes), None if kind_name == "utterance" else hop,
                              kind_name, durations)
        except (UnicodeDecodeError, ValueError) as err:
            raise CodecError(corrupt.format(str(err).split("\n")[0])) from None
        if kind_name == "utterance" and hop:
            raise CodecError(corrupt.format(f"stream {spec.name}: hop length {hop} in a per-utterance stream"))
        records.append(StreamRecord(spec, count, bool(kind & _KIND_ENTROPY), radix, payload_bytes))
    model_hash = take("<8s")[0].hex() if flags & FLAG_ENTROPY else None
    payload_crc, payload_length = take("<II")
    (header_crc,) = take("<I")
    if zlib.crc32(bytes(data[: pos - 4])) != header_crc:
        raise CodecError(f"{name}: header checksum mismatch; the header is corrupt, re-encode it")
    h = Header(3, sr, n_samples, config_hash.hex(), records, payload_crc, model_hash, payload_length, pos)
    if len({r.spec.name for r in records}) != len(records):
        raise CodecError(corrupt.format("two streams with one name"))
    if (model_hash is not None) != h.entropy_coded:
        raise CodecError(corrupt.format("entropy flag and stream kinds disagree"))
    problem = _implausible3(h)
    if problem:
        raise CodecError(corrupt.format(problem))
    return h


def _from_legacy(h: "LegacyHeader") -> Header:
    spec = StreamSpec(SINGLE_STREAM, tuple(h.codebook_sizes), h.hop_length)
    record = StreamRecord(spec, h.num_frames, h.entropy_coded, 0, h.payload_length)
    if record.payload_bytes is None and not h.entropy_coded:
        record.payload_bytes = record.plain_bytes()
    return Header(h.version, h.sample_rate, h.num_samples, h.config_hash, [record], h.payload_crc,
                  h.model_hash, h.payload_length, h.size)


def _payload(data: bytes, h: Header, name: str) -> bytes:
    """The payload after header ``h``, checked against the announced length and the CRC."""
    if h.version in (1, 2):
        legacy = _parse_legacy(data, name, notices=False)
        return _legacy_payload(data, legacy, name)
    return _checked_payload(data[h.size :], h.payload_length, h.payload_crc, name)


def _checked_payload(payload: bytes, expected: int | None, crc: int, name: str) -> bytes:
    """``payload`` checked against the announced length (``None``: unknown, version-1 entropy
    coded files) and its CRC-32."""
    if expected is not None:
        if len(payload) < expected:
            raise CodecError(
                f"{name}: truncated: the header announces {expected} payload bytes, the file holds "
                f"{len(payload)}; the file is incomplete, re-encode it"
            )
        if len(payload) > expected:
            raise CodecError(f"{name}: {len(payload) - expected} unexpected bytes after the payload")
    if zlib.crc32(payload) != crc:
        what = "truncated or corrupt" if expected is None else "corrupt"
        raise CodecError(f"{name}: payload checksum mismatch; the file is {what}, re-encode it")
    return payload


# ---------------------------------------------------------------------- tokens of one utterance
@dataclass
class StreamTokens:
    """The tokens of one stream of one utterance.

    Attributes
    ----------
    spec : StreamSpec
    toks : np.ndarray
        ``[N, K]``: frames (``frames``), deduplicated units (``units``) or ``[1, K]``
        (``utterance``).
    durations : np.ndarray, optional
        ``[N]`` run lengths in frames (units with ``spec.durations``).
    """

    spec: StreamSpec
    toks: np.ndarray
    durations: np.ndarray | None = None

    @classmethod
    def from_frames(cls, spec: StreamSpec, frames: np.ndarray) -> "StreamTokens":
        """What is sent for frame-rate tokens ``[T, K]``: the frames, or for a unit stream the
        deduplicated units (with their run lengths when the spec stores them)."""
        frames = np.asarray(frames, dtype=np.int64).reshape(-1, len(spec.codebook_sizes))
        if spec.kind != "units":
            return cls(spec, frames)
        units, durations = dedup_rows(frames)
        return cls(spec, units, durations if spec.durations else None)

    def frames(self) -> np.ndarray:
        """Tokens at the frame rate: units repeated by their run lengths where stored (without
        them, the units themselves: the decoder regenerates durations)."""
        if self.durations is None:
            return self.toks
        return np.repeat(self.toks, self.durations, axis=0)

    def duration_radix(self) -> int:
        return int(self.durations.max()) if self.durations is not None and len(self.durations) else 0

    def plain_payload(self) -> bytes:
        if self.spec.per_utterance:  # one code of K codebooks: one mixed-radix number
            return pack_code(self.toks[0], self.spec.codebook_sizes)
        out = b"".join(pack_stream(self.toks[:, k], n) for k, n in enumerate(self.spec.codebook_sizes))
        if self.spec.durations:
            out += pack_stream(self.durations - 1, self.duration_radix()) if len(self.durations) else b""
        return out

    def check(self) -> None:
        """Raise ValueError for tokens that do not fit the spec."""
        s, toks = self.spec, np.asarray(self.toks)
        if toks.ndim != 2 or toks.shape[1] != len(s.codebook_sizes):
            raise ValueError(f"stream {s.name}: toks must be [N, {len(s.codebook_sizes)}], got {list(toks.shape)}")
        if s.per_utterance and toks.shape[0] != 1:
            raise ValueError(f"stream {s.name}: one code per utterance, got {toks.shape[0]}")
        for k, n in enumerate(s.codebook_sizes):
            if toks.size and (toks[:, k].min() < 0 or toks[:, k].max() >= n):
                raise ValueError(f"stream {s.name}, codebook {k}: tokens outside [0, {n})")
        if s.durations:
            d = self.durations
            if d is None or len(d) != toks.shape[0] or (len(d) and d.min() < 1):
                raise ValueError(f"stream {s.name}: needs one run length >= 1 per unit")


class Bitstream:
    """The token streams of one utterance with what is needed to decode them.

    ``Bitstream(toks [T, K], sample_rate, hop_length, num_samples, codebook_sizes, config_hash,
    token_model=None)`` is one frame stream (the single-stream codec's file);
    :meth:`from_streams` builds any other. ``token_models`` maps a stream name to its token model
    (a ``speechbrain_codec.entropy`` model): those streams are entropy coded.
    """

    def __init__(self, toks=None, sample_rate: int = 0, hop_length: int | None = None, num_samples: int = 0,
                 codebook_sizes=None, config_hash: str = "", token_model=None, *,
                 streams: list[StreamTokens] | None = None, token_models: Mapping[str, object] | None = None) -> None:
        if streams is None:
            toks = np.asarray(toks)
            spec = StreamSpec(SINGLE_STREAM, tuple(codebook_sizes), hop_length)
            streams = [StreamTokens(spec, toks)]
            token_models = {SINGLE_STREAM: token_model} if token_model is not None else {}
        self.streams = list(streams)
        names = [st.spec.name for st in self.streams]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique, got {names}")
        self.sample_rate, self.num_samples, self.config_hash = int(sample_rate), int(num_samples), config_hash
        self.token_models = dict(token_models or {})

    @classmethod
    def from_streams(cls, streams: list[StreamTokens], sample_rate: int, num_samples: int, config_hash: str,
                     token_models: Mapping[str, object] | None = None) -> "Bitstream":
        return cls(sample_rate=sample_rate, num_samples=num_samples, config_hash=config_hash,
                   streams=streams, token_models=token_models)

    # -------------------------------------------------------------- facts
    @property
    def layout(self) -> StreamLayout:
        return StreamLayout([s.spec for s in self.streams], self.sample_rate)

    def __getitem__(self, name: str) -> StreamTokens:
        for s in self.streams:
            if s.spec.name == name:
                return s
        raise KeyError(name)

    def _only(self) -> StreamTokens:
        timed = [s for s in self.streams if not s.spec.per_utterance]
        if len(self.streams) != 1:
            raise AttributeError(f"a bitstream of {len(self.streams)} streams: use .streams / .token_dict()")
        return timed[0]

    @property
    def toks(self) -> np.ndarray:
        """The frame-rate tokens ``[T, K]`` of a single-stream bitstream."""
        return self._only().frames()

    @property
    def hop_length(self) -> int:
        return self._only().spec.hop_length

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._only().spec.codebook_sizes)

    @property
    def token_model(self):
        return self.token_models.get(self._only().spec.name)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def duration(self) -> float:
        """Seconds of the original signal."""
        return self.num_samples / self.sample_rate

    @property
    def nominal_bitrate(self) -> float:
        """Nominal b/s of the frame and unit streams (side information excluded)."""
        return self.layout.bitrate

    def token_dict(self) -> dict[str, np.ndarray]:
        """``name -> tokens`` at the frame rate (see :meth:`StreamTokens.frames`)."""
        return {s.spec.name: s.frames() for s in self.streams}

    # -------------------------------------------------------------- bytes
    def _stream_payloads(self) -> list[bytes]:
        out = []
        for s in self.streams:
            s.check()
            if s.spec.durations and len(s.durations):
                total, expected = int(s.durations.sum()), _expected_frames(self.num_samples, s.spec.hop_length)
                if not expected - FRAME_SLACK <= total <= max(expected, 1) + FRAME_SLACK:
                    raise ValueError(f"stream {s.spec.name}: run lengths sum to {total} frames, "
                                     f"{self.num_samples} samples give {expected}")
            model = self.token_models.get(s.spec.name)
            if model is None:
                out.append(s.plain_payload())
                continue
            if list(model.codebook_sizes) != list(s.spec.codebook_sizes):
                raise ValueError(f"stream {s.spec.name}: the token model's codebooks do not fit the stream's")
            coded = model.encode(np.asarray(s.toks))
            if s.spec.durations and len(s.durations):
                coded += pack_stream(s.durations - 1, s.duration_radix())
            out.append(coded)
        return out

    def _header(self, payloads: list[bytes], version: int) -> Header:
        unknown = set(self.token_models) - {s.spec.name for s in self.streams}
        if unknown:
            raise ValueError(f"token models for streams this bitstream lacks: {sorted(unknown)}")
        records = [StreamRecord(s.spec, int(np.asarray(s.toks).shape[0]), s.spec.name in self.token_models,
                                s.duration_radix(), len(p)) for s, p in zip(self.streams, payloads)]
        payload = b"".join(payloads)
        return Header(version, self.sample_rate, self.num_samples, self.config_hash, records, zlib.crc32(payload),
                      models_hash(self.token_models) if self.token_models else None, len(payload))

    def header_bytes(self, version: int = VERSION) -> int:
        return len(build_header(self._header(self._stream_payloads(), version)))

    def payload_bytes(self) -> int:
        return sum(len(p) for p in self._stream_payloads())

    def stream_payload_bytes(self) -> dict[str, int]:
        """Payload bytes per stream."""
        return {s.spec.name: len(p) for s, p in zip(self.streams, self._stream_payloads())}

    def encode(self, version: int = VERSION) -> tuple[bytes, dict[str, int]]:
        """The ``.sbc`` file content and the payload bytes of each stream (one encoding)."""
        payloads = self._stream_payloads()
        data = build_header(self._header(payloads, version)) + b"".join(payloads)
        return data, {s.spec.name: len(p) for s, p in zip(self.streams, payloads)}

    def to_bytes(self, version: int = VERSION) -> bytes:
        """The ``.sbc`` file content (``version=1`` or ``2`` writes the old single-stream
        layouts, for tests of readers)."""
        return self.encode(version)[0]

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>", token_model=None, notices: bool = True) -> "Bitstream":
        """Parse a ``.sbc`` file's content; ``name`` is used in error messages.

        An entropy-coded file needs its checkpoint's token models (``token_model``: one model,
        for a single-stream file, or a dict name -> model), else CodecError.
        """
        h = parse_header(data, name, notices)
        payload = _payload(data, h, name)
        models = {}
        if h.entropy_coded:
            if token_model is None:
                raise CodecError(f"{name}: entropy-coded; decode it with its checkpoint (which holds {ENTROPY_NAME})")
            models = dict(token_model) if isinstance(token_model, Mapping) else {h.streams[0].spec.name: token_model}
            coded = {r.spec.name: models.get(r.spec.name) for r in h.streams if r.entropy_coded}
            missing = [n for n, m in coded.items() if m is None]
            if missing or models_hash(coded) != h.model_hash:
                theirs = models_hash({n: m for n, m in coded.items() if m is not None}) if not missing else None
                raise CodecError(f"{name}: entropy-coded with another token model (hash {h.model_hash}, "
                                 f"the checkpoint's is {theirs or 'missing for ' + ', '.join(missing)})")
            models = coded
        streams, pos = [], 0
        for r in h.streams:
            size = r.payload_bytes if r.payload_bytes is not None else len(payload) - pos
            part = payload[pos : pos + size]
            pos += size
            streams.append(_decode_stream(r, part, models.get(r.spec.name), h, name))
        return cls.from_streams(streams, h.sample_rate, h.num_samples, h.config_hash, models)


def _decode_stream(r: StreamRecord, part: bytes, model, h: Header, name: str) -> StreamTokens:
    s, n = r.spec, r.count
    what = f"{name}: stream {s.name}" if h.version >= 3 else name
    dur_bytes = r.duration_bytes()
    tok_part, dur_part = (part[: len(part) - dur_bytes], part[len(part) - dur_bytes :]) if dur_bytes else (part, b"")
    if r.entropy_coded:
        try:
            toks = np.asarray(model.decode(tok_part, n), dtype=np.int64).reshape(n, len(s.codebook_sizes))
        except Exception as err:
            raise CodecError(f"{what}: entropy-coded payload does not decode ({err})") from None
    elif s.per_utterance:
        try:
            toks = unpack_code(tok_part, s.codebook_sizes)[None]
        except ValueError:
            raise CodecError(f"{what}: the code holds out-of-range values; the file is corrupt") from None
    else:
        toks = np.empty((n, len(s.codebook_sizes)), dtype=np.int64)
        off = 0
        for i, size in enumerate(s.codebook_sizes):
            nbytes = stream_bytes(n, size)
            try:
                toks[:, i] = unpack_stream(tok_part[off : off + nbytes], n, size)
            except ValueError:
                raise CodecError(f"{what}: codebook {i} holds out-of-range values; the file is corrupt") from None
            off += nbytes
    durations = None
    if s.durations:
        try:
            durations = unpack_stream(dur_part, n, r.duration_radix) + 1 if n else np.zeros(0, dtype=np.int64)
        except ValueError:
            raise CodecError(f"{what}: run lengths out of range; the file is corrupt") from None
        expected = _expected_frames(h.num_samples, s.hop_length)
        total = int(durations.sum())
        if n and not (expected - FRAME_SLACK <= total <= max(expected, 1) + FRAME_SLACK):
            raise CodecError(f"{what}: run lengths sum to {total} frames, {h.num_samples} samples give "
                             f"{expected}; the file is corrupt, re-encode it")
        if n and durations.max() != r.duration_radix:
            raise CodecError(f"{what}: longest run {durations.max()}, the header says {r.duration_radix}; the file is corrupt")
    return StreamTokens(s, toks, durations)


def write_sbc(path: str | os.PathLike, bitstream: "Bitstream | bytes") -> int:
    """Write ``bitstream`` (or the bytes of one) to ``path`` atomically; returns the file size."""
    data = bitstream if isinstance(bitstream, bytes) else bitstream.to_bytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def _read(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise CodecError(f"{path}: a folder, not a bitstream file")
    if not path.is_file():
        raise CodecError(f"{path}: no such bitstream file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CodecError(f"{path}: cannot be read ({err.strerror or err})") from None


def read_sbc(path: str | os.PathLike, token_model=None, notices: bool = True) -> Bitstream:
    """Read and validate a ``.sbc`` file (see the module docstring for the checks)."""
    return Bitstream.from_bytes(_read(path), str(path), token_model, notices)


def peek_header(path: str | os.PathLike, notices: bool = True) -> dict:
    """Header facts of a ``.sbc`` file, checked (header, payload length and CRC) but without
    decoding its payload (works for entropy-coded files without their models).

    ``streams`` lists each stream (kind, rate, codebooks, count, payload bytes); a
    single-stream file also has the flat keys ``hop_length``, ``frames``, ``codebook_sizes``."""
    data = _read(path)
    h = parse_header(data, str(path), notices)
    _payload(data, h, str(path))
    out = {"version": h.version, "entropy_coded": h.entropy_coded, "sample_rate": h.sample_rate,
           "num_samples": h.num_samples, "config_hash": h.config_hash, "header_bytes": h.size,
           "payload_bytes": len(data) - h.size, "file_bytes": len(data),
           "streams": {r.spec.name: {**r.spec.to_dict(), "count": r.count, "entropy_coded": r.entropy_coded,
                                     "payload_bytes": r.payload_bytes if r.payload_bytes is not None else len(data) - h.size,
                                     **({"longest_run": r.duration_radix} if r.spec.durations else {})}
                       for r in h.streams}}
    if len(h.streams) == 1:
        r = h.streams[0]
        out.update({"hop_length": r.spec.hop_length, "codebook_sizes": list(r.spec.codebook_sizes),
                    "units" if r.spec.kind == "units" else "frames": r.count})
    return out


# ---------------------------------------------------------------------- versions 1 and 2
@dataclass
class LegacyHeader:
    """What a ``.sbc`` header holds (layout in the module docstring).

    ``payload_length`` is ``None`` for version 1 (which does not store it), ``model_hash`` is
    ``None`` for plain files, ``size`` is the header's length in bytes.
    """

    version: int
    entropy_coded: bool
    sample_rate: int
    hop_length: int
    num_samples: int
    num_frames: int
    codebook_sizes: list[int]
    config_hash: str
    payload_crc: int
    model_hash: str | None = None
    payload_length: int | None = None
    size: int = 0


def legacy_header_size(num_codebooks: int, entropy_coded: bool, version: int = 2) -> int:
    """Bytes of a version-1/2 header with ``num_codebooks`` codebooks.

    >>> legacy_header_size(1, False), legacy_header_size(1, True), legacy_header_size(1, False, version=1)
    (51, 59, 43)
    """
    return _FIXED.size + 4 * num_codebooks + 12 + (8 if entropy_coded else 0) + (_TRAILER.size if version >= 2 else 0)


def _implausible(h: LegacyHeader) -> str | None:
    """Why the header's values cannot describe a file this toolkit writes, or ``None``."""
    sizes, sr, hop = h.codebook_sizes, h.sample_rate, h.hop_length
    if not sizes:
        return "no codebooks"
    if not 1 <= sr <= MAX_SAMPLE_RATE:
        return f"sample rate {sr} Hz (expected 1..{MAX_SAMPLE_RATE})"
    if not 1 <= hop <= sr:
        return f"hop length {hop} (expected 1..{sr}, the sample rate)"
    if min(sizes) < 2 or max(sizes) > MAX_CODEBOOK_SIZE:
        return f"codebook sizes {sizes} (expected 2..2^32-1)"
    expected = -(-h.num_samples // hop)
    if not expected - FRAME_SLACK <= h.num_frames <= max(expected, 1) + FRAME_SLACK:
        return (f"{h.num_frames} frames for {h.num_samples} samples at hop {hop} "
                f"(expected ceil({h.num_samples} / {hop}) = {expected}, +-{FRAME_SLACK})")
    if h.payload_length is not None and not h.entropy_coded:
        plain = sum(stream_bytes(h.num_frames, n) for n in sizes)
        if h.payload_length != plain:
            return f"payload length {h.payload_length} bytes, {h.num_frames} frames of {sizes} take {plain}"
    return None


def _build_legacy(h: LegacyHeader) -> bytes:
    """The bytes of header ``h`` (version ``h.version``; 2 needs ``h.payload_length``)."""
    problem = _implausible(h)
    if problem:
        raise ValueError(f"refusing to write an implausible header: {problem}")
    if h.entropy_coded != (h.model_hash is not None):
        raise ValueError("an entropy-coded header needs the token model's hash (and only it)")
    out = _FIXED.pack(MAGIC, h.version, FLAG_ENTROPY if h.entropy_coded else 0, h.sample_rate, h.hop_length,
                      h.num_samples, h.num_frames, len(h.codebook_sizes))
    out += struct.pack(f"<{len(h.codebook_sizes)}I", *h.codebook_sizes)
    out += bytes.fromhex(h.config_hash.ljust(16, "0")[:16])
    out += struct.pack("<I", h.payload_crc)
    if h.entropy_coded:
        out += bytes.fromhex(h.model_hash)
    if h.version >= 2:
        out += struct.pack("<I", h.payload_length)
        out += struct.pack("<I", zlib.crc32(out))
    assert len(out) == legacy_header_size(len(h.codebook_sizes), h.entropy_coded, h.version)
    return out


def _parse_legacy(data: bytes, name: str = "<bytes>", notices: bool = True) -> LegacyHeader:
    """Parse and check the header at the start of ``data`` (a whole ``.sbc`` file's content).

    Raises :class:`CodecError` naming ``name`` for an empty or truncated file, a foreign file,
    an unknown version or flags, a header checksum mismatch (version 2) and implausible values.
    A version-1 header (no checksum) is accepted with a notice when ``notices``.
    """
    n = len(data)
    truncated = f"{name}: truncated header ({n} bytes); the file is incomplete or corrupt, re-encode it"
    if n == 0:
        raise CodecError(f"{name}: empty file (0 bytes), not a speechbrain-codec bitstream; re-encode it")
    if n < len(MAGIC) and MAGIC.startswith(data):
        raise CodecError(truncated)
    if data[:4] != MAGIC:
        raise CodecError(f"{name}: not a speechbrain-codec bitstream (bad magic); encode it with `speechbrain-codec encode`")
    if n < _FIXED.size:
        raise CodecError(truncated)
    _, version, flags, sr, hop, n_samples, n_frames, k = _FIXED.unpack_from(data, 0)
    if version not in (1, 2):
        raise CodecError(f"{name}: bitstream version {version}, this toolkit reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))}; upgrade speechbrain-codec")
    if flags & ~FLAG_ENTROPY:
        raise CodecError(f"{name}: unsupported flags {flags:#x} in a version-{version} bitstream; the file is corrupt")
    entropy = bool(flags & FLAG_ENTROPY)
    if k == 0:
        raise CodecError(f"{name}: implausible header: no codebooks; the file is corrupt, re-encode it")
    size = legacy_header_size(k, entropy, version)
    if n < size:
        raise CodecError(truncated)
    pos = _FIXED.size
    sizes = list(struct.unpack_from(f"<{k}I", data, pos))
    pos += 4 * k
    config_hash = data[pos : pos + 8].hex()
    (crc,) = struct.unpack_from("<I", data, pos + 8)
    pos += 12
    model_hash = payload_length = None
    if entropy:
        model_hash = data[pos : pos + 8].hex()
        pos += 8
    if version >= 2:
        payload_length, header_crc = _TRAILER.unpack_from(data, pos)
        if zlib.crc32(data[: pos + 4]) != header_crc:
            raise CodecError(f"{name}: header checksum mismatch; the header is corrupt, re-encode it")
    h = LegacyHeader(version, entropy, sr, hop, n_samples, n_frames, sizes, config_hash, crc, model_hash, payload_length, size)
    problem = _implausible(h)
    if problem:
        raise CodecError(f"{name}: implausible header: {problem}; the file is corrupt, re-encode it")
    if version == 1 and notices:
        logger.warning("%s: version-1 bitstream: its header has no checksum (only plausibility checks); "
                       "re-encode it to get one", name)
    return h


def _legacy_payload(data: bytes, h: LegacyHeader, name: str) -> bytes:
    """The payload after header ``h``, checked against the announced length and the CRC."""
    expected = h.payload_length
    if expected is None and not h.entropy_coded:
        expected = sum(stream_bytes(h.num_frames, n) for n in h.codebook_sizes)
    return _checked_payload(data[h.size :], expected, h.payload_crc, name)


