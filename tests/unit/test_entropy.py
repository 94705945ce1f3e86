"""Entropy-coded bitstreams: lossless round trip, size near the model's ideal, errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.bitstream import Bitstream, peek_header, read_sbc, write_sbc
from speechbrain_codec.cli import main
from speechbrain_codec.entropy import TokenModel
from speechbrain_codec.utils import CodecError


def skewed_tokens(n, sizes, seed=0, dist_seed=0):
    """Tokens from fixed peaked distributions (``dist_seed``), sampled with ``seed``."""
    dist_rng, rng = np.random.default_rng(dist_seed), np.random.default_rng(seed)
    cols = []
    for size in sizes:
        p = dist_rng.dirichlet(np.full(size, 0.1))  # peaked, as real codec tokens are
        cols.append(rng.choice(size, size=n, p=p))
    return np.stack(cols, axis=1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(2, 300), min_size=1, max_size=3), st.integers(0, 400), st.integers(0, 1000))
def test_round_trip_any_tokens(sizes, n, seed):
    train = skewed_tokens(500, sizes, seed)
    model = TokenModel.fit([train], sizes)
    toks = skewed_tokens(n, sizes, seed + 1)  # may hold tokens never seen in training
    assert np.array_equal(model.decode(model.encode(toks), n), toks)


def test_coded_size_is_near_ideal_and_below_nominal():
    sizes = [1000, 64]
    model = TokenModel.fit([skewed_tokens(20000, sizes)], sizes)
    toks = skewed_tokens(3000, sizes, seed=1)
    coded_bits = 8 * len(model.encode(toks))
    ideal = model.ideal_bits(toks)
    nominal = toks.shape[0] * (np.log2(1000) + 6)
    assert ideal <= coded_bits <= ideal * 1.01 + 64
    assert coded_bits < 0.7 * nominal


def test_entropy_bitstream_errors(tmp_path):
    sizes = [256]
    model = TokenModel.fit([skewed_tokens(2000, sizes)], sizes)
    toks = skewed_tokens(300, sizes, seed=3)
    bs = Bitstream(toks, 16000, 320, 300 * 320, sizes, "00" * 8, model)
    path = tmp_path / "e.sbc"
    write_sbc(path, bs)
    assert np.array_equal(read_sbc(path, model).toks, toks)
    header = peek_header(path)
    assert header["entropy_coded"] and header["payload_bytes"] == len(model.encode(toks))
    with pytest.raises(CodecError, match="entropy-coded; decode it with its checkpoint"):
        read_sbc(path)
    other = TokenModel.fit([skewed_tokens(2000, sizes, seed=9, dist_seed=9)], sizes)
    with pytest.raises(CodecError, match="another token model"):
        read_sbc(path, other)
    data = path.read_bytes()
    (tmp_path / "cut.sbc").write_bytes(data[:-4])
    with pytest.raises(CodecError, match="truncated: the header announces"):  # version 2 stores the length
        read_sbc(tmp_path / "cut.sbc", model)
    with pytest.raises(CodecError, match="truncated"):  # info (without the model) sees it too
        peek_header(tmp_path / "cut.sbc")
    # a version-1 file (no payload length) still reads, and its truncation fails the payload CRC
    (tmp_path / "v1.sbc").write_bytes(bs.to_bytes(version=1))
    assert np.array_equal(read_sbc(tmp_path / "v1.sbc", model).toks, toks)
    (tmp_path / "v1cut.sbc").write_bytes(bs.to_bytes(version=1)[:-4])
    with pytest.raises(CodecError, match="checksum"):
        read_sbc(tmp_path / "v1cut.sbc", model)


def test_cli_fit_entropy_encode_decode(checkpoint, mini_clip, tmp_path, capsys):
    from speechbrain_codec.dataio import write_manifest

    rows = [{"ID": "a", "duration": 3.0, "wav": f"{{data_root}}/{mini_clip.name}", "spk_id": "s", "lang": "en", "text": "x"}]
    write_manifest(tmp_path / "m.csv", rows)
    plain, coded = tmp_path / "p.sbc", tmp_path / "c.sbc"
    assert main(["encode", str(mini_clip), str(coded), "--entropy", "--checkpoint", str(checkpoint)]) == 1
    assert "fit-entropy" in capsys.readouterr().err
    assert main(["fit-entropy", "--manifest", str(tmp_path / "m.csv"), "--data-root", str(mini_clip.parent),
                 "--checkpoint", str(checkpoint)]) == 0
    assert (checkpoint / "entropy_model.json").is_file()
    assert main(["encode", str(mini_clip), str(plain), "--checkpoint", str(checkpoint)]) == 0
    assert main(["encode", str(mini_clip), str(coded), "--entropy", "--checkpoint", str(checkpoint)]) == 0
    for name in ("p", "c"):
        assert main(["decode", str(tmp_path / f"{name}.sbc"), str(tmp_path / f"{name}.wav"), "--checkpoint", str(checkpoint)]) == 0
    assert (tmp_path / "p.wav").read_bytes() == (tmp_path / "c.wav").read_bytes()  # lossless
    capsys.readouterr()
    assert main(["info", str(coded), str(plain), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts[str(coded)]["entropy_coded"] is True and facts[str(plain)]["entropy_coded"] is False
    # the model was fitted on this very clip, so coding it must beat the nominal rate
    assert facts[str(coded)]["payload_bitrate"] < facts[str(plain)]["nominal_bitrate"]
