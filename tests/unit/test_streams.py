"""StreamSpec / StreamLayout: validation of a stream's declaration and the bit accounting over a
codec's streams (nominal rates, per-utterance side information, the arithmetic strings)."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.streams import KINDS, SINGLE_STREAM, StreamLayout, StreamSpec

SR = 16000


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize("name", ["", "x" * 33, "a b", "a/b", "caf\u00e9", "tab\t", "a:b", "a,b", "\u0661"])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="stream name"):
        StreamSpec(name, (32,), 640)


@pytest.mark.parametrize("name", ["a", "x" * 32, "content_v2.f0-q", "0", "F0", "tokens"])
def test_good_names_are_accepted(name):
    assert StreamSpec(name, (32,), 640).name == name


@pytest.mark.parametrize("kind", ["frame", "Frames", "unit", "utt", "", "speaker"])
def test_bad_kinds_are_refused(kind):
    with pytest.raises(ValueError, match=r"kind .*expected one of frames, units, utterance"):
        StreamSpec("s", (32,), 640, kind)


def test_kinds_constant():
    assert KINDS == ("frames", "units", "utterance") and SINGLE_STREAM == "tokens"


@pytest.mark.parametrize("sizes", [(), (1,), (32, 1), (0,), (-4,)])
def test_bad_codebook_sizes_are_refused(sizes):
    with pytest.raises(ValueError, match="codebook sizes"):
        StreamSpec("s", sizes, 640)


@pytest.mark.parametrize("hop", [640, 1, 0])
def test_a_per_utterance_stream_has_no_hop(hop):
    with pytest.raises(ValueError, match="no hop length"):
        StreamSpec("speaker", (2,) * 64, hop, "utterance")


@pytest.mark.parametrize("kind", ["frames", "units"])
@pytest.mark.parametrize("hop", [None, 0, -640])
def test_timed_streams_need_a_hop(kind, hop):
    with pytest.raises(ValueError, match=f"a {kind} stream needs hop_length >= 1"):
        StreamSpec("s", (32,), hop, kind)


@pytest.mark.parametrize("kind, hop", [("frames", 640), ("utterance", None)])
def test_durations_only_on_units(kind, hop):
    with pytest.raises(ValueError, match="durations are stored for unit streams only"):
        StreamSpec("s", (32,), hop, kind, durations=True)
    assert StreamSpec("s", (32,), 640, "units", durations=True).durations


def test_codebook_sizes_are_normalised_and_spec_is_frozen():
    spec = StreamSpec("s", [np.int64(1000), 64.0], 320)
    assert spec.codebook_sizes == (1000, 64) and all(type(n) is int for n in spec.codebook_sizes)
    assert spec == StreamSpec("s", (1000, 64), 320) and hash(spec) == hash(StreamSpec("s", (1000, 64), 320))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.hop_length = 640


# ---------------------------------------------------------------------- accounting
def _lmloss(with_speaker=False):
    streams = [StreamSpec("content", (32,), 640), StreamSpec("f0", (32,), 1280)]
    if with_speaker:
        streams.append(StreamSpec("speaker", (2,) * 64, kind="utterance"))
    return StreamLayout(streams, SR)


def test_lmloss_codec_bitrate():
    """25 Hz x log2(32) + 12.5 Hz x log2(32) = 125 + 62.5 = 187.5 b/s at 16 kHz."""
    lay = _lmloss()
    assert lay["content"].frame_rate(SR) == 25.0 and lay["f0"].frame_rate(SR) == 12.5
    assert lay["content"].nominal_bitrate(SR) == 125.0 and lay["f0"].nominal_bitrate(SR) == 62.5
    assert lay.bitrate == 187.5
    assert lay.side_info_bits == 0.0 and lay.amortised_bitrate() == 187.5 == lay.amortised_bitrate(3.0)


def test_speaker_code_is_side_information():
    lay = _lmloss(with_speaker=True)
    spk = lay["speaker"]
    assert spk.bits_per_frame == 64.0 and spk.per_utterance
    assert spk.frame_rate(SR) is None and spk.nominal_bitrate(SR) == 0.0
    assert lay.bitrate == 187.5  # the nominal rate excludes it
    assert lay.side_info_bits == 64.0
    assert lay.amortised_bitrate(10.0) == 193.9 == lay.amortised_bitrate()  # + 6.4 b/s over 10 s
    assert lay.amortised_bitrate(1.0) == 251.5
    assert lay.amortised_bitrate(3.0) == round(187.5 + 64 / 3, 1) == 208.8
    assert StreamLayout(lay.streams, SR, amortise_seconds=4.0).amortised_bitrate() == 203.5


def test_other_per_utterance_codes():
    big = StreamSpec("spk", (2**16,) * 4, kind="utterance")
    odd = StreamSpec("spk2", (3, 1000), kind="utterance")
    assert big.bits_per_frame == 64.0
    assert odd.bits_per_frame == pytest.approx(math.log2(3) + math.log2(1000))
    lay = StreamLayout([StreamSpec("c", (1024,), 320), big, odd], SR)
    assert lay.bitrate == 500.0
    assert lay.side_info_bits == pytest.approx(64 + math.log2(3000))
    assert lay.amortised_bitrate(10.0) == round(500 + (64 + math.log2(3000)) / 10, 1) == 507.6


def test_unit_stream_nominal_rate_is_before_dedup():
    units = StreamSpec("units", (1000,), 320, "units", durations=True)
    assert units.nominal_bitrate(SR) == pytest.approx(50 * math.log2(1000))
    assert StreamSpec("units", (1000,), 320, "units").nominal_bitrate(SR) == units.nominal_bitrate(SR)


@pytest.mark.parametrize("num_samples, hop, frames", [
    (0, 640, 0), (1, 640, 1), (639, 640, 1), (640, 640, 1), (641, 640, 2),
    (160000, 640, 250), (160000, 1280, 125), (160001, 1280, 126), (48005, 320, 151),
])
def test_num_frames_is_ceil(num_samples, hop, frames):
    assert StreamSpec("s", (32,), hop).num_frames(num_samples) == frames
    assert StreamSpec("s", (32,), hop, "units").num_frames(num_samples) == frames
    assert StreamSpec("s", (2,), kind="utterance").num_frames(num_samples) == 1


@pytest.mark.parametrize("spec, text", [
    (StreamSpec("content", (32,), 640), "25 Hz x log2(32) = 125 b/s"),
    (StreamSpec("f0", (32,), 1280), "12.5 Hz x log2(32) = 62.5 b/s"),
    (StreamSpec("rvq", (1024,) * 8, 320), "50 Hz x 8 x log2(1024) = 4000 b/s"),
    (StreamSpec("mix", (1000, 64), 320), "50 Hz x log2(1000) + log2(64) = 798.289 b/s"),
    (StreamSpec("odd", (3,), 441), "36.281 Hz x log2(3) = 57.504 b/s"),
    (StreamSpec("u", (1000,), 320, "units"),
     "50 Hz x log2(1000) = 498.289 b/s (before dedup; sent: units x log2 N)"),
    (StreamSpec("u", (1000,), 320, "units", durations=True),
     "50 Hz x log2(1000) = 498.289 b/s (before dedup; sent: units x log2 N + durations)"),
    (StreamSpec("speaker", (2,) * 64, kind="utterance"), "64 x log2(2) = 64 bits per utterance"),
    (StreamSpec("speaker", (65536,) * 4, kind="utterance"), "4 x log2(65536) = 64 bits per utterance"),
    (StreamSpec("speaker", (256,), kind="utterance"), "log2(256) = 8 bits per utterance"),
    (StreamSpec("speaker", (3, 1000), kind="utterance"), "log2(3) + log2(1000) = 11.551 bits per utterance"),
])
def test_arithmetic_strings(spec, text):
    assert spec.arithmetic(SR) == text


def test_arithmetic_depends_on_sample_rate():
    assert StreamSpec("c", (1024,), 320).arithmetic(24000) == "75 Hz x log2(1024) = 750 b/s"


def test_summary():
    lay = _lmloss(with_speaker=True)
    s = lay.summary()
    assert list(s["streams"]) == ["content", "f0", "speaker"]
    assert s["nominal_bitrate"] == 187.5 and s["side_info_bits"] == 64.0
    assert s["nominal_bitrate_with_side_info_over_10s"] == 193.9
    c, spk = s["streams"]["content"], s["streams"]["speaker"]
    assert c["frame_rate"] == 25.0 and c["nominal_bitrate"] == 125.0 and "side_info_bits" not in c
    assert c["arithmetic"] == "25 Hz x log2(32) = 125 b/s" and c["kind"] == "frames" and c["hop_length"] == 640
    assert spk["frame_rate"] is None and spk["nominal_bitrate"] == 0.0 and spk["side_info_bits"] == 64.0
    assert spk["codebook_sizes"] == [2] * 64 and spk["hop_length"] is None
    other = StreamLayout(lay.streams, SR, amortise_seconds=2.5).summary()
    assert other["nominal_bitrate_with_side_info_over_2.5s"] == 213.1


# ---------------------------------------------------------------------- layouts
def test_layout_validation():
    c = StreamSpec("content", (32,), 640)
    with pytest.raises(ValueError, match="at least one stream"):
        StreamLayout([], SR)
    with pytest.raises(ValueError, match="unique"):
        StreamLayout([c, StreamSpec("content", (1024,), 320)], SR)
    with pytest.raises(ValueError, match="at least one frame or unit stream"):
        StreamLayout([StreamSpec("speaker", (2,) * 64, kind="utterance")], SR)
    lay = StreamLayout(iter([c, StreamSpec("u", (8,), 320, "units")]), SR)  # any iterable
    assert lay.names == ["content", "u"] and [s.name for s in lay] == lay.names
    assert lay["u"].kind == "units"
    with pytest.raises(KeyError):
        lay["f0"]


_specs = st.builds(
    lambda name, sizes, kind, hop, dur: StreamSpec(name, sizes, None if kind == "utterance" else hop, kind,
                                                   dur and kind == "units"),
    st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=32),
    st.lists(st.integers(2, 2**32 - 1), min_size=1, max_size=8).map(tuple),
    st.sampled_from(KINDS),
    st.integers(1, 100000),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_specs, min_size=1, max_size=5, unique_by=lambda s: s.name), st.integers(1, 384000))
def test_dict_round_trip_and_sums(specs, sr):
    if all(s.per_utterance for s in specs):
        specs = [StreamSpec("timed", (2,), 1)] + [s for s in specs if s.name != "timed"]
    lay = StreamLayout(specs, sr)
    back = StreamLayout.from_dicts([s.to_dict() for s in lay], sr)
    assert back.streams == lay.streams
    timed = [s for s in specs if not s.per_utterance]
    expected = sum(sr / s.hop_length * sum(math.log2(n) for n in s.codebook_sizes) for s in timed)
    assert lay.bitrate == pytest.approx(expected)
    side = sum(sum(math.log2(n) for n in s.codebook_sizes) for s in specs if s.per_utterance)
    assert lay.side_info_bits == pytest.approx(side)
    assert lay.amortised_bitrate(7.0) == pytest.approx(round(expected + side / 7.0, 1), abs=0.051)


def test_from_dict_defaults():
    spec = StreamSpec.from_dict({"name": "tokens", "codebook_sizes": [1000]} | {"hop_length": 320})
    assert spec == StreamSpec("tokens", (1000,), 320, "frames", False)
    with pytest.raises(ValueError, match="needs hop_length"):
        StreamSpec.from_dict({"name": "tokens", "codebook_sizes": [1000]})
