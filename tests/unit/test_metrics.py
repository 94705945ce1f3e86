import numpy as np
import pytest

from speechbrain_codec.baselines import Codec2, Opus, ogg_payload_bytes
from speechbrain_codec.dataio import load_audio
from speechbrain_codec.metrics import (
    PocketsphinxASR,
    align_delay,
    normalize_text,
    pesq_score,
    stoi_score,
    word_errors,
)


@pytest.fixture(scope="module")
def clip(mini_clip):
    return load_audio(mini_clip, 16000).numpy()


def test_pesq_and_stoi_of_clip_against_itself_and_degraded(clip):
    assert pesq_score(clip, clip) == pytest.approx(4.64, abs=0.01)
    assert stoi_score(clip, clip) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    noisy = clip + 0.003 * rng.standard_normal(clip.shape)
    p_noisy, s_noisy = pesq_score(clip, noisy), stoi_score(clip, noisy)
    assert 1.3 < p_noisy < 4.0 and s_noisy < 0.999
    noisier = clip + 0.03 * rng.standard_normal(clip.shape)
    assert pesq_score(clip, noisier) < p_noisy and stoi_score(clip, noisier) < s_noisy


@pytest.mark.parametrize("delay", [0, 450, -160, 1750])
def test_align_delay_finds_known_delays(clip, delay):
    deg = np.concatenate([np.zeros(delay), clip]) if delay >= 0 else clip[-delay:]
    deg = deg + 0.01 * np.random.default_rng(1).standard_normal(deg.shape)
    ref, out, found = align_delay(clip, deg, 16000)
    assert found == delay
    assert len(ref) == len(out)


def test_text_normalisation_and_word_errors():
    assert normalize_text("HE WAS NOT AN ILL-DISPOSED YOUNG MAN.") == "he was not an ill disposed young man"
    assert normalize_text("Don't stop!") == "do not stop"  # Whisper's English normaliser
    assert normalize_text("The colour of 20 dollars") == "the color of $20"
    from speechbrain_codec.metrics.asr import basic_normalize

    assert basic_normalize("Don't stop!") == "don't stop"
    assert word_errors("a b c d", "a x c") == (2, 4)  # one substitution, one deletion
    assert word_errors("a b", "a b") == (0, 2)
    assert word_errors("a b", "") == (2, 2)


def test_pocketsphinx_transcribes_bundled_clip(clip):
    asr = PocketsphinxASR()
    hyp = normalize_text(asr.transcribe(clip, 16000))
    errors, words = word_errors("he was not an ill disposed young man", hyp)
    assert errors / words <= 0.5, hyp


def test_pocketsphinx_floor_on_shared_librivox(shared_dir):
    """The offline ASR floor on clean read speech (EVALUATION_NOTES: ~16-22% on clean sets)."""
    import csv

    folder = shared_dir / "data" / "en" / "librivox"
    asr = PocketsphinxASR()
    errs = words = 0
    with open(folder / "manifest.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            sig = load_audio(folder / row["path"], 16000).numpy()
            e, n = word_errors(normalize_text(row["text"]), normalize_text(asr.transcribe(sig, 16000)))
            errs, words = errs + e, words + n
    assert errs / words < 0.35


def test_codec2_and_opus_baselines(clip):
    if not (Codec2.available() and Opus.available()):
        pytest.skip("codec2 / opus-tools not installed (apt-get install codec2 opus-tools)")
    seconds = len(clip) / 16000
    c2 = Codec2("700C").run(clip, 16000)
    assert c2.payload_bits / seconds == pytest.approx(700, rel=0.05)
    assert c2.file_bits / seconds == pytest.approx(800, rel=0.06)  # 28-bit frames in 4 bytes
    ref, deg, delay = align_delay(clip, c2.sig, 16000)
    assert 300 < delay < 600  # Codec2 700C delays by ~450 samples at 16 kHz
    assert 0.6 < stoi_score(ref, deg) < 0.95
    op = Opus(6).run(clip, 16000)
    assert 4000 < op.payload_bits / seconds < 7000
    assert op.file_bits > op.payload_bits


def test_ogg_payload_parser_counts_packets():
    def page(packets, seq):
        lacing = b"".join(bytes([255] * (len(p) // 255) + [len(p) % 255]) for p in packets)
        return b"OggS" + bytes(22) + bytes([len(lacing)]) + lacing + b"".join(packets)

    data = page([b"H" * 19, b"T" * 300], 0) + page([b"a" * 10, b"b" * 600], 1)
    assert ogg_payload_bytes(data) == 610


def test_pocketsphinx_result_does_not_depend_on_earlier_utterances(clip):
    """Its live cepstral-mean normalisation adapts across utterances unless reset (it is):
    without the reset, a noise burst in between changes this transcript."""
    rng = np.random.default_rng(0)
    target = clip + 0.05 * rng.standard_normal(clip.shape)
    burst = 0.3 * np.random.default_rng(1).standard_normal(32000)
    asr = PocketsphinxASR()
    first = asr.transcribe(target, 16000)
    asr.transcribe(burst, 16000)
    assert asr.transcribe(target, 16000) == first
