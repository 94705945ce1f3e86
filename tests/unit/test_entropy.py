"""Entropy-coded bitstreams: lossless round trip, size near the model's ideal, errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.bitstream import Bitstream, peek_header, read_sbc, write_sbc
from speechbrain_codec.cli import main
from speechbrain_codec.entropy import NGramTokenModel, TokenModel, fit_token_model, load_token_model, token_classes
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


# ---------------------------------------------------------------------- n-gram token model
BLOCK = NGramTokenModel.BLOCK


def markov_tokens(n, size, seed=0, chain_seed=0, concentration=0.05):
    """A first-order Markov chain over ``size`` symbols with peaked transitions (fixed by
    ``chain_seed``), sampled with ``seed``: ``[n, 1]``."""
    trans = np.random.default_rng(chain_seed).dirichlet(np.full(size, concentration), size=size)
    cdf = np.cumsum(trans, axis=1)
    u = np.random.default_rng(seed).random(n)
    x = np.zeros(n, dtype=np.int64)
    for t in range(1, n):
        x[t] = min(int(np.searchsorted(cdf[x[t - 1]], u[t])), size - 1)
    return x[:, None]


def conditional_entropy(toks, size):
    """Empirical H(x_t | x_{t-1}) of one long sequence (bits per symbol)."""
    x = toks[:, 0]
    joint = np.zeros((size, size))
    np.add.at(joint, (x[:-1], x[1:]), 1)
    p = joint / joint.sum()
    row = p.sum(1, keepdims=True)
    nz = p > 0
    return float(-(p[nz] * np.log2((p / np.where(row > 0, row, 1))[nz])).sum())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([2, 3, 7, 64, 100, 255, 256, 1000, 1024]), min_size=1, max_size=3),
       st.sampled_from([0, 1, 2, 37, BLOCK + 29]), st.integers(1, 4), st.sampled_from(["kn", "wb"]),
       st.booleans(), st.sampled_from([0, 3, 32]), st.integers(0, 1000))
def test_ngram_round_trip_any_tokens(sizes, n, order, smoothing, cross, n_classes, seed):
    # fitted on a few codes of each codebook only: most test tokens (and contexts) are unseen
    train = [skewed_tokens(300, [max(2, s // 4) for s in sizes], seed + i) for i in range(2)]
    model = NGramTokenModel.fit(train, sizes, order=order, smoothing=smoothing, cross_codebook=cross,
                                n_classes=n_classes)
    rng = np.random.default_rng(seed)
    toks = np.stack([rng.integers(0, s, n) for s in sizes], axis=1) if n else np.zeros((0, len(sizes)), dtype=np.int64)
    toks[: n // 2] = skewed_tokens(n // 2, sizes, seed)  # half from the fitted kind of data
    data = model.encode(toks)
    decoded = model.decode(data, n)
    assert decoded.dtype == np.int64 and decoded.shape == (n, len(sizes))
    assert np.array_equal(decoded, toks)
    coded, ideal = 8 * len(data), model.ideal_bits(toks)
    assert abs(coded - ideal) <= 0.01 * ideal + 64  # a few bytes of range-coder flush
    if n == 0:
        assert data == b"" and ideal == 0.0


def test_ngram_empty_and_one_frame():
    model = NGramTokenModel.fit([markov_tokens(500, 10)], [10], order=3)
    assert model.encode(np.zeros((0, 1), dtype=np.int64)) == b""
    assert model.decode(b"", 0).shape == (0, 1)
    one = np.array([[7]])
    assert model.decode(model.encode(one), 1).tolist() == [[7]]
    # the first frame is predicted from the begin-of-utterance context, not uniformly
    assert model.ideal_bits(np.array([[0]])) < np.log2(10) - 1  # every training sequence starts with 0


def test_ngram_probabilities_are_the_documented_ones():
    toks = np.array([[0], [1], [0], [1]])  # bigrams (BOS,0) (0,1) (1,0) (0,1) over N = 3
    wb = NGramTokenModel.fit([toks], [3], order=2, smoothing="wb", n_classes=0)
    # Witten-Bell: P0 = (c + types / N) / (4 + 2) = [4/9, 4/9, 1/9]; P(. | 0) = (c + 1 * P0) / (2 + 1)
    assert np.allclose(wb.probabilities(toks, 0)[1], [4 / 27, 22 / 27, 1 / 27], rtol=0, atol=1e-15)
    kn = NGramTokenModel.fit([toks], [3], order=2, smoothing="kn", n_classes=0)
    # Kneser-Ney: top-order count-of-counts n1=2, n2=1 (n3 = 0) -> D = Y = 0.5; continuation counts
    # [2, 1, 0] (n1=n2=1 -> D = 1/3): P0 = [(2-1/3)/3, (1-1/3)/3, 0] + (2/3)/3 * 1/3 = [17, 8, 2]/27;
    # P(. | 0) = [0, (2-0.5)/2, 0] + (0.5/2) * P0
    assert np.allclose(kn.probabilities(toks, 0)[1], [17 / 108, 89 / 108, 2 / 108], rtol=0, atol=1e-15)
    # the first frame: context BOS seen once (with 0): P = [(1-0.5)/1, 0, 0] + (0.5/1) * P0
    assert np.allclose(kn.probabilities(toks, 0)[0], [44 / 54, 8 / 54, 2 / 54], rtol=0, atol=1e-15)


def test_ngram_probabilities_are_normalised_and_positive():
    sizes = [1000, 7]
    model = NGramTokenModel.fit([skewed_tokens(3000, sizes)], sizes, order=3, cross_codebook=True)
    toks = np.random.default_rng(1).integers(0, 7, (300, 2))  # codebook 0 sees only codes 0..6 here
    for k in range(2):
        p = model.probabilities(toks, k)
        assert np.allclose(p.sum(1), 1.0, rtol=0, atol=1e-12) and p.min() >= 2.0 ** -21


def test_ngram_beats_order0_on_a_markov_chain():
    size = 64
    train = [markov_tokens(4000, size, seed) for seed in range(5)]
    test = markov_tokens(4000, size, 100)
    order0 = TokenModel.fit(train, [size])
    ngram = NGramTokenModel.fit(train, [size], order=2)
    bits0, bits2 = 8 * len(order0.encode(test)), 8 * len(ngram.encode(test))
    h1 = conditional_entropy(test, size) * test.shape[0]
    assert bits2 < 0.6 * bits0  # the chain's transitions are far more peaked than its marginal
    assert bits2 < 1.15 * h1  # and the bigram gets near the chain's conditional entropy
    higher = NGramTokenModel.fit(train, [size], order=3)  # a useless extra order costs little
    assert 8 * len(higher.encode(test)) < 1.05 * bits2


def test_ngram_beats_order0_on_runs():
    rng = np.random.default_rng(0)

    def runs(n_runs, seed):
        r = np.random.default_rng(seed)
        return np.repeat(r.integers(0, 300, n_runs), r.geometric(0.15, n_runs))[:, None]

    train, test = [runs(2000, s) for s in range(3)], runs(500, 9)
    order0 = TokenModel.fit(train, [300]).ideal_bits(test)
    for smoothing in ("kn", "wb"):
        ngram = NGramTokenModel.fit(train, [300], order=2, smoothing=smoothing)
        assert ngram.ideal_bits(test) < 0.4 * order0, smoothing
    del rng


def test_ngram_is_not_much_worse_on_iid_data():
    sizes = [300, 1000]
    train, test = skewed_tokens(20000, sizes), skewed_tokens(3000, sizes, seed=1)
    order0 = TokenModel.fit([train], sizes).ideal_bits(test)
    for opts, bound in (({"order": 2}, 1.04), ({"order": 3}, 1.05), ({"order": 4}, 1.05),
                        ({"order": 2, "n_classes": 0}, 1.04), ({"order": 2, "smoothing": "wb"}, 1.06)):
        ngram = NGramTokenModel.fit([train], sizes, **opts).ideal_bits(test)
        assert ngram < bound * order0, opts
    uniform = test.shape[0] * np.log2(sizes).sum()
    assert order0 < 0.8 * uniform  # (the data are skewed: doing nothing would not pass the bound above)


def test_ngram_cross_codebook_conditioning():
    # codebook 1 is (nearly) a function of codebook 0 in the same frame, as residual stages correlate
    rng = np.random.default_rng(0)

    def pair(n, seed):
        r = np.random.default_rng(seed)
        a = r.integers(0, 50, n)
        b = np.where(r.random(n) < 0.9, (a * 7) % 50, r.integers(0, 50, n))
        return np.stack([a, b], axis=1)

    train, test = [pair(5000, s) for s in range(3)], pair(2000, 9)
    plain = NGramTokenModel.fit(train, [50, 50], order=2)
    cross = NGramTokenModel.fit(train, [50, 50], order=2, cross_codebook=True)
    assert np.array_equal(cross.decode(cross.encode(test), 2000), test)
    b_plain, b_cross = plain.probabilities(test, 1), cross.probabilities(test, 1)
    bits = [-np.log2(p[np.arange(2000), test[:, 1]]).sum() for p in (b_plain, b_cross)]
    assert bits[1] < 0.35 * bits[0]
    # codebook 0 is coded the same either way
    assert np.array_equal(plain.probabilities(test, 0), cross.probabilities(test, 0))
    del rng


def test_ngram_save_load_and_hash(tmp_path):
    sizes = [100, 9]
    model = NGramTokenModel.fit([skewed_tokens(2000, sizes), skewed_tokens(300, sizes, 5)], sizes, order=3,
                                cross_codebook=True)
    toks = skewed_tokens(400, sizes, seed=2)
    model.save(tmp_path / "m.json")
    blob = json.loads((tmp_path / "m.json").read_text())
    assert blob["type"] == "ngram" and blob["hash"] == model.hash and len(model.hash) == 16
    assert isinstance(blob["ngrams"][0]["count"], str)  # sparse counts, one string per column
    for loaded in (load_token_model(tmp_path / "m.json"), NGramTokenModel.load(tmp_path / "m.json")):
        assert isinstance(loaded, NGramTokenModel) and loaded.hash == model.hash
        assert loaded.codebook_sizes == sizes and loaded.order == 3 and loaded.cross_codebook
        assert loaded.encode(toks) == model.encode(toks)
    # the hash covers every option and the counts, and does not drift between versions
    tiny = NGramTokenModel.fit([np.array([[0], [1], [0], [1]])], [3], order=2)
    assert tiny.hash == "d7df42e0565c237d"
    others = {NGramTokenModel.fit([np.array([[0], [1], [0], [1]])], [3], **o).hash
              for o in ({"order": 3}, {"order": 2, "smoothing": "wb"})}
    others.add(NGramTokenModel.fit([np.array([[0], [1], [0], [0]])], [3], order=2).hash)
    others.add(NGramTokenModel.fit([np.array([[0], [1], [0], [1]])], [4], order=2).hash)
    assert len(others) == 4 and tiny.hash not in others
    assert tiny.hash != TokenModel.fit([np.array([[0], [1], [0], [1]])], [3]).hash


def test_order0_type_field_and_old_files(tmp_path):
    sizes = [5, 3]
    model = TokenModel.fit([skewed_tokens(200, sizes)], sizes)
    model.save(tmp_path / "new.json")
    assert json.loads((tmp_path / "new.json").read_text())["type"] == "order0"
    # a file written before "type" existed
    (tmp_path / "old.json").write_text(json.dumps({"smoothing": 1.0, "hash": model.hash,
                                                   "counts": [c.astype(int).tolist() for c in model.counts]}))
    toks = skewed_tokens(50, sizes, seed=1)
    for path in ("new.json", "old.json"):
        for loaded in (load_token_model(tmp_path / path), TokenModel.load(tmp_path / path)):
            assert type(loaded) is TokenModel and loaded.hash == model.hash
            assert loaded.encode(toks) == model.encode(toks)


def test_fit_token_model_dispatches():
    toks = [markov_tokens(300, 8)]
    assert type(fit_token_model("order0", toks, [8], smoothing=0.5)) is TokenModel
    m = fit_token_model("ngram", toks, [8], order=4, smoothing="wb")
    assert type(m) is NGramTokenModel and (m.order, m.smoothing) == (4, "wb")
    with pytest.raises(CodecError, match="unknown token model kind 'lstm'"):
        fit_token_model("lstm", toks, [8])


def test_corrupt_token_model_files(tmp_path):
    model = NGramTokenModel.fit([markov_tokens(300, 8)], [8], order=2)
    model.save(tmp_path / "good.json")
    blob = json.loads((tmp_path / "good.json").read_text())

    def write(name, content):
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
        return tmp_path / name

    counts = blob["ngrams"][0]["count"].split()
    counts[0] = str(int(counts[0]) + 1)
    cases = {
        tmp_path / "missing.json": "no entropy model",
        write("text.json", "not json {"): "not an entropy model",
        write("list.json", [1, 2]): "not an entropy model",
        write("nokey.json", {k: v for k, v in blob.items() if k != "order"}): "not an entropy model",
        write("counts.json", {**blob, "ngrams": [{**blob["ngrams"][0], "count": " ".join(counts)}]}): "corrupt entropy model",
        write("badtok.json", {**blob, "ngrams": [{**blob["ngrams"][0], "token": "x y"}]}): "not an entropy model",
        write("range.json", {**blob, "codebook_sizes": [2]}): "not an entropy model",
        write("kind.json", {**blob, "type": "lstm"}): "unknown token model type 'lstm'",
        write("order0.json", {"type": "order0", "smoothing": 1.0, "counts": "abc"}): "not an entropy model",
    }
    for path, message in cases.items():
        with pytest.raises(CodecError, match=message) as err:
            load_token_model(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), err.value
    with pytest.raises(CodecError, match="read it with load_token_model"):
        TokenModel.load(tmp_path / "good.json")  # an n-gram file through the order-0 loader
    with pytest.raises(CodecError, match="read it with load_token_model"):
        NGramTokenModel.load(tmp_path / "order0.json")


def grouped_chain(n, seed, groups=8, members=40):
    """A Markov chain whose transitions depend on the previous token's group only: token =
    group * members + member, the next group from a peaked matrix, the member uniform."""
    trans = np.random.default_rng(0).dirichlet(np.full(groups, 0.1), size=groups)
    rng = np.random.default_rng(seed)
    g = np.zeros(n, dtype=np.int64)
    for t in range(1, n):
        g[t] = rng.choice(groups, p=trans[g[t - 1]])
    return (g * members + rng.integers(0, members, n))[:, None]


def test_token_classes_recover_groups_and_help_sparse_contexts():
    size = 8 * 40
    train, test = [grouped_chain(3000, s) for s in range(2)], grouped_chain(3000, 9)  # ~19 per context
    bigrams = np.zeros((size + 1, size))
    for x in train:
        np.add.at(bigrams, (np.r_[size, x[:-1, 0]], x[:, 0]), 1)
    classes = token_classes(bigrams, 8)
    truth = np.arange(size) // 40
    # the groups seen enough (group 1 is rare: 13 of 6000 tokens) are recovered: nearly no class
    # mixes them (purity: the share of tokens in their class's majority group)
    seen = bigrams[:size].sum(1) >= 5
    table = np.zeros((8, 8))
    np.add.at(table, (classes[seen], truth[seen]), 1)
    assert len(set(truth[seen].tolist())) == 7 and (table.max(0) > 0).sum() == 7
    assert table.max(1).sum() >= 0.98 * seen.sum()
    plain = NGramTokenModel.fit(train, [size], order=2, n_classes=0).ideal_bits(test)
    with_classes = NGramTokenModel.fit(train, [size], order=2, n_classes=8)
    assert with_classes.ideal_bits(test) < 0.92 * plain
    assert np.array_equal(with_classes.decode(with_classes.encode(test), 3000), test)


def test_ngram_on_a_huge_codebook_skips_classes():
    """A 65536-code codebook (FSQ [2]*16, 4 x 2^16 speaker codes) fits without the dense
    bigram table classes need (it would take 32 GiB) and still round-trips."""
    from speechbrain_codec.entropy import MAX_CLASSED_CODES, fit_token_model

    rng = np.random.default_rng(0)
    toks = [rng.integers(0, 2**16, (300, 1)) for _ in range(2)]
    model = fit_token_model("ngram", toks, [2**16], order=2)
    assert 2**16 > MAX_CLASSED_CODES
    data = model.encode(toks[1])
    assert np.array_equal(model.decode(data, 300), toks[1])
