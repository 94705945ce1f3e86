"""The ``.sbc`` bitstream: a versioned header and tokens packed at their exact width.

Layout (all integers little-endian)::

    offset size  field
    0      4     magic b"\\x89SBC"
    4      1     version (1)
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
    ...    ...   payload

Plain payload: K streams, one after the other. Each stream holds T tokens of one codebook as a mixed-radix number in base N_k, in blocks of
``BLOCK`` tokens; a block of n tokens takes ``ceil(n * log2 N_k / 8)`` bytes. For
power-of-two codebooks this is plain bit packing; for others (FSQ's 1000 codes) no fraction of
a bit per token is wasted. A stream of at most ``BLOCK`` frames is therefore within one byte of
its nominal size ``T * log2(N_k) / 8``.

Entropy-coded payload: the 32-bit words of a range coder (constriction) that codes the K
streams one after the other with the checkpoint's token model; its size is data-dependent.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .utils import CodecError, atomic_path

__all__ = ["Bitstream", "write_sbc", "read_sbc", "peek_header", "pack_stream", "unpack_stream", "MAGIC", "VERSION"]

MAGIC = b"\x89SBC"
VERSION = 1
FLAG_ENTROPY = 1
ENTROPY_NAME = "entropy_model.json"
BLOCK = 4096
_FIXED = struct.Struct("<4sBBIIQIB")


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
        return _FIXED.size + 4 * len(self.codebook_sizes) + 12 + (8 if self.token_model is not None else 0)

    def payload_bytes(self) -> int:
        if self.token_model is not None:
            return len(self.token_model.encode(self.toks))
        return sum(stream_bytes(self.toks.shape[0], n) for n in self.codebook_sizes)

    def to_bytes(self) -> bytes:
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
        header = _FIXED.pack(
            MAGIC, VERSION, FLAG_ENTROPY if entropy else 0, self.sample_rate, self.hop_length,
            self.num_samples, toks.shape[0], len(self.codebook_sizes),
        )
        header += struct.pack(f"<{len(self.codebook_sizes)}I", *self.codebook_sizes)
        header += bytes.fromhex(self.config_hash.ljust(16, "0")[:16])
        header += struct.pack("<I", zlib.crc32(payload))
        if entropy:
            header += bytes.fromhex(self.token_model.hash)
        return header + payload

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>", token_model=None) -> "Bitstream":
        """Parse a ``.sbc`` file's content; ``name`` is used in error messages.

        An entropy-coded file needs ``token_model`` (the checkpoint's), else CodecError.
        """
        if data[:4] != MAGIC:
            raise CodecError(f"{name}: not a speechbrain-codec bitstream (bad magic); encode it with `speechbrain-codec encode`")
        if len(data) < _FIXED.size:
            raise CodecError(f"{name}: truncated header; the file is incomplete, re-encode it")
        magic, version, flags, sr, hop, n_samples, n_frames, k = _FIXED.unpack_from(data, 0)
        if version != VERSION:
            raise CodecError(f"{name}: bitstream version {version}, this toolkit reads version {VERSION}; upgrade speechbrain-codec")
        if flags & ~FLAG_ENTROPY:
            raise CodecError(f"{name}: unsupported flags {flags:#x} in a version-{version} bitstream")
        entropy = bool(flags & FLAG_ENTROPY)
        pos = _FIXED.size
        if k == 0 or len(data) < pos + 4 * k + 12:
            raise CodecError(f"{name}: truncated header; the file is incomplete, re-encode it")
        sizes = list(struct.unpack_from(f"<{k}I", data, pos))
        pos += 4 * k
        config_hash = data[pos : pos + 8].hex()
        (crc,) = struct.unpack_from("<I", data, pos + 8)
        pos += 12
        if min(sizes) < 2 or hop == 0 or sr == 0:
            raise CodecError(f"{name}: corrupt header (codebook sizes {sizes}, hop {hop}, rate {sr})")
        if entropy:
            if len(data) < pos + 8:
                raise CodecError(f"{name}: truncated header; the file is incomplete, re-encode it")
            model_hash = data[pos : pos + 8].hex()
            pos += 8
            payload = data[pos:]
            if zlib.crc32(payload) != crc:
                raise CodecError(f"{name}: payload checksum mismatch; the file is truncated or corrupt, re-encode it")
            if token_model is None:
                raise CodecError(f"{name}: entropy-coded; decode it with its checkpoint (which holds {ENTROPY_NAME})")
            if token_model.hash != model_hash:
                raise CodecError(f"{name}: entropy-coded with another token model (hash {model_hash}, the checkpoint's is {token_model.hash})")
            try:
                toks = token_model.decode(payload, n_frames)
            except Exception as err:
                raise CodecError(f"{name}: entropy-coded payload does not decode ({err})") from None
            return cls(toks, sr, hop, n_samples, sizes, config_hash, token_model)
        expected = sum(stream_bytes(n_frames, n) for n in sizes)
        payload = data[pos:]
        if len(payload) < expected:
            raise CodecError(
                f"{name}: truncated: the header announces {expected} payload bytes, the file holds "
                f"{len(payload)}; the file is incomplete, re-encode it"
            )
        if len(payload) > expected:
            raise CodecError(f"{name}: {len(payload) - expected} unexpected bytes after the payload")
        if zlib.crc32(payload) != crc:
            raise CodecError(f"{name}: payload checksum mismatch; the file is corrupt, re-encode it")
        toks = np.empty((n_frames, k), dtype=np.int64)
        off = 0
        for i, n in enumerate(sizes):
            size = stream_bytes(n_frames, n)
            try:
                toks[:, i] = unpack_stream(payload[off : off + size], n_frames, n)
            except ValueError:
                raise CodecError(f"{name}: stream {i} holds out-of-range values; the file is corrupt") from None
            off += size
        return cls(toks, sr, hop, n_samples, sizes, config_hash)


def write_sbc(path: str | os.PathLike, bitstream: Bitstream) -> int:
    """Write ``bitstream`` to ``path`` atomically; returns the file size in bytes."""
    data = bitstream.to_bytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def read_sbc(path: str | os.PathLike, token_model=None) -> Bitstream:
    """Read and validate a ``.sbc`` file (see the module docstring for the checks)."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{path}: no such bitstream file")
    return Bitstream.from_bytes(path.read_bytes(), str(path), token_model)


def peek_header(path: str | os.PathLike) -> dict:
    """Header facts of a ``.sbc`` file without decoding its payload (works for entropy-coded
    files without their model)."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC or len(data) < _FIXED.size:
        raise CodecError(f"{path}: not a speechbrain-codec bitstream (bad magic or truncated header)")
    _, version, flags, sr, hop, n_samples, n_frames, k = _FIXED.unpack_from(data, 0)
    sizes = list(struct.unpack_from(f"<{k}I", data, _FIXED.size))
    header = _FIXED.size + 4 * k + 12 + (8 if flags & FLAG_ENTROPY else 0)
    return {"version": version, "entropy_coded": bool(flags & FLAG_ENTROPY), "sample_rate": sr,
            "hop_length": hop, "num_samples": n_samples, "frames": n_frames, "codebook_sizes": sizes,
            "config_hash": data[_FIXED.size + 4 * k : _FIXED.size + 4 * k + 8].hex(),
            "header_bytes": header, "payload_bytes": len(data) - header}
