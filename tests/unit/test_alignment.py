"""Forced alignment: one format (TextGrid ``words`` tier / JSON), the offline pocketsphinx
backend on real speech, the CTC backend's code path, and the MFA backend's command and parsing."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from speechbrain_codec.alignment import _clean_words
from speechbrain_codec.alignment import (CTCAligner, MFAAligner, PocketsphinxAligner, Word, energy_edges,
                                         read_alignment, read_textgrid, write_alignment, write_textgrid)
from speechbrain_codec.dataio import load_audio
from speechbrain_codec.utils import CodecError
from tests.tiny_models import tiny_ctc

WORDS = [Word(0.1, 0.42, "hello"), Word(0.5, 0.93, "world")]


def test_textgrid_and_json_round_trip(tmp_path):
    write_textgrid(tmp_path / "a.TextGrid", WORDS, duration=1.2)
    assert read_textgrid(tmp_path / "a.TextGrid") == WORDS  # silences (empty intervals) skipped
    assert read_alignment(tmp_path / "a.TextGrid") == WORDS
    write_alignment(tmp_path / "a.json", WORDS)
    assert read_alignment(tmp_path / "a.json") == WORDS
    with pytest.raises(CodecError, match="no tier 'phones'"):
        read_textgrid(tmp_path / "a.TextGrid", tier="phones")
    with pytest.raises(CodecError, match="no such"):
        read_alignment(tmp_path / "missing.json")


def test_mfa_command_corpus_and_textgrid_parsing(tmp_path, monkeypatch):
    mfa = MFAAligner()
    cmd = mfa.command("corpus", "out")
    assert cmd[:2] == ["mfa", "align"] and cmd[-3:] == ["english_us_arpa", "english_us_arpa", "out"]
    corpus = mfa.prepare_corpus(tmp_path / "corpus", {"u1": (np.zeros(1600, np.float32), 16000, "Hello world.")})
    assert (corpus / "u1.wav").is_file() and (corpus / "u1.lab").read_text() == "Hello world.\n"
    with pytest.raises(CodecError, match="empty transcript"):
        mfa.prepare_corpus(tmp_path / "c2", {"u2": (np.zeros(10, np.float32), 16000, " ")})
    monkeypatch.setenv("PATH", "")
    with pytest.raises(CodecError, match="not on PATH.*mfa align"):
        mfa.run(corpus, tmp_path / "out")
    (tmp_path / "out" / "spk").mkdir(parents=True)
    write_textgrid(tmp_path / "out" / "spk" / "u1.TextGrid", WORDS, 1.0)  # MFA's output layout
    assert MFAAligner.parse(tmp_path / "out") == {"u1": WORDS}


def _english_clips(shared_dir, n=6):
    aligner = PocketsphinxAligner()
    clips = []
    for corpus in ("cmu_arctic", "librispeech_clean_misc"):
        folder = shared_dir / "data" / "en" / corpus
        with open(folder / "manifest.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["text"] and not aligner.missing_words(row["text"]):
                    clips.append((load_audio(folder / row["path"], 16000, notices=False).numpy(), row["text"]))
    return aligner, clips[:n]


def test_pocketsphinx_aligns_real_english_speech(shared_dir):
    aligner, clips = _english_clips(shared_dir)
    errors = []
    for sig, text in clips:
        words = aligner.align(sig, 16000, text)
        # every word, in order: without the silence padding pocketsphinx dropped the final "it"
        # of axb_arctic_a0005 ("Will we ever forget it.")
        assert [w.word for w in words] == _clean_words(text)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:]))  # ordered, no overlap
        assert all(0 <= w.start < w.end <= len(sig) / 16000 + 0.01 for w in words)
        onset, offset = energy_edges(sig)
        errors += [abs(words[0].start - onset), abs(words[-1].end - offset)]
    # documented reference (README): utterance edges from frame energy on clean read speech
    assert np.median(errors) <= 0.05, errors


def test_aligner_errors_name_the_problem():
    aligner = PocketsphinxAligner()
    with pytest.raises(CodecError, match="not in the pocketsphinx dictionary.*qzxv"):
        aligner.align(np.zeros(16000, np.float32), 16000, "hello qzxv")
    with pytest.raises(CodecError, match="nothing to align"):
        aligner.align(np.zeros(16000, np.float32), 16000, "  ,. ")
    noise = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.01
    with pytest.raises(CodecError, match="aligned 0 of the 9 words.*do not match"):
        aligner.align(noise, 16000, "the quick brown fox jumps over the lazy dog")


def test_ctc_aligner_runs_with_a_character_model(tmp_path):
    aligner = CTCAligner(str(tiny_ctc(tmp_path)))
    sig = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    words = aligner.align(sig, 16000, "Hello world")
    assert [w.word for w in words] == ["hello", "world"]
    assert 0 <= words[0].start < words[0].end <= words[1].start < words[1].end <= 1.0
    assert [w.word for w in aligner.align(sig, 16000, "Naïve, isn't it?")] == ["na", "ve", "isn't", "it"]
