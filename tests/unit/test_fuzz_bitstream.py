"""Fuzzing the ``.sbc`` reader and the entropy decoder (hypothesis, bounded for CI): random and
mutated files of every stream layout (frames, units with run lengths, per-utterance codes,
range-coded streams) are either read or refused with one-line :class:`CodecError`; never another
exception, and never an allocation driven by a header field beyond a cap (the counts a header
claims are checked against the payload before anything is allocated).

``SBC_FUZZ_EXAMPLES`` (environment) raises the number of examples for a longer run."""

import os
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechbrain_codec.bitstream import MAGIC, Bitstream
from speechbrain_codec.utils import CodecError

from .test_bitstream_streams import _utterances

EXAMPLES = int(os.environ.get("SBC_FUZZ_EXAMPLES", "150"))
ALLOC_CAP = 64 * 2**20  # bytes a single read may allocate, whatever the header says


def _read(data: bytes, models):
    tracemalloc.start()
    try:
        try:
            Bitstream.from_bytes(data, "fuzz.sbc", models or None)
        except CodecError as err:
            msg = str(err)
            assert msg.startswith("fuzz.sbc") and "\n" not in msg, msg
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOC_CAP, f"{peak / 2**20:.0f} MiB allocated reading {len(data)} bytes"


@st.composite
def _mutated(draw):
    bs, _ = draw(_utterances())
    data = bytearray(bs.to_bytes())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "truncate", "insert", "overwrite", "delete")))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "overwrite" and data:
            blob = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos + len(blob)] = blob
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
    return bytes(data), bs.token_models


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_mutated())
def test_mutated_files_are_read_or_refused_in_one_line(case):
    _read(*case)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_after_the_magic_are_refused_in_one_line(tail):
    _read(MAGIC + tail, None)
    _read(tail, None)


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_utterances(), st.integers(0, 2**32 - 1))
def test_header_counts_claiming_huge_streams_do_not_allocate(case, seed):
    """Every 4-byte field of the header set to a huge value, one at a time."""
    bs, _ = case
    data = bs.to_bytes()
    rng = np.random.default_rng(seed)
    head = min(len(data), 96)
    for pos in rng.choice(max(1, head - 4), size=min(8, max(1, head - 4)), replace=False):
        bad = data[:pos] + b"\xff\xff\xff\x7f" + data[pos + 4:]
        _read(bad, bs.token_models)
