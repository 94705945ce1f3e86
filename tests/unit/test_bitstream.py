import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zlib

from speechbrain_codec.bitstream import (
    BLOCK,
    MAGIC,
    VERSION,
    Bitstream,
    pack_stream,
    peek_header,
    read_sbc,
    stream_bytes,
    unpack_stream,
    write_sbc,
)
from speechbrain_codec.entropy import TokenModel
from speechbrain_codec.utils import CodecError


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 70000), st.integers(0, 300), st.data())
def test_pack_round_trip_and_exact_size(radix, n, data):
    toks = np.array(data.draw(st.lists(st.integers(0, radix - 1), min_size=n, max_size=n)), dtype=np.int64)
    packed = pack_stream(toks, radix)
    assert len(packed) == stream_bytes(n, radix)
    assert np.array_equal(unpack_stream(packed, n, radix), toks)
    # within one byte of the nominal size n * log2(radix) / 8
    assert n * math.log2(radix) / 8 <= len(packed) < n * math.log2(radix) / 8 + 1


def test_power_of_two_is_plain_bit_packing():
    assert stream_bytes(BLOCK, 32) == BLOCK * 5 // 8
    assert stream_bytes(8, 2) == 1


def test_multi_block_round_trip():
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 1000, size=2 * BLOCK + 5)
    assert np.array_equal(unpack_stream(pack_stream(toks, 1000), len(toks), 1000), toks)


def _bitstream(n=250, sizes=(1000, 64)):
    rng = np.random.default_rng(1)
    toks = np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)
    return Bitstream(toks, 16000, 320, n * 320 - 7, list(sizes), "0123456789abcdef")


def test_file_round_trip_and_size(tmp_path):
    bs = _bitstream()
    size = write_sbc(tmp_path / "a.sbc", bs)
    back = read_sbc(tmp_path / "a.sbc")
    assert np.array_equal(back.toks, bs.toks)
    assert (back.sample_rate, back.hop_length, back.num_samples) == (16000, 320, 250 * 320 - 7)
    assert back.codebook_sizes == [1000, 64] and back.config_hash == "0123456789abcdef"
    nominal_bytes = [250 * math.log2(n) / 8 for n in (1000, 64)]
    assert size == bs.header_bytes() + bs.payload_bytes()
    assert 0 <= bs.payload_bytes() - sum(nominal_bytes) < 2  # one byte per stream at most
    assert back.nominal_bitrate == pytest.approx(50 * (math.log2(1000) + 6))


def test_empty_stream(tmp_path):
    bs = Bitstream(np.zeros((0, 1), dtype=np.int64), 16000, 320, 0, [1000], "00" * 8)
    write_sbc(tmp_path / "e.sbc", bs)
    assert read_sbc(tmp_path / "e.sbc").toks.shape == (0, 1)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:-3], "truncated"),
        (lambda d: d[:20], "truncated header|truncated"),
        (lambda d: b"", "empty file"),
        (lambda d: d[:2], "truncated header"),
        (lambda d: b"RIFF" + d[4:], "bad magic"),
        (lambda d: d + b"\0", "unexpected bytes"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 0xFF]), "checksum"),
        (lambda d: d[:4] + bytes([9]) + d[5:], "version 9"),
    ],
)
def test_corrupt_files_give_one_line_errors(tmp_path, mutate, message):
    data = _bitstream().to_bytes()
    path = tmp_path / "bad.sbc"
    path.write_bytes(mutate(data))
    with pytest.raises(CodecError, match=message) as err:
        read_sbc(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_out_of_range_tokens_are_refused():
    bs = _bitstream()
    bs.toks[0, 1] = 64
    with pytest.raises(ValueError, match="outside"):
        bs.to_bytes()


def test_version_2_header_layout():
    """Version 2 (still read, and written for tests of readers)."""
    bs = _bitstream()
    data = bs.to_bytes(version=2)
    assert data[:4] == MAGIC and data[4] == 2
    sr, hop = struct.unpack_from("<II", data, 6)
    assert (sr, hop) == (16000, 320)
    # version 2: 47-byte header plus 4 bytes per codebook, ending with the payload length and a
    # CRC-32 of every header byte before it
    size = 47 + 4 * 2
    assert bs.header_bytes(version=2) == size
    payload_length, header_crc = struct.unpack_from("<II", data, size - 8)
    assert payload_length == len(data) - size == bs.payload_bytes()
    assert header_crc == zlib.crc32(data[: size - 4])


def _entropy_bitstream(n=120):
    sizes = [256, 8]
    rng = np.random.default_rng(2)
    toks = np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)
    model = TokenModel.fit([toks], sizes)
    return Bitstream(toks, 16000, 320, n * 320, sizes, "0123456789abcdef", model), model


