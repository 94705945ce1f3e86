"""The multi-stream ``.sbc`` bitstream (version 3): frame streams at their own hops, deduplicated
unit streams (with or without run lengths), per-utterance codes, entropy-coded subsets; exact
sizes, the header layout, corruption and the version-1/2 single-stream files."""

import math
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.bitstream import (
    BLOCK,
    FRAME_SLACK,
    MAGIC,
    VERSION,
    Bitstream,
    Header,
    StreamRecord,
    StreamTokens,
    build_header,
    dedup_rows,
    models_hash,
    pack_stream,
    parse_header,
    peek_header,
    read_sbc,
    stream_bytes,
    write_sbc,
)
from speechbrain_codec.entropy import TokenModel
from speechbrain_codec.streams import SINGLE_STREAM, StreamSpec
from speechbrain_codec.utils import CodecError

try:  # the n-gram model is newer than the order-0 one
    from speechbrain_codec.entropy import fit_token_model

    fit_token_model("ngram", [np.zeros((2, 1), dtype=np.int64)], [2], order=2)
    HAVE_NGRAM = True
except Exception:  # pragma: no cover - older entropy module
    HAVE_NGRAM = False

SR = 16000
HASH = "0123456789abcdef"


def _one_line(err, name):
    msg = str(err.value)
    assert name in msg and "\n" not in msg, msg
    return msg


def _runs(rng, n_frames, sizes, mean_run=4.0, alphabet=None):
    """Frame tokens ``[n_frames, K]`` made of runs of equal frames (as a DPDP unit stream sends)."""
    out = np.empty((n_frames, len(sizes)), dtype=np.int64)
    t = 0
    while t < n_frames:
        run = int(rng.geometric(1.0 / mean_run))
        out[t : t + run] = [rng.integers(0, min(n, alphabet or n)) for n in sizes]
        t += run
    return out


def _nominal(n, radix):
    return n * math.log2(radix) / 8 if radix > 1 else 0.0


def _fit(kind, toks, sizes, rng):
    extra = np.stack([rng.integers(0, n, size=16) for n in sizes], axis=1)
    if kind == "ngram":
        return fit_token_model("ngram", [toks, extra], list(sizes), order=2)
    return TokenModel.fit([toks, extra], list(sizes))


# ---------------------------------------------------------------------- the 3-stream file
def _three_streams(num_samples=3 * SR + 5, seed=0):
    """A units stream with run lengths (25 Hz, runs of ~3), an entropy-coded 12.5 Hz f0 stream and
    a 64-bit speaker code: the shapes of the LM-loss codec with a speaker embedding."""
    rng = np.random.default_rng(seed)
    content = StreamSpec("content", (32,), 640, "units", durations=True)
    f0 = StreamSpec("f0", (32,), 1280)
    spk = StreamSpec("speaker", (2,) * 64, kind="utterance")
    frames = _runs(rng, content.num_frames(num_samples), (32,), mean_run=3.0)
    f0_toks = rng.integers(0, 8, size=(f0.num_frames(num_samples), 1))  # a skewed distribution
    streams = [StreamTokens.from_frames(content, frames), StreamTokens(f0, f0_toks),
               StreamTokens(spk, rng.integers(0, 2, size=(1, 64)))]
    model = TokenModel.fit([f0_toks], [32])
    bs = Bitstream.from_streams(streams, SR, num_samples, HASH, {"f0": model})
    return bs, model, frames


def test_three_stream_round_trip(tmp_path):
    bs, model, frames = _three_streams()
    path = tmp_path / "a.sbc"
    size = write_sbc(path, bs)
    back = read_sbc(path, {"f0": model})
    assert [s.spec for s in back.streams] == [s.spec for s in bs.streams]
    assert back.layout.names == ["content", "f0", "speaker"]
    assert np.array_equal(back["content"].frames(), frames)
    assert np.array_equal(back["content"].durations, bs["content"].durations)
    assert back["content"].toks.shape[0] < frames.shape[0] / 2  # deduplicated
    for name, toks in bs.token_dict().items():
        assert np.array_equal(back.token_dict()[name], toks)
    assert back.token_dict()["content"].shape == (76, 1) and back.token_dict()["f0"].shape == (38, 1)
    assert (back.sample_rate, back.num_samples, back.config_hash) == (SR, 3 * SR + 5, HASH)
    assert back.nominal_bitrate == 187.5 and back.layout.side_info_bits == 64
    assert back.token_models == {"f0": model}
    per = bs.stream_payload_bytes()
    assert size == len(path.read_bytes()) == bs.header_bytes() + sum(per.values())
    # plain streams: exactly their packed sizes; the entropy-coded one: whole 32-bit words
    u, d = bs["content"].toks.shape[0], int(bs["content"].durations.max())
    assert per["content"] == stream_bytes(u, 32) + stream_bytes(u, d)
    assert per["speaker"] == 8  # 64 binary codebooks: one 64-bit number
    assert per["f0"] == len(model.encode(bs["f0"].toks)) and per["f0"] % 4 == 0
    with pytest.raises(AttributeError, match="3 streams"):
        back.toks


