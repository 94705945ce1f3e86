"""Token LMs: tokenizers, training entry point, and log-likelihood scoring that ranks real
words above corrupted ones and structured unit sequences above shuffled ones after training."""

from __future__ import annotations

import os
import random
import re

import pytest
import torch

from speechbrain_codec.lm import TextTokenizer, TokenLM, UnitTokenizer, train_lm
from speechbrain_codec.lm.train import main as train_main
from speechbrain_codec.utils import CodecError


def _dictionary_words() -> list[str]:
    import pocketsphinx

    path = os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")
    with open(path, encoding="utf-8") as f:
        words = {re.sub(r"\(\d+\)$", "", line.split()[0]) for line in f}
    return sorted(w for w in words if w.isalpha())


def test_text_lm_ranks_words_above_corruptions(tmp_path):
    torch.set_num_threads(2)
    words = _dictionary_words()  # 117k English words from the pocketsphinx wheel
    held_out = {"speech", "codec", "language", "quantizer", "whisper"}
    rng = random.Random(0)
    train = rng.sample([w for w in words if w not in held_out], 5000)
    # the minimal pair's word family, a few times as a frequent word would occur in running text
    train += [w for w in words if w.startswith("manufact")] * 5
    tok = TextTokenizer.train(train, tmp_path, vocab_size=200)
    torch.manual_seed(0)  # initialisation independent of the tests run before (checked with seeds 0, 1, 2)
    lm = TokenLM(tok.vocab_size, dim=128, num_layers=2, num_heads=4, max_len=64, dropout=0.0)
    losses = train_lm(lm, [tok.encode(w) for w in train], steps=800, batch_size=64, lr=3e-3)
    assert sum(losses[-20:]) / 20 < losses[0] - 1.0
    pairs = [("manufacture", "manufelture"), ("manufacturing", "manufelturing"),  # seen in training
             ("speech", "spzech"), ("codec", "cxdec"), ("language", "lqngvage"), ("quantizer", "qxantizer"),
             ("whisper", "whiszper")]  # held out: generalisation, not memory
    scores = lm.log_likelihood([tok.encode(w) for p in pairs for w in p]).view(-1, 2)
    assert (scores[:, 0] > scores[:, 1]).all(), scores
    lm.save_pretrained(tmp_path / "lm")
    again = TokenLM.from_pretrained(tmp_path / "lm")
    torch.testing.assert_close(again.log_likelihood([tok.encode("speech")]), lm.log_likelihood([tok.encode("speech")]))


def test_unit_lm_prefers_the_training_grammar():
    random.seed(0)
    motifs = [[random.randrange(50) for _ in range(4)] for _ in range(6)]
    corpus = [sum((motifs[random.randrange(6)] for _ in range(5)), []) for _ in range(300)]
    tok = UnitTokenizer(50)
    lm = TokenLM(tok.vocab_size, dim=64, num_layers=2, num_heads=4, max_len=64, dropout=0.0)
    train_lm(lm, [tok.encode(u) for u in corpus], steps=150, batch_size=32, lr=3e-3)
    seen = sum(motifs[:5], [])
    shuffled = seen[:]
    random.Random(1).shuffle(shuffled)
    a, b = lm.log_likelihood([tok.encode(seen), tok.encode(shuffled)], normalize=True)
    assert a > b + 1.0, (a, b)
    assert UnitTokenizer(50, dedup=True).encode([1, 1, 2]) == [4, 5]
    with pytest.raises(CodecError, match="outside"):
        tok.encode([50])


def test_train_entry_point_and_bad_input(tmp_path, capsys):
    units = tmp_path / "units.txt"
    units.write_text("1 2 3 4\n4 3 2 1\n" * 10)
    assert train_main(["--units", str(units), "--num_units", "5", "--out", str(tmp_path / "ulm"), "--dim", "16",
                       "--layers", "1", "--heads", "2", "--max_len", "16", "--steps", "3", "--batch_size", "4"]) == 0
    assert (tmp_path / "ulm" / "units.json").is_file() and (tmp_path / "ulm" / "config.json").is_file()
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    assert train_main(["--text", str(text), "--vocab_size", "20", "--out", str(tmp_path / "tlm"), "--dim", "16",
                       "--layers", "1", "--heads", "2", "--max_len", "32", "--steps", "2", "--batch_size", "2"]) == 0
    assert (tmp_path / "tlm" / "tokenizer.model").is_file()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe caf\xe9\n")
    assert train_main(["--text", str(bad), "--out", str(tmp_path / "x")]) == 1
    assert "not UTF-8" in capsys.readouterr().err and not (tmp_path / "x").exists()
