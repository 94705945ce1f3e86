import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.bitstream import (
    BLOCK,
    MAGIC,
    Bitstream,
    pack_stream,
    read_sbc,
    stream_bytes,
    unpack_stream,
    write_sbc,
)
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


def test_header_layout():
    data = _bitstream().to_bytes()
    assert data[:4] == MAGIC
    sr, hop = struct.unpack_from("<II", data, 6)
    assert (sr, hop) == (16000, 320)