def test_peek_header_lists_every_stream(tmp_path):
    bs, model, _ = _three_streams()
    path = tmp_path / "a.sbc"
    write_sbc(path, bs)
    info = peek_header(path)  # no token model needed
    assert info["version"] == 3 and info["entropy_coded"] is True
    assert info["file_bytes"] == info["header_bytes"] + info["payload_bytes"] == len(path.read_bytes())
    assert info["header_bytes"] == bs.header_bytes()
    assert list(info["streams"]) == ["content", "f0", "speaker"]
    c, f, s = (info["streams"][k] for k in ("content", "f0", "speaker"))
    assert c["count"] == bs["content"].toks.shape[0] and c["longest_run"] == int(bs["content"].durations.max())
    assert c["kind"] == "units" and c["durations"] and not c["entropy_coded"]
    assert f["count"] == 38 and f["entropy_coded"] and f["hop_length"] == 1280 and "longest_run" not in f
    assert s["count"] == 1 and s["hop_length"] is None and s["codebook_sizes"] == [2] * 64
    assert {k: v["payload_bytes"] for k, v in info["streams"].items()} == bs.stream_payload_bytes()
    assert "frames" not in info and "hop_length" not in info  # flat keys only for one stream


def test_version_3_header_layout():
    """The bytes at the offsets the module docstring documents."""
    bs, model, _ = _three_streams()
    data = bs.to_bytes()
    assert data[:4] == MAGIC and data[4] == VERSION == 3 and data[5] == 1  # flag: entropy coded
    sr, ns = struct.unpack_from("<IQ", data, 6)
    assert (sr, ns) == (SR, 3 * SR + 5)
    assert data[18:26].hex() == HASH and data[26] == 3
    pos, per = 27, bs.stream_payload_bytes()
    expected = [("content", 1 | 4, 640, bs["content"].toks.shape[0], [32]),
                ("f0", 0 | 8, 1280, 38, [32]), ("speaker", 2, 0, 1, [2] * 64)]
    for name, kind, hop, count, sizes in expected:
        assert data[pos] == kind and data[pos + 1] == len(name)
        assert data[pos + 2 : pos + 2 + len(name)].decode() == name
        pos += 2 + len(name)
        assert struct.unpack_from("<IIB", data, pos) == (hop, count, len(sizes))
        pos += 9
        assert list(struct.unpack_from(f"<{len(sizes)}I", data, pos)) == sizes
        pos += 4 * len(sizes)
        if kind & 4:
            assert struct.unpack_from("<I", data, pos)[0] == int(bs["content"].durations.max())
            pos += 4
        assert struct.unpack_from("<I", data, pos)[0] == per[name]
        pos += 4
    assert data[pos : pos + 8].hex() == model.hash == models_hash({"f0": model})
    pos += 8
    payload = data[pos + 12 :]
    crc, length, header_crc = struct.unpack_from("<III", data, pos)
    assert (crc, length) == (zlib.crc32(payload), sum(per.values()))
    assert header_crc == zlib.crc32(data[: pos + 8])
    assert pos + 12 == bs.header_bytes() == 27 + (2 + 7 + 9 + 4 + 4 + 4) + (2 + 2 + 9 + 4 + 4) \
        + (2 + 7 + 9 + 256 + 4) + 8 + 12
    assert parse_header(data).size == pos + 12
    # the payload: the streams in header order
    c = bs["content"]
    assert payload[: per["content"]] == pack_stream(c.toks[:, 0], 32) + pack_stream(c.durations - 1, int(c.durations.max()))
    assert payload[per["content"] : per["content"] + per["f0"]] == model.encode(bs["f0"].toks)
    bits = "".join(str(b) for b in bs["speaker"].toks[0].tolist())  # codebook 0 is the most significant
    assert payload[-8:] == int(bits, 2).to_bytes(8, "little")


# ---------------------------------------------------------------------- hypothesis round trips
HOPS = (320, 400, 640, 1280)
SIZES = (2, 3, 5, 32, 100, 1000, 1024, 4096, 65536, 2**20 + 7)
NAMES = ("content", "f0", "speaker", "units.v2", "a-b_c", "x")


