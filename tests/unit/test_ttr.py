"""TTR: word-piece spans from alignments, the summariser, its pretraining on real bundled speech
aligned offline, and the frozen TTR loss training a small codec."""

from __future__ import annotations

import csv

import torch

from speechbrain_codec.alignment import PocketsphinxAligner, Word
from speechbrain_codec.dataio import load_audio
from speechbrain_codec.encoders import SSLEncoder
from speechbrain_codec.losses.ttr import BertTargets, TTRLoss, TTRSummariser, piece_spans, pretrain_summariser
from tests.conftest import MINI_DATA, tiny_codec
from tests.tiny_models import tiny_bert
from tests.unit.test_ssl import _save


def test_piece_spans_split_words_evenly_and_clamp():
    spans = piece_spans([Word(0.0, 0.3, "a"), Word(0.3, 0.9, "bc"), Word(1.0, 1.2, "x")], [1, 3, 0], n_frames=40)
    assert spans == [(0, 15), (14, 25), (24, 35), (34, 40)]  # round() half-to-even, as the reference
    # a piece that starts in the clip's last 10 ms still gets the last frame (not an empty span)
    assert piece_spans([Word(0.78, 0.8, "a")], [1], n_frames=39) == [(38, 39)]


def _setup(tmp_path):
    torch.manual_seed(0)
    ssl = SSLEncoder(_save("wavlm", tmp_path / "wavlm"), layers=3)
    bert = BertTargets(str(tiny_bert(tmp_path / "bert")))
    return ssl, bert, TTRSummariser(dim=16, num_heads=2, ffn_dim=32, num_layers=2, dropout=0.0)


def test_pretraining_on_aligned_real_speech_lowers_the_loss(tmp_path):
    ssl, bert, summ = _setup(tmp_path)
    with open(MINI_DATA / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    aligner, items = PocketsphinxAligner(), []
    for row in rows:
        if row["lang"] == "en" and not aligner.missing_words(row["text"]) and float(row["duration"]) < 6:
            sig = load_audio(MINI_DATA / row["path"], 16000, notices=False)
            items.append((sig, aligner.align(sig.numpy(), 16000, row["text"])))
        if len(items) == 3:
            break
    assert len(items) == 3
    losses = pretrain_summariser(summ, ssl, bert, items, steps=60, lr=1e-3)
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10, (losses[:10], losses[-10:])


def test_ttr_loss_trains_a_codec_through_a_frozen_summariser(tmp_path):
    ssl, bert, summ = _setup(tmp_path)
    loss_fn = TTRLoss(summ, ssl, bert)
    codec = tiny_codec()
    sig = torch.randn(1, 16000) * 0.1
    words = [[Word(0.1, 0.4, "the"), Word(0.45, 0.9, "codec")]]
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    values = []
    for _ in range(12):
        loss = loss_fn(codec(sig).sig, words)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert min(values[-3:]) < values[0], values
    assert all(p.grad is None for p in summ.parameters())
    assert not summ.training


def test_ttr_frames_are_wavlm_of_the_audio_padded_by_40_on_both_sides(tmp_path):
    """lmloss.md §2.7: frame k of WavLM is centred at 10 + 20k ms (40 zeros each side, once)."""
    from transformers import AutoModel

    ssl, bert, summ = _setup(tmp_path)
    seen = []
    summ.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    sig = 0.1 * torch.randn(1, 8000)
    TTRLoss(summ, ssl, bert)(sig, [[Word(0.05, 0.3, "the")]])
    ref = AutoModel.from_pretrained(ssl.source).eval()
    with torch.no_grad():
        hs = ref(torch.nn.functional.pad(sig, (40, 40)), output_hidden_states=True).hidden_states[3]
    torch.testing.assert_close(seen[0], hs[0], atol=1e-5, rtol=1e-5)
