"""The ``.sbc`` bitstream: a versioned, checksummed header and tokens packed at their exact width.

Layout of version 2 (all integers little-endian)::

    offset size  field
    0      4     magic b"\\x89SBC"
    4      1     version (2)
    5      1     flags (bit 0: entropy coded)
    6      4     sample_rate (Hz)
    10     4     hop_length (samples per frame; frame rate = sample_rate / hop_length)
    14     8     num_samples (length of the original signal, to trim the decoded one)
    22     4     num_frames T
    26     1     num_codebooks K
    27     4K    codebook sizes N_1..N_K
    27+4K  8     codec configuration hash (see ``Codec.compute_config_hash``)
    35+4K  4     CRC-32 of the payload
    39+4K  8     (entropy-coded files only) hash of the token model (``speechbrain_codec.entropy``)
    H-8    4     payload length in bytes
    H-4    4     CRC-32 of the header bytes before it (offsets 0 .. H-4)
    H      ...   payload

The header is ``H = 47 + 4K`` bytes (``55 + 4K`` entropy-coded). Version 1 (still read, with a
notice) is the same without the last two fields: it has no header checksum, so only the
plausibility checks below guard its header. Every header is checked on reading: sample rate in
1..384000 Hz, hop length in 1..sample rate, at least one codebook, codebook sizes >= 2, a frame
count within ``FRAME_SLACK`` (4) frames of ``ceil(num_samples / hop_length)`` (our codecs give
exactly that, or one frame less where a non-causal WavLM front end drops the edge frame; a clip
shorter than the encoder's window is zero-padded by a frame or two), and a payload of the
announced length (version 2 stores it; version 1 plain files imply it). Any failure is a one-line :class:`CodecError`
naming the file. :func:`build_header` and :func:`parse_header` are the only places that know
the layout.

Plain payload: K streams, one after the other. Each stream holds T tokens of one codebook as a mixed-radix number in base N_k, in blocks of
``BLOCK`` tokens; a block of n tokens takes ``ceil(n * log2 N_k / 8)`` bytes. For
power-of-two codebooks this is plain bit packing; for others (FSQ's 1000 codes) no fraction of
a bit per token is wasted. A stream of at most ``BLOCK`` frames is therefore within one byte of
its nominal size ``T * log2(N_k) / 8``.

Entropy-coded payload: the 32-bit words of a range coder (constriction) that codes the K
streams one after the other with the checkpoint's token model; its size is data-dependent.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .utils import CodecError, atomic_path

__all__ = ["Bitstream", "Header", "build_header", "parse_header", "header_size", "write_sbc", "read_sbc",
           "peek_header", "pack_stream", "unpack_stream", "MAGIC", "VERSION", "READ_VERSIONS"]

logger = logging.getLogger("speechbrain_codec")

MAGIC = b"\x89SBC"
VERSION = 2
READ_VERSIONS = (1, 2)
FLAG_ENTROPY = 1
ENTROPY_NAME = "entropy_model.json"
BLOCK = 4096
MAX_SAMPLE_RATE = 384_000
MAX_CODEBOOK_SIZE = 2**32 - 1  # what the 4-byte field holds
FRAME_SLACK = 4
_FIXED = struct.Struct("<4sBBIIQIB")
_TRAILER = struct.Struct("<II")  # version >= 2: payload length, CRC-32 of the header before it


def _block_bytes(n_tokens: int, radix: int) -> int:
    return ((radix**n_tokens - 1).bit_length() + 7) // 8 if n_tokens else 0


def pack_stream(toks: np.ndarray, radix: int) -> bytes:
    """Pack integers ``0 <= toks < radix`` (1-D) at ``log2(radix)`` bits each.

    Example
    -------
    >>> data = pack_stream(np.array([3, 0, 999, 5]), 1000)
    >>> len(data), unpack_stream(data, 4, 1000).tolist()
    (5, [3, 0, 999, 5])
    """
    out = bytearray()
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
    pos = 0
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


# ---------------------------------------------------------------------- the header
@dataclass
class Header:
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


def header_size(num_codebooks: int, entropy_coded: bool, version: int = VERSION) -> int:
    """Bytes of a header with ``num_codebooks`` codebooks.

    >>> header_size(1, False), header_size(1, True), header_size(1, False, version=1)
    (51, 59, 43)
    """
    return _FIXED.size + 4 * num_codebooks + 12 + (8 if entropy_coded else 0) + (_TRAILER.size if version >= 2 else 0)


def _implausible(h: Header) -> str | None:
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


def build_header(h: Header) -> bytes:
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
    assert len(out) == header_size(len(h.codebook_sizes), h.entropy_coded, h.version)
    return out


def parse_header(data: bytes, name: str = "<bytes>", notices: bool = True) -> Header:
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
    if version not in READ_VERSIONS:
        raise CodecError(f"{name}: bitstream version {version}, this toolkit reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))}; upgrade speechbrain-codec")
    if flags & ~FLAG_ENTROPY:
        raise CodecError(f"{name}: unsupported flags {flags:#x} in a version-{version} bitstream; the file is corrupt")
    entropy = bool(flags & FLAG_ENTROPY)
    if k == 0:
        raise CodecError(f"{name}: implausible header: no codebooks; the file is corrupt, re-encode it")
    size = header_size(k, entropy, version)
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
    h = Header(version, entropy, sr, hop, n_samples, n_frames, sizes, config_hash, crc, model_hash, payload_length, size)
    problem = _implausible(h)
    if problem:
        raise CodecError(f"{name}: implausible header: {problem}; the file is corrupt, re-encode it")
    if version == 1 and notices:
        logger.warning("%s: version-1 bitstream: its header has no checksum (only plausibility checks); "
                       "re-encode it to get one", name)
    return h


def _payload(data: bytes, h: Header, name: str) -> bytes:
    """The payload after header ``h``, checked against the announced length and the CRC."""
    payload = data[h.size :]
    expected = h.payload_length
    if expected is None and not h.entropy_coded:
        expected = sum(stream_bytes(h.num_frames, n) for n in h.codebook_sizes)
    if expected is not None:
        if len(payload) < expected:
            raise CodecError(
                f"{name}: truncated: the header announces {expected} payload bytes, the file holds "
                f"{len(payload)}; the file is incomplete, re-encode it"
            )
        if len(payload) > expected:
            raise CodecError(f"{name}: {len(payload) - expected} unexpected bytes after the payload")
    if zlib.crc32(payload) != h.payload_crc:
        what = "truncated or corrupt" if expected is None else "corrupt"
        raise CodecError(f"{name}: payload checksum mismatch; the file is {what}, re-encode it")
    return payload


# ---------------------------------------------------------------------- tokens of one utterance
@dataclass
class Bitstream:
    """Tokens of one utterance with what is needed to decode them.

    Attributes
    ----------
    toks : np.ndarray
        ``[T, K]`` integer tokens.
    sample_rate, hop_length, num_samples : int
    codebook_sizes : list of int
    config_hash : str
        16 hex digits identifying the codec that wrote it.
    """

    toks: np.ndarray
    sample_rate: int
    hop_length: int
    num_samples: int
    codebook_sizes: list[int]
    config_hash: str
    token_model: "object | None" = None  # a speechbrain_codec.entropy.TokenModel to entropy-code

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def duration(self) -> float:
        """Seconds of the original signal."""
        return self.num_samples / self.sample_rate

    @property
    def nominal_bitrate(self) -> float:
        return self.frame_rate * sum(math.log2(n) for n in self.codebook_sizes)

    def header_bytes(self) -> int:
        return header_size(len(self.codebook_sizes), self.token_model is not None)

    def payload_bytes(self) -> int:
        if self.token_model is not None:
            return len(self.token_model.encode(self.toks))
        return sum(stream_bytes(self.toks.shape[0], n) for n in self.codebook_sizes)

    def to_bytes(self, version: int = VERSION) -> bytes:
        """The ``.sbc`` file content (``version=1`` writes the old layout, for tests of readers)."""
        toks = np.asarray(self.toks)
        if toks.ndim != 2 or toks.shape[1] != len(self.codebook_sizes):
            raise ValueError(f"toks must be [T, {len(self.codebook_sizes)}], got {list(toks.shape)}")
        for k, n in enumerate(self.codebook_sizes):
            if toks.size and (toks[:, k].min() < 0 or toks[:, k].max() >= n):
                raise ValueError(f"codebook {k}: tokens outside [0, {n})")
        entropy = self.token_model is not None
        if entropy:
            if self.token_model.codebook_sizes != list(self.codebook_sizes):
                raise ValueError("the token model's codebooks do not fit the bitstream's")
            payload = self.token_model.encode(toks)
        else:
            payload = b"".join(pack_stream(toks[:, k], n) for k, n in enumerate(self.codebook_sizes))
        header = build_header(Header(
            version, entropy, self.sample_rate, self.hop_length, self.num_samples, toks.shape[0],
            list(self.codebook_sizes), self.config_hash, zlib.crc32(payload),
            self.token_model.hash if entropy else None, len(payload) if version >= 2 else None,
        ))
        return header + payload

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>", token_model=None, notices: bool = True) -> "Bitstream":
        """Parse a ``.sbc`` file's content; ``name`` is used in error messages.

        An entropy-coded file needs ``token_model`` (the checkpoint's), else CodecError.
        """
        h = parse_header(data, name, notices)
        payload = _payload(data, h, name)
        n_frames, sizes = h.num_frames, h.codebook_sizes
        if h.entropy_coded:
            if token_model is None:
                raise CodecError(f"{name}: entropy-coded; decode it with its checkpoint (which holds {ENTROPY_NAME})")
            if token_model.hash != h.model_hash:
                raise CodecError(f"{name}: entropy-coded with another token model (hash {h.model_hash}, "
                                 f"the checkpoint's is {token_model.hash})")
            try:
                toks = token_model.decode(payload, n_frames)
            except Exception as err:
                raise CodecError(f"{name}: entropy-coded payload does not decode ({err})") from None
            return cls(toks, h.sample_rate, h.hop_length, h.num_samples, sizes, h.config_hash, token_model)
        toks = np.empty((n_frames, len(sizes)), dtype=np.int64)
        off = 0
        for i, n in enumerate(sizes):
            size = stream_bytes(n_frames, n)
            try:
                toks[:, i] = unpack_stream(payload[off : off + size], n_frames, n)
            except ValueError:
                raise CodecError(f"{name}: stream {i} holds out-of-range values; the file is corrupt") from None
            off += size
        return cls(toks, h.sample_rate, h.hop_length, h.num_samples, sizes, h.config_hash)


def write_sbc(path: str | os.PathLike, bitstream: Bitstream) -> int:
    """Write ``bitstream`` to ``path`` atomically; returns the file size in bytes."""
    data = bitstream.to_bytes()
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
    decoding its payload (works for entropy-coded files without their model)."""
    data = _read(path)
    h = parse_header(data, str(path), notices)
    _payload(data, h, str(path))
    return {"version": h.version, "entropy_coded": h.entropy_coded, "sample_rate": h.sample_rate,
            "hop_length": h.hop_length, "num_samples": h.num_samples, "frames": h.num_frames,
            "codebook_sizes": h.codebook_sizes, "config_hash": h.config_hash,
            "header_bytes": h.size, "payload_bytes": len(data) - h.size}