@st.composite
def _utterances(draw):
    num_samples = draw(st.one_of(st.sampled_from((0, 1, 319, 320, 641, 1281)), st.integers(SR // 4, 4 * SR),
                                 st.integers(SR // 4, 4 * SR)))
    n = draw(st.integers(1, 4))
    names = draw(st.permutations(NAMES))[:n]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    streams, models, frames = [], {}, {}
    kinds = [draw(st.sampled_from(("frames", "units", "utterance"))) for _ in range(n)]
    if all(k == "utterance" for k in kinds):
        kinds[0] = draw(st.sampled_from(("frames", "units")))
    for name, kind in zip(names, kinds):
        if kind == "utterance":
            sizes = draw(st.one_of(st.just((2,) * 64), st.just((2**16,) * 4),
                                   st.lists(st.sampled_from(SIZES), min_size=1, max_size=3).map(tuple)))
            spec = StreamSpec(name, sizes, kind="utterance")
            toks = np.array([[rng.integers(0, s) for s in sizes]], dtype=np.int64)
            st_toks = StreamTokens(spec, toks)
        else:
            sizes = tuple(draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=3)))
            hop = draw(st.sampled_from(HOPS))
            expected = -(-num_samples // hop)
            if kind == "frames":
                spec = StreamSpec(name, sizes, hop)
                t = max(0, expected + draw(st.sampled_from((0, 0, -1, 1))))
                toks = np.stack([rng.integers(0, s, size=t) for s in sizes], axis=1).reshape(t, len(sizes))
                st_toks = StreamTokens.from_frames(spec, toks)
            else:
                spec = StreamSpec(name, sizes, hop, "units", durations=draw(st.sampled_from((True, False))))
                t = max(0, expected - draw(st.sampled_from((0, 0, 1))))
                toks = _runs(rng, t, sizes, mean_run=draw(st.sampled_from((1.0, 2.0, 6.0, 40.0))),
                             alphabet=draw(st.sampled_from((2, 3, None))))
                st_toks = StreamTokens.from_frames(spec, toks)
            frames[name] = toks
        if max(spec.codebook_sizes) <= 65536 and draw(st.booleans()):
            small = max(spec.codebook_sizes) <= 1024  # n-gram tables over 2^16 codes: not what codecs use
            kind_m = draw(st.sampled_from(("order0", "ngram") if HAVE_NGRAM and small else ("order0",)))
            models[name] = _fit(kind_m, st_toks.toks, spec.codebook_sizes, rng)
        streams.append(st_toks)
    return Bitstream.from_streams(streams, SR, num_samples, HASH, models), frames


@settings(max_examples=60, deadline=None)
@given(_utterances())
def test_v3_round_trip_and_exact_sizes(case):
    bs, frames = case
    data = bs.to_bytes()
    back = Bitstream.from_bytes(data, "u.sbc", bs.token_models or None)
    assert back.num_samples == bs.num_samples and back.sample_rate == SR and back.config_hash == HASH
    assert [s.spec for s in back.streams] == [s.spec for s in bs.streams]
    assert set(back.token_models) == set(bs.token_models)
    for s, b in zip(bs.streams, back.streams):
        assert b.toks.dtype == np.int64 and np.array_equal(b.toks, s.toks), s.spec
        if s.spec.durations:
            assert np.array_equal(b.durations, s.durations)
            assert np.array_equal(b.frames(), frames[s.spec.name])  # the frame-rate tokens back
        else:
            assert b.durations is None
        if s.spec.kind == "units":
            units, runs = dedup_rows(frames[s.spec.name])
            assert np.array_equal(b.toks, units) and int(runs.sum()) == frames[s.spec.name].shape[0]
        if s.spec.kind == "frames":
            assert np.array_equal(b.frames(), frames[s.spec.name])
    assert set(back.token_dict()) == set(bs.token_dict())
    for name, toks in bs.token_dict().items():
        assert np.array_equal(back.token_dict()[name], toks)
    # sizes: header + the streams' payloads, each listed in the header
    per = bs.stream_payload_bytes()
    assert len(data) == bs.header_bytes() + sum(per.values()) == bs.header_bytes() + bs.payload_bytes()
    h = parse_header(data)
    assert h.size == bs.header_bytes() and [r.payload_bytes for r in h.streams] == list(per.values())
    assert [r.entropy_coded for r in h.streams] == [s.spec.name in bs.token_models for s in bs.streams]
    assert (h.model_hash is None) == (not bs.token_models) and data[5] == (1 if bs.token_models else 0)
    for s in bs.streams:
        n, sizes = s.toks.shape[0], s.spec.codebook_sizes
        d = int(s.durations.max()) if s.spec.durations and n else 0
        dur = stream_bytes(n, d) if s.spec.durations else 0
        if s.spec.name in bs.token_models:
            assert per[s.spec.name] - dur == len(bs.token_models[s.spec.name].encode(s.toks))
            assert (per[s.spec.name] - dur) % 4 == 0
            continue
        if s.spec.per_utterance:  # one mixed-radix number
            assert per[s.spec.name] == ((math.prod(sizes) - 1).bit_length() + 7) // 8
            continue
        assert per[s.spec.name] == sum(stream_bytes(n, k) for k in sizes) + dur
        nominal = sum(_nominal(n, k) for k in sizes) + (_nominal(n, d) if s.spec.durations else 0.0)
        blocks = -(-n // BLOCK)
        slack = (len(sizes) + (1 if s.spec.durations else 0)) * blocks
        assert nominal - 1e-9 <= per[s.spec.name] < nominal + slack + 1e-9 or per[s.spec.name] == nominal == 0


def test_mixed_hops_counts_follow_ceil():
    """Frame streams at 320, 640 and 1280 at 16 kHz each hold ``ceil(num_samples / hop)`` frames."""
    rng = np.random.default_rng(3)
    ns = 2 * SR + 1
    specs = [StreamSpec("a", (1000,), 320), StreamSpec("b", (1024, 3), 640), StreamSpec("c", (5,), 1280)]
    streams = [StreamTokens(s, np.stack([rng.integers(0, n, size=s.num_frames(ns)) for n in s.codebook_sizes], 1))
               for s in specs]
    bs = Bitstream.from_streams(streams, SR, ns, HASH)
    h = parse_header(bs.to_bytes())
    assert [r.count for r in h.streams] == [101, 51, 26]
    assert bs.stream_payload_bytes() == {"a": stream_bytes(101, 1000),
                                         "b": stream_bytes(51, 1024) + stream_bytes(51, 3),
                                         "c": stream_bytes(26, 5)}
    assert bs.stream_payload_bytes() == {"a": 126, "b": 64 + 11, "c": 8}
    assert bs.nominal_bitrate == pytest.approx(50 * math.log2(1000) + 25 * (10 + math.log2(3)) + 12.5 * math.log2(5))


def test_multi_block_stream_is_within_one_byte_per_block():
    rng = np.random.default_rng(4)
    spec = StreamSpec("long", (1000, 7), 320)
    n = 2 * BLOCK + 5
    toks = np.stack([rng.integers(0, 1000, n), rng.integers(0, 7, n)], axis=1)
    bs = Bitstream.from_streams([StreamTokens(spec, toks), StreamTokens(StreamSpec("spk", (3,), kind="utterance"),
                                                                        np.array([[2]]))], SR, n * 320, HASH)
    per = bs.stream_payload_bytes()["long"]
    nominal = n * (math.log2(1000) + math.log2(7)) / 8
    assert per == stream_bytes(n, 1000) + stream_bytes(n, 7)
    assert nominal <= per < nominal + 2 * 3  # 3 blocks, 2 codebooks
    assert np.array_equal(Bitstream.from_bytes(bs.to_bytes())["long"].toks, toks)


# ---------------------------------------------------------------------- honest sizes
@pytest.mark.parametrize("durations", [False, True])
def test_unit_stream_stores_the_deduplicated_units(durations):
    """10 s of 25 Hz frames in runs of 5: 50 units, not 250 frames, are sent."""
    rng = np.random.default_rng(5)
    ns = 10 * SR
    vals = (np.arange(50) * 37 + int(rng.integers(0, 1024))) % 1024  # no two neighbouring runs equal
    assert (vals[1:] != vals[:-1]).all()
    frames = np.repeat(vals, 5)[:, None]
    units = StreamSpec("content", (1024,), 640, "units", durations=durations)
    plain = StreamSpec("content", (1024,), 640)
    sent = StreamTokens.from_frames(units, frames)
    assert sent.toks.shape == (50, 1) and (sent.durations is None) != durations
    bs = Bitstream.from_streams([sent], SR, ns, HASH)
    frame_rate = Bitstream.from_streams([StreamTokens.from_frames(plain, frames)], SR, ns, HASH)
    assert frame_rate.payload_bytes() == 250 * 10 // 8 + 1 == 313  # 312.5 rounded up
    expected = 50 * 10 // 8 + 1 + (math.ceil(50 * math.log2(5) / 8) if durations else 0)
    assert expected == (63 + 15 if durations else 63)
    assert bs.payload_bytes() == bs.stream_payload_bytes()["content"] == expected
    assert bs.payload_bytes() == stream_bytes(50, 1024) + (stream_bytes(50, 5) if durations else 0)
    assert len(bs.to_bytes()) == bs.header_bytes() + expected
    assert bs.header_bytes() == 27 + 2 + 7 + 9 + 4 + (4 if durations else 0) + 4 + 12
    back = Bitstream.from_bytes(bs.to_bytes())
    assert back.token_dict()["content"].shape == ((250, 1) if durations else (50, 1))
    if durations:
        assert np.array_equal(back.toks, frames)
    assert back.nominal_bitrate == 250.0  # the rate before deduplication, as documented


def test_one_frame_runs_with_durations_cost_more_than_frames():
    """A unit stream whose frames never repeat: units == frames, plus run-length bytes of radix 1
    (all runs 1: zero bytes), so it costs exactly the frame-rate payload."""
    toks = np.arange(40)[:, None] % 32
    spec = StreamSpec("content", (32,), 640, "units", durations=True)
    bs = Bitstream.from_streams([StreamTokens.from_frames(spec, toks)], SR, 40 * 640, HASH)
    assert bs.payload_bytes() == 25 and parse_header(bs.to_bytes()).streams[0].duration_radix == 1
    back = Bitstream.from_bytes(bs.to_bytes())
    assert back["content"].durations.tolist() == [1] * 40


def test_per_utterance_codes_sizes():
    """Side information: one code per utterance, its K codebooks packed as one mixed-radix number:
    64 binary codebooks and 4 x 2^16 take 8 bytes (64 bits), 3 x 1000 takes 2."""
    rng = np.random.default_rng(6)
    c = StreamTokens(StreamSpec("c", (32,), 640), rng.integers(0, 32, (25, 1)))
    for sizes, nbytes in (((2,) * 64, 8), ((2**16,) * 4, 8), ((3, 1000), 2)):
        spk = StreamTokens(StreamSpec("speaker", sizes, kind="utterance"),
                           np.array([[rng.integers(0, n) for n in sizes]]))
        bs = Bitstream.from_streams([c, spk], SR, SR, HASH)
        assert bs.stream_payload_bytes()["speaker"] == nbytes
        assert np.array_equal(Bitstream.from_bytes(bs.to_bytes())["speaker"].toks, spk.toks)
    with pytest.raises(ValueError, match="one code per utterance"):
        Bitstream.from_streams([c, StreamTokens(spk.spec, np.zeros((2, 2), dtype=np.int64))], SR, SR, HASH).to_bytes()


# ---------------------------------------------------------------------- edge cases
def test_one_frame_per_stream():
    bs, model, frames = _three_streams(num_samples=1)
    assert frames.shape == (1, 1) and bs["f0"].toks.shape == (1, 1)
    data = bs.to_bytes()
    back = Bitstream.from_bytes(data, "one.sbc", {"f0": model})
    assert back["content"].durations.tolist() == [1] and np.array_equal(back["content"].frames(), frames)
    assert np.array_equal(back["f0"].toks, bs["f0"].toks)
    per = bs.stream_payload_bytes()
    assert per["content"] == 1 and per["speaker"] == 8  # one 5-bit unit; radix-1 run lengths: 0 bytes
    assert parse_header(data).streams[0].duration_radix == 1


@pytest.mark.parametrize("entropy", [False, True])
def test_empty_utterance(entropy):
    """num_samples = 0: no frames, no units (and no run lengths), the per-utterance code only."""
    content = StreamSpec("content", (32,), 640, "units", durations=True)
    f0 = StreamSpec("f0", (32,), 1280)
    spk = StreamSpec("speaker", (2**16,) * 4, kind="utterance")
    streams = [StreamTokens.from_frames(content, np.zeros((0, 1), dtype=np.int64)),
               StreamTokens(f0, np.zeros((0, 1), dtype=np.int64)),
               StreamTokens(spk, np.array([[1, 2, 3, 65535]]))]
    assert streams[0].toks.shape == (0, 1) and streams[0].durations.shape == (0,)
    models = {"content": TokenModel.fit([np.zeros((0, 1), dtype=np.int64)], [32])} if entropy else {}
    bs = Bitstream.from_streams(streams, SR, 0, HASH, models)
    data = bs.to_bytes()
    assert bs.stream_payload_bytes() == {"content": 0, "f0": 0, "speaker": 8}
    assert len(data) == bs.header_bytes() + 8
    back = Bitstream.from_bytes(data, "empty.sbc", models or None)
    assert back["content"].toks.shape == (0, 1) and back["content"].frames().shape == (0, 1)
    assert back["f0"].toks.shape == (0, 1) and back["speaker"].toks.tolist() == [[1, 2, 3, 65535]]
    assert parse_header(data).streams[0].duration_radix == 0


def test_frame_count_slack():
    """A frame stream may hold ceil(num_samples / hop) +- FRAME_SLACK frames (a one-frame stream
    for an empty signal too); outside that the writer refuses it."""
    spec = StreamSpec("f", (32,), 640)
    for ns, t, ok in ((0, 1, True), (0, 5, True), (0, 6, False), (SR, 25 - FRAME_SLACK, True),
                      (SR, 25 - FRAME_SLACK - 1, False), (SR, 29, True), (SR, 30, False)):
        bs = Bitstream.from_streams([StreamTokens(spec, np.zeros((t, 1), dtype=np.int64))], SR, ns, HASH)
        if ok:
            assert Bitstream.from_bytes(bs.to_bytes())["f"].toks.shape == (t, 1)
        else:
            with pytest.raises(ValueError, match="implausible header"):
                bs.to_bytes()
    units = StreamSpec("u", (32,), 640, "units")
    many = Bitstream.from_streams([StreamTokens(units, np.arange(30)[:, None])], SR, SR, HASH)
    with pytest.raises(ValueError, match="30 units for 16000 samples at hop 640 \\(at most 29\\)"):
        many.to_bytes()


def test_units_without_durations_decode_to_the_units():
    frames = np.array([[1, 0], [1, 0], [1, 0], [2, 0], [2, 1], [2, 1]])
    spec = StreamSpec("units", (3, 2), 320, "units")
    sent = StreamTokens.from_frames(spec, frames)
    assert sent.toks.tolist() == [[1, 0], [2, 0], [2, 1]] and sent.durations is None
    assert np.array_equal(sent.frames(), sent.toks)
    bs = Bitstream.from_streams([sent], SR, 6 * 320, HASH)
    assert bs.payload_bytes() == stream_bytes(3, 3) + stream_bytes(3, 2) == 2
    assert Bitstream.from_bytes(bs.to_bytes()).token_dict()["units"].tolist() == [[1, 0], [2, 0], [2, 1]]


def test_dedup_rows():
    u, d = dedup_rows(np.array([[0, 1], [0, 1], [0, 2], [0, 2], [0, 2], [5, 5]]))
    assert u.tolist() == [[0, 1], [0, 2], [5, 5]] and d.tolist() == [2, 3, 1]
    u, d = dedup_rows(np.zeros((0, 3), dtype=np.int64))
    assert u.shape == (0, 3) and d.shape == (0,)
    u, d = dedup_rows(np.full((7, 1), 4))
    assert u.tolist() == [[4]] and d.tolist() == [7]


def test_invalid_tokens_are_refused_by_the_writer():
    spec = StreamSpec("u", (32,), 640, "units", durations=True)
    for toks, durations, message in ((np.array([[1], [32]]), np.array([1, 1]), "outside"),
                                     (np.array([[1], [2]]), None, "run length"),
                                     (np.array([[1], [2]]), np.array([1]), "run length"),
                                     (np.array([[1], [2]]), np.array([2, 0]), "run length"),
                                     (np.array([1, 2]), np.array([1, 1]), "toks must be")):
        bs = Bitstream.from_streams([StreamTokens(spec, toks, durations)], SR, 2 * 640, HASH)
        with pytest.raises(ValueError, match=message):
            bs.to_bytes()


# ---------------------------------------------------------------------- entropy coding
def test_entropy_coded_subsets_and_models_hash():
    rng = np.random.default_rng(7)
    ns = 2 * SR
    content = StreamSpec("content", (32,), 640, "units", durations=True)
    f0 = StreamSpec("f0", (32,), 1280)
    rvq = StreamSpec("rvq", (1000, 1000), 320)
    frames = _runs(rng, 50, (32,), alphabet=4)
    streams = [StreamTokens.from_frames(content, frames), StreamTokens(f0, rng.integers(0, 4, (25, 1))),
               StreamTokens(rvq, rng.integers(0, 1000, (100, 2)))]
    mc = TokenModel.fit([streams[0].toks], [32])
    mf = fit_token_model("ngram", [streams[1].toks], [32], order=2) if HAVE_NGRAM else TokenModel.fit([streams[1].toks], [32])
    models = {"content": mc, "f0": mf}
    bs = Bitstream.from_streams(streams, SR, ns, HASH, models)
    data = bs.to_bytes()
    h = parse_header(data)
    assert [r.entropy_coded for r in h.streams] == [True, True, False]
    assert h.model_hash == models_hash(models) not in (mc.hash, mf.hash)
    assert models_hash(models) == models_hash({"f0": mf, "content": mc})  # order of the dict: irrelevant
    assert models_hash({"content": mf, "f0": mc}) != models_hash(models)
    per = bs.stream_payload_bytes()
    u, d = streams[0].toks.shape[0], int(streams[0].durations.max())
    assert per["content"] == len(mc.encode(streams[0].toks)) + stream_bytes(u, d)
    assert per["rvq"] == 2 * stream_bytes(100, 1000)
    # the coded streams are much smaller than plain (4 of 32 symbols used)
    plain = Bitstream.from_streams(streams, SR, ns, HASH).stream_payload_bytes()
    assert per["f0"] < plain["f0"] and per["rvq"] == plain["rvq"]
    back = Bitstream.from_bytes(data, "m.sbc", models)
    assert np.array_equal(back["content"].frames(), frames) and np.array_equal(back["f0"].toks, streams[1].toks)
    assert np.array_equal(back["rvq"].toks, streams[2].toks)
    # models for a plain stream are ignored when reading
    assert np.array_equal(Bitstream.from_bytes(data, "m.sbc", {**models, "rvq": mc})["f0"].toks, streams[1].toks)
    # swapped, missing or foreign models are refused
    for given_models, message in (({"content": mf, "f0": mc}, "another token model"),
                                  ({"content": mc}, "missing for f0"),
                                  (mc, "missing for f0"),
                                  ({"f0": mf}, "missing for content"),
                                  (None, "entropy-coded; decode it with its checkpoint")):
        with pytest.raises(CodecError, match=message) as err:
            Bitstream.from_bytes(data, "m.sbc", given_models)
        _one_line(err, "m.sbc")


def test_wrong_or_missing_token_model_is_refused(tmp_path):
    bs, model, _ = _three_streams()
    path = tmp_path / "a.sbc"
    write_sbc(path, bs)
    other = TokenModel.fit([np.arange(32)[:, None]], [32])
    with pytest.raises(CodecError, match=f"another token model \\(hash {model.hash}, the checkpoint's is {other.hash}\\)") as err:
        read_sbc(path, {"f0": other})
    _one_line(err, str(path))
    with pytest.raises(CodecError, match="entropy-coded; decode it with its checkpoint") as err:
        read_sbc(path)
    _one_line(err, str(path))
    with pytest.raises(CodecError, match="missing for f0") as err:
        read_sbc(path, model)  # one model is taken for the first stream, "content"
    _one_line(err, str(path))
    assert np.array_equal(read_sbc(path, {"f0": model})["f0"].toks, bs["f0"].toks)


def test_writer_refuses_models_that_do_not_fit():
    bs, model, _ = _three_streams()
    wrong = Bitstream.from_streams(bs.streams, SR, bs.num_samples, HASH, {"f0": TokenModel.fit([], [64])})
    with pytest.raises(ValueError, match="stream f0: the token model's codebooks do not fit"):
        wrong.to_bytes()
    stray = Bitstream.from_streams(bs.streams, SR, bs.num_samples, HASH, {"f0": model, "pitch": model})
    with pytest.raises(ValueError, match="lacks: \\['pitch'\\]"):
        stray.to_bytes()


# ---------------------------------------------------------------------- corruption
@pytest.fixture(scope="module")
def three():
    bs, model, _ = _three_streams()
    return bs, model, bs.to_bytes()


def test_every_header_byte_is_covered(tmp_path, three):
    """Flipping any header byte of the 3-stream file (stream records, names, counts, codebook
    sizes, run-length radix, payload sizes, model hash, CRCs) gives a one-line CodecError naming
    the file, never another file's tokens."""
    bs, model, data = three
    hsize = bs.header_bytes()
    assert hsize == parse_header(data).size > 300
    assert np.array_equal(read_sbc_bytes(tmp_path, data, {"f0": model})["content"].toks, bs["content"].toks)
    path = tmp_path / "bad.sbc"
    for offset in range(hsize):
        for mask in (0x01, 0x80, 0xFF):
            path.write_bytes(data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :])
            with pytest.raises(CodecError) as err:
                read_sbc(path, {"f0": model})
            _one_line(err, str(path))
            with pytest.raises(CodecError) as err:
                peek_header(path)
            _one_line(err, str(path))


def read_sbc_bytes(tmp_path, data, models=None):
    path = tmp_path / "ok.sbc"
    path.write_bytes(data)
    return read_sbc(path, models)


def test_payload_flips_are_refused(tmp_path, three):
    bs, model, data = three
    path = tmp_path / "bad.sbc"
    for offset in range(bs.header_bytes(), len(data)):
        path.write_bytes(data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1 :])
        with pytest.raises(CodecError, match="payload checksum mismatch") as err:
            read_sbc(path, {"f0": model})
        _one_line(err, str(path))


def test_every_truncation_is_refused(tmp_path, three):
    bs, model, data = three
    path = tmp_path / "cut.sbc"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CodecError, match="empty file|truncated") as err:
            read_sbc(path, {"f0": model})
        _one_line(err, str(path))
    path.write_bytes(data + b"\0")
    with pytest.raises(CodecError, match="1 unexpected bytes after the payload"):
        read_sbc(path, {"f0": model})


def _with_durations(data, durations, radix):
    """``data`` (a file of one ``units`` stream with run lengths) with its run-length bytes
    replaced by ``durations`` in base ``radix`` and both CRCs recomputed (a writer's bug, not
    damage in transit: only the reader's checks of the run lengths can catch it)."""
    h = parse_header(data)
    out = bytearray(data)
    new = pack_stream(np.asarray(durations) - 1, radix)
    r = h.streams[0]
    assert len(new) == r.duration_bytes() and r.duration_radix == radix
    out[len(out) - len(new) :] = new
    payload = bytes(out[h.size :])
    struct.pack_into("<I", out, h.size - 12, zlib.crc32(payload))
    struct.pack_into("<I", out, h.size - 4, zlib.crc32(bytes(out[: h.size - 4])))
    return bytes(out)


@pytest.mark.parametrize("durations, message", [
    ([5] * 8 + [3, 3, 2, 2], None),  # the original: 50 frames
    ([5] * 8 + [1, 1, 2, 2], None),  # 46 = 50 - FRAME_SLACK: accepted
    ([5] * 10 + [2, 2], None),  # 54 = 50 + FRAME_SLACK
    ([5] * 8 + [1, 1, 1, 2], "run lengths sum to 45 frames, 32000 samples give 50"),
    ([5] * 10 + [2, 3], "run lengths sum to 55 frames"),
    ([5] + [1] * 11, "run lengths sum to 16 frames"),
    ([4] * 12, "longest run 4, the header says 5"),
])
def test_run_lengths_must_sum_to_the_frame_count(tmp_path, durations, message):
    ns = 2 * SR  # 50 frames at hop 640
    spec = StreamSpec("content", (32,), 640, "units", durations=True)
    frames = np.repeat(np.arange(12) % 3, [5] * 8 + [3, 3, 2, 2])[:, None]
    bs = Bitstream.from_streams([StreamTokens.from_frames(spec, frames)], SR, ns, HASH)
    assert bs["content"].durations.tolist() == [5] * 8 + [3, 3, 2, 2]
    path = tmp_path / "runs.sbc"
    path.write_bytes(_with_durations(bs.to_bytes(), durations, 5))
    if message is None:
        back = read_sbc(path)
        assert back["content"].durations.tolist() == durations and back.toks.shape == (sum(durations), 1)
        return
    with pytest.raises(CodecError, match=message) as err:
        read_sbc(path)
    _one_line(err, str(path))


def test_run_lengths_out_of_range_are_refused(tmp_path):
    spec = StreamSpec("content", (32,), 640, "units", durations=True)
    frames = np.repeat(np.arange(12) % 3, [5] * 8 + [3, 3, 2, 2])[:, None]
    data = Bitstream.from_streams([StreamTokens.from_frames(spec, frames)], SR, 2 * SR, HASH).to_bytes()
    h = parse_header(data)
    out = bytearray(data)
    out[-h.streams[0].duration_bytes() :] = b"\xff" * h.streams[0].duration_bytes()  # 2^32-1 >= 5^12
    struct.pack_into("<I", out, h.size - 12, zlib.crc32(bytes(out[h.size :])))
    struct.pack_into("<I", out, h.size - 4, zlib.crc32(bytes(out[: h.size - 4])))
    path = tmp_path / "range.sbc"
    path.write_bytes(bytes(out))
    with pytest.raises(CodecError, match="stream content: run lengths out of range") as err:
        read_sbc(path)
    _one_line(err, str(path))


def _file(records, payloads, ns, model_hash=None):
    payload = b"".join(payloads)
    h = Header(3, SR, ns, HASH, records, zlib.crc32(payload), model_hash, len(payload))
    return build_header(h) + payload


def test_build_header_run_lengths_and_counts(tmp_path):
    """Headers built directly: run lengths summing short of the frame count, a units stream longer
    than the signal, payload sizes that do not match the counts."""
    spec = StreamSpec("content", (32,), 640, "units", durations=True)
    units = np.arange(10) % 32
    durations = np.array([2] * 10)  # 20 frames for a 50-frame signal
    payload = pack_stream(units, 32) + pack_stream(durations - 1, 2)
    rec = StreamRecord(spec, 10, False, 2, len(payload))
    path = tmp_path / "h.sbc"
    path.write_bytes(_file([rec], [payload], 2 * SR))
    with pytest.raises(CodecError, match="run lengths sum to 20 frames, 32000 samples give 50") as err:
        read_sbc(path)
    _one_line(err, str(path))
    path.write_bytes(_file([rec], [payload], 20 * 640))  # the same stream for a 20-frame signal
    assert read_sbc(path).toks.shape == (20, 1)
    with pytest.raises(ValueError, match="payload 10 bytes, 10 rows of \\[32\\] take 9"):
        _file([StreamRecord(spec, 10, False, 2, len(payload) + 1)], [payload + b"\0"], 2 * SR)
    with pytest.raises(ValueError, match="longest run 60 frames"):
        _file([StreamRecord(spec, 10, False, 60, 99)], [b"\0" * 99], 2 * SR)
    with pytest.raises(ValueError, match="only per-utterance streams"):
        _file([StreamRecord(StreamSpec("s", (2,), kind="utterance"), 1, False, 0, 1)], [b"\0"], SR)
    with pytest.raises(ValueError, match="2 codes in a per-utterance stream"):
        _file([rec, StreamRecord(StreamSpec("s", (2,), kind="utterance"), 2, False, 0, 2)], [payload, b"\0\0"], 2 * SR)
    with pytest.raises(ValueError, match="entropy-coded header needs the token models' hash"):
        _file([StreamRecord(spec, 10, True, 2, len(payload))], [payload], 2 * SR)


def test_duplicate_stream_names_are_refused_by_the_reader(tmp_path):
    """A header with two streams of one name (written by hand) is refused."""
    spec = StreamSpec("f0", (32,), 1280)
    rec = StreamRecord(spec, 13, False, 0, stream_bytes(13, 32))
    payload = b"\0" * rec.payload_bytes
    path = tmp_path / "dup.sbc"
    path.write_bytes(_file([rec, StreamRecord(spec, 13, False, 0, rec.payload_bytes)], [payload, payload], SR))
    with pytest.raises(CodecError, match="two streams with one name") as err:
        read_sbc(path)
    _one_line(err, str(path))


# ---------------------------------------------------------------------- the writer refuses what the reader refuses
def test_two_streams_with_one_name_are_refused_when_built():
    """LIBRARY BUG (reported): ``Bitstream.from_streams`` accepts two streams named ``f0`` and
    ``to_bytes`` writes a file that ``from_bytes`` then refuses ("two streams with one name")."""
    rng = np.random.default_rng(8)
    a = StreamTokens(StreamSpec("f0", (32,), 1280), rng.integers(0, 32, (13, 1)))
    b = StreamTokens(StreamSpec("f0", (1024,), 640), rng.integers(0, 1024, (25, 1)))
    with pytest.raises(ValueError, match="unique|one name|f0"):
        Bitstream.from_streams([a, b], SR, SR, HASH).to_bytes()


def test_run_lengths_off_the_frame_count_are_refused_when_written():
    """LIBRARY BUG (reported): run lengths summing to 20 frames for a 50-frame signal are written
    without complaint, and the reader refuses the file ("run lengths sum to 20 frames")."""
    spec = StreamSpec("content", (32,), 640, "units", durations=True)
    bs = Bitstream.from_streams([StreamTokens(spec, np.arange(10)[:, None], np.full(10, 2))], SR, 2 * SR, HASH)
    with pytest.raises(ValueError, match="run lengths"):
        bs.to_bytes()  # today: 78 bytes written, then Bitstream.from_bytes raises CodecError


# ---------------------------------------------------------------------- versions 1 and 2
def _single(n=120, sizes=(1000, 64), seed=9):
    rng = np.random.default_rng(seed)
    toks = np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)
    return Bitstream(toks, SR, 320, n * 320 - 7, list(sizes), HASH)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("entropy", [False, True])