@pytest.mark.parametrize("entropy", [False, True], ids=["plain", "entropy"])
def test_every_header_byte_is_covered(tmp_path, entropy):
    """Flipping any bit pattern of any header byte (magic, version, flags, sample rate, hop,
    sample and frame counts, codebook count and sizes, hashes, CRCs, payload length) is refused
    with one line naming the file, never read as another stream."""
    bs, model = _entropy_bitstream() if entropy else (_bitstream(), None)
    data = bs.to_bytes()
    assert read_sbc_bytes(tmp_path, data, model).toks.shape == bs.toks.shape
    path = tmp_path / "bad.sbc"
    for offset in range(bs.header_bytes()):
        for mask in (0x01, 0x80, 0xFF):
            path.write_bytes(data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :])
            with pytest.raises(CodecError) as err:
                read_sbc(path, model)
            assert str(path) in str(err.value) and "\n" not in str(err.value), (offset, mask)
            with pytest.raises(CodecError):
                peek_header(path)


def read_sbc_bytes(tmp_path, data, model=None):
    path = tmp_path / "ok.sbc"
    path.write_bytes(data)
    return read_sbc(path, model)


def test_every_truncation_is_refused(tmp_path):
    """A file cut anywhere (inside the magic, the header or the payload) is 'empty' or
    'truncated', naming the file."""
    for bs, model in (_entropy_bitstream(), (_bitstream(n=20), None)):
        data = bs.to_bytes()
        path = tmp_path / "cut.sbc"
        for cut in range(len(data)):
            path.write_bytes(data[:cut])
            with pytest.raises(CodecError, match="empty file|truncated") as err:
                read_sbc(path, model)
            assert str(path) in str(err.value) and "\n" not in str(err.value), cut


def _patched(data, offset, fmt, value):
    """``data`` with one field replaced and the header CRC recomputed (a writer's bug, not
    damage in transit: only the plausibility checks can catch it)."""
    k = data[26]
    size = 47 + 4 * k + (8 if data[5] & 1 else 0)
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    struct.pack_into("<I", out, size - 4, zlib.crc32(bytes(out[: size - 4])))
    return bytes(out)


@pytest.mark.parametrize(
    "offset, fmt, value, message",
    [
        (6, "<I", 0, "sample rate 0"),
        (6, "<I", 400_000, "sample rate 400000"),
        (10, "<I", 0, "hop length 0"),
        (10, "<I", 20000, "hop length 20000"),
        (27, "<I", 1, "codebook sizes"),
        (22, "<I", 2500, "2500 frames for 79993 samples"),
        (14, "<Q", 10**9, "frames for 1000000000 samples"),
        (47, "<I", 12345, "payload length 12345"),  # header 55 bytes for K=2: the field is at 55 - 8
        (26, "<B", 0, "no codebooks"),
    ],
)
def test_implausible_header_values_are_refused(tmp_path, offset, fmt, value, message):
    bs = _bitstream()
    path = tmp_path / "odd.sbc"
    for data in (_patched(bs.to_bytes(version=2), offset, fmt, value), None):
        if data is None:  # the same value in a version-1 file (no header checksum at all)
            if offset >= 47:
                continue
            raw = bytearray(bs.to_bytes(version=1))
            struct.pack_into(fmt, raw, offset, value)
            data = bytes(raw)
        path.write_bytes(data)
        with pytest.raises(CodecError, match=message) as err:
            read_sbc(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_writer_refuses_implausible_headers():
    bs = _bitstream()
    bs.sample_rate = 0
    with pytest.raises(ValueError, match="sample rate 0"):
        bs.to_bytes()


def test_version_1_files_still_read_with_a_notice(tmp_path, caplog):
    for bs, model in ((_bitstream(), None), _entropy_bitstream()):
        path = tmp_path / "old.sbc"
        path.write_bytes(bs.to_bytes(version=1))
        assert path.read_bytes()[4] == 1 and len(path.read_bytes()) == bs.header_bytes(version=1) + bs.payload_bytes()
        with caplog.at_level("WARNING", logger="speechbrain_codec"):
            back = read_sbc(path, model)
        assert np.array_equal(back.toks, bs.toks) and back.num_samples == bs.num_samples
        assert "version-1 bitstream" in caplog.text and "no checksum" in caplog.text
        assert peek_header(path, notices=False)["version"] == 1
        caplog.clear()
        # a version-1 header error is still caught when it changes the payload's expected size
        data = bytearray(path.read_bytes())
        if model is None:
            data[22] ^= 0x01  # frame count 250 -> 251
            path.write_bytes(bytes(data))
            with pytest.raises(CodecError, match="truncated"):
                read_sbc(path)
