"""DP-SLM unit LM: the reference's token layout, scoring, the published sizes, training on
chapter chunks and a lexical minimal-pair test on a toy language."""

import math
import random

import pytest
import torch

from speechbrain_codec.lm.unit_lm import (
    BOS, UnitLM, decode_units, encode_units, lr_at, make_chunk, minimal_pair_accuracy, train_unit_lm,
)
from speechbrain_codec.utils import CodecError


def tiny(num_units=10, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return UnitLM(num_units, dim=32, num_layers=2, num_heads=4, num_kv_heads=4, ffn_dim=64, max_positions=128,
                  dropout=dropout)


def test_layout_bos_zero_units_plus_one():
    # frame-level units at 50 Hz: runs merged, BOS = 0 first, every unit + 1, no end token
    assert encode_units([17, 17, 17, 4, 0, 0, 99, 4], num_units=100) == [0, 18, 5, 1, 100, 5]
    assert BOS == 0 and decode_units([0, 18, 5, 1, 100, 5]) == [17, 4, 0, 99, 4]
    assert encode_units([3, 3], 10, dedup=False) == [0, 4, 4]
    lm = tiny(100)
    assert lm.model.config.vocab_size == 101 and lm.model.lm_head.bias is None
    assert lm.model.lm_head.weight.data_ptr() != lm.model.model.embed_tokens.weight.data_ptr()  # untied
    with pytest.raises(CodecError, match="outside 0..99"):
        encode_units([100], 100)


def test_published_sizes():
    # §2.4: 201.6 M (K = 100) ... 202.4 M (K = 500) ... 203.4 M (K = 1000) parameters
    for k, millions in ((100, 201.6), (500, 202.4), (1000, 203.4)):
        with torch.device("meta"):
            lm = UnitLM(k)
        assert abs(sum(p.numel() for p in lm.parameters()) / 1e6 - millions) < 0.05
        cfg = lm.model.config
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads,
                cfg.intermediate_size, cfg.rms_norm_eps, cfg.max_position_embeddings) == (1024, 12, 16, 16, 4096, 1e-6, 8000)
        assert cfg.rope_parameters["rope_theta"] == 10000.0 and cfg.head_dim == 64


def test_scoring_equals_manual_log_softmax_sum():
    lm = tiny().eval()
    seqs = [[3, 3, 4, 9], [7], [0, 1, 0, 2, 5]]  # the first has a run: scored deduplicated
    got = lm.log_likelihood(seqs)
    for s, value in zip(seqs, got):
        ids = encode_units(s, 10)
        with torch.no_grad():
            logp = lm.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
        manual = sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)))  # first unit included, no EOS
        assert float(value) == pytest.approx(manual, abs=1e-4)
    # padding does not change a score: the batch equals one at a time; normalise = per unit
    single = torch.cat([lm.log_likelihood([s]) for s in seqs])
    torch.testing.assert_close(got, single, atol=1e-4, rtol=0)
    per_unit = lm.log_likelihood(seqs, normalize=True)
    torch.testing.assert_close(per_unit, got / torch.tensor([3.0, 1.0, 5.0]), atol=1e-5, rtol=0)
    with pytest.raises(CodecError, match="empty"):
        lm.log_likelihood([[]])


def test_residual_dropout_only_in_training():
    lm = tiny(dropout=0.5)
    ids = torch.tensor([[0, 3, 4, 5, 6]])
    lm.train()
    a, b = lm.model(input_ids=ids).logits, lm.model(input_ids=ids).logits
    assert not torch.allclose(a, b)
    lm.eval()
    torch.testing.assert_close(lm.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)


def test_schedule_and_chunks():
    assert lr_at(0) == 1e-7 and lr_at(1000) == pytest.approx((1e-7 + 5e-4) / 2)
    assert lr_at(2000) == 5e-4 and lr_at(10000) == pytest.approx(1e-5) and lr_at(50000) == 1e-5
    chapter = [[0, 1, 2, 3], [0, 4, 5], [0, 6, 7, 8, 9]]
    rng = random.Random(0)
    for _ in range(20):
        c = make_chunk(chapter, 0, rng, 6)
        flat = sum(chapter, [])
        assert len(c) == 6 and any(flat[i : i + 6] == c for i in range(4))  # a window from utterance 0
    last = make_chunk(chapter, 2, random.Random(1), 100)  # the chapter's end: shorter, a suffix
    assert 1 <= len(last) <= 5 and last == chapter[2][5 - len(last):]


def test_chunk_loss_skips_first_target():
    lm = tiny().eval()
    chunks = [[0, 3, 4, 5, 6], [2, 3, 9, 9, 1]]
    with torch.no_grad():
        lp, m = lm.token_log_probs(chunks)
        expected, got = -(lp[:, 1:]).mean(), lm.chunk_loss(chunks)
    assert float(got) == pytest.approx(float(expected), abs=1e-5)


def test_toy_language_prefers_words_over_minimal_pairs(tmp_path):
    # a toy lexicon of 6 "words" (unit strings); utterances are random word sequences of one chapter
    words = [[1, 2, 3], [4, 5, 6, 7], [8, 9, 1], [2, 6, 4], [7, 3, 8, 5], [9, 4, 2]]
    rng = random.Random(0)
    train = {f"1-1-{i:04d}": [u for _ in range(3) for u in rng.choice(words)] for i in range(200)}
    valid = {f"2-1-{i:04d}": [u for _ in range(3) for u in rng.choice(words)] for i in range(10)}
    lm = tiny()
    log = train_unit_lm(lm, train, valid, steps=120, batch_size=16, grad_accumulation=1, chunk_len=24,
                        peak_lr=3e-3, start_lr=1e-4, final_lr=1e-4, warmup=10, decay=100, valid_every=40)
    assert log["losses"][-1] < log["losses"][0] * 0.6
    assert log["best_valid"] < math.log(11)  # better than uniform over K + 1
    # minimal pairs: one unit of the word changed, the result is no word of the lexicon
    pairs = []
    for w in words:
        for pos in range(len(w)):
            for sub in range(10):
                nw = list(w)
                nw[pos] = sub
                if nw != w and nw not in words and nw[pos] != (nw[pos - 1] if pos else None):
                    pairs.append((w, nw))
                    break
    result = minimal_pair_accuracy(lm, pairs)
    assert result["pairs"] == len(pairs) >= 18 and result["accuracy"] >= 0.9
    # an untrained LM of the same size does not
    assert minimal_pair_accuracy(tiny(seed=1), pairs)["accuracy"] < result["accuracy"]
    # save / load round trip gives the same scores
    lm.save_pretrained(tmp_path / "ulm")
    again = UnitLM.from_pretrained(tmp_path / "ulm")
    torch.testing.assert_close(again.log_likelihood([w for w, _ in pairs]), lm.log_likelihood([w for w, _ in pairs]))


def test_minimal_pair_ties_count_half():
    lm = tiny()
    assert minimal_pair_accuracy(lm, [([1, 2], [1, 2])])["accuracy"] == 0.5
    with pytest.raises(CodecError):
        minimal_pair_accuracy(lm, [])
    with pytest.raises(CodecError, match="no unit_lm.json"):
        UnitLM.from_pretrained("/nonexistent")