def test_single_stream_files_read_as_one_stream_named_tokens(tmp_path, version, entropy):
    bs = _single()
    model = None
    if entropy:
        model = TokenModel.fit([bs.toks], [1000, 64])
        bs = Bitstream(bs.toks, SR, 320, bs.num_samples, [1000, 64], HASH, model)
    path = tmp_path / f"v{version}.sbc"
    data = bs.to_bytes(version=version)
    assert data[4] == version
    path.write_bytes(data)
    for m in ((model, {SINGLE_STREAM: model}) if entropy else (None,)):
        back = read_sbc(path, m, notices=False)
        assert back.layout.names == [SINGLE_STREAM] == list(back.token_dict())
        assert back["tokens"].spec == StreamSpec("tokens", (1000, 64), 320, "frames")
        assert np.array_equal(back.toks, bs.toks) and np.array_equal(back.token_dict()["tokens"], bs.toks)
        assert (back.hop_length, back.codebook_sizes, back.num_samples) == (320, [1000, 64], 120 * 320 - 7)
        assert back.token_model is m if not isinstance(m, dict) else back.token_model is model
    h = parse_header(data, notices=False)
    assert h.version == version and [r.spec.name for r in h.streams] == [SINGLE_STREAM]
    assert h.streams[0].count == 120 and h.entropy_coded == entropy
    info = peek_header(path, notices=False)
    assert list(info["streams"]) == ["tokens"] and info["frames"] == 120 and info["hop_length"] == 320
    assert info["codebook_sizes"] == [1000, 64] and info["version"] == version
    assert info["file_bytes"] == len(data) == bs.header_bytes(version=version) + bs.payload_bytes()
    if not entropy:
        assert bs.payload_bytes() == stream_bytes(120, 1000) + stream_bytes(120, 64) == 150 + 90
        assert info["streams"]["tokens"]["payload_bytes"] == 240
    expected = {1: 39 + 4 * 2, 2: 47 + 4 * 2, 3: 27 + 2 + 6 + 9 + 8 + 4 + 12}[version] + (8 if entropy else 0)
    assert bs.header_bytes(version=version) == expected


def test_legacy_versions_hold_one_frame_stream_only():
    bs, _, _ = _three_streams()
    for version in (1, 2):
        with pytest.raises(ValueError):
            bs.to_bytes(version=version)
    units = StreamTokens.from_frames(StreamSpec("tokens", (32,), 640, "units"), np.zeros((25, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="one frame stream"):
        Bitstream.from_streams([units], SR, SR, HASH).to_bytes(version=2)
