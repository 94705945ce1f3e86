"""Offline English ASR (pocketsphinx) and word-error counting (jiwer).

Pocketsphinx is sensitive to level and rounding (see the project's evaluation notes): the
hypothesis is level-matched to the reference, a fixed 1e-4 dither is added and samples are
rounded (not truncated) to int16.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

__all__ = ["PocketsphinxASR", "WhisperASR", "CTCASR", "make_asr", "asr_label", "normalize_text", "basic_normalize",
           "word_errors", "NORMALISERS"]

# text normalisation schemes a protocol names (both the reference and every hypothesis go through it)
NORMALISERS = {
    "whisper": "English: Whisper's EnglishTextNormalizer (whisper-normalizer); Mandarin: one token per character, "
               "punctuation removed",
    "whisper+jiwer": "English: Whisper's EnglishTextNormalizer, then jiwer's wer_standardize (lower-case, common "
                     "contractions expanded, Kaldi non-words removed, spaces collapsed) (lmloss.md §1.7); Mandarin "
                     "as 'whisper'",
    "focalcodec_s": "Mandarin: lower-cased, spaces deleted, punctuation kept, one token per character "
                    "(focalcodec_s.md §1.4); English: Whisper's EnglishTextNormalizer",
    "basic": "case-folded, punctuation removed, spaces collapsed; Mandarin per character",
}


def normalize_text(text: str, lang: str = "en", scheme: str = "whisper") -> str:
    """Normalise for scoring: English as Whisper's evaluation does (``EnglishTextNormalizer``
    of the openai/whisper code, from the ``whisper-normalizer`` package: case, punctuation,
    numbers, British->American spellings, contractions); Mandarin split into characters (CER);
    other languages with :func:`basic_normalize`.

    Example
    -------
    >>> normalize_text("Mr. Smith's colour, 20 dollars!")
    'mister smith is color $20'

    >>> normalize_text("甚至出现，交易", "zh")
    '甚 至 出 现 交 易'
    >>> normalize_text("甚至出现，交易", "zh", "focalcodec_s")
    '甚 至 出 现 ， 交 易'
    >>> normalize_text("I won't go", "en", "whisper+jiwer")
    'i will not go'
    """
    if scheme not in NORMALISERS:
        raise ValueError(f"unknown text normaliser {scheme!r}; choose from {', '.join(NORMALISERS)}")
    if scheme == "basic":
        return basic_normalize(text, lang)
    if lang.startswith("zh") and scheme == "focalcodec_s":
        return " ".join(c for c in text.lower() if not c.isspace())
    if lang.startswith("en") and scheme == "whisper+jiwer":
        import jiwer

        words = jiwer.wer_standardize_contiguous(normalize_text(text, lang, "whisper"))
        return " ".join(w for sentence in words for w in sentence)
    if lang.startswith("en"):
        try:
            normalizer = _english_normalizer()
        except ImportError:  # the "eval" extra installs whisper-normalizer
            return basic_normalize(text, lang)
        return " ".join(normalizer(text).split())
    return basic_normalize(text, lang)


_EN = None


def _english_normalizer():
    global _EN
    if _EN is None:
        from whisper_normalizer.english import EnglishTextNormalizer

        _EN = EnglishTextNormalizer()
    return _EN


def basic_normalize(text: str, lang: str = "en") -> str:
    """Case-fold, drop punctuation, collapse spaces; Mandarin is split into characters.

    Example
    -------
    >>> basic_normalize("Not at this particular case, Tom, apologized Whittemore.")
    'not at this particular case tom apologized whittemore'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") and c != "'" else c for c in text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    if lang.startswith("zh"):
        text = " ".join(c for c in text if not c.isspace())
    return " ".join(text.split())


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """``(errors, reference words)`` between two normalised strings (jiwer alignment)."""
    import jiwer

    if not ref.split():
        return (len(hyp.split()), 0)
    if not hyp.split():
        return (len(ref.split()), len(ref.split()))
    out = jiwer.process_words(ref, hyp)
    return (out.substitutions + out.deletions + out.insertions, len(ref.split()))


def pocketsphinx_run(decoder, sig: np.ndarray, sr: int, dither: float = 1e-4, seed: int = 0) -> None:
    """Feed one utterance to a pocketsphinx ``Decoder``: resample to 16 kHz, add a fixed dither,
    round to int16, reset the live CMN (so results do not depend on the order of utterances),
    decode. Read ``decoder.hyp()`` or ``decoder.seg()`` afterwards."""
    if sr != 16000:
        import torch

        from ..dataio import resample

        sig = resample(torch.as_tensor(sig, dtype=torch.float32), sr, 16000).numpy()
    sig = np.asarray(sig, dtype=np.float64)
    sig = sig + dither * np.random.default_rng(seed).standard_normal(sig.shape)
    pcm = np.round(np.clip(sig, -1.0, 1.0) * 32767).astype(np.int16)
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()


class PocketsphinxASR:
    """English recogniser from the pocketsphinx wheel (en-us acoustic model, LM, dictionary).

    Example
    -------
    >>> asr = PocketsphinxASR()
    >>> asr.transcribe(np.zeros(16000, dtype=np.float32), 16000)
    ''
    """

    sample_rate = 16000

    def __init__(self, dither: float = 1e-4, seed: int = 0) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL")
        self.dither, self.seed = dither, seed

    def transcribe(self, sig: np.ndarray, sr: int, level_ref: np.ndarray | None = None, lang: str = "en") -> str:
        """Transcribe a mono float signal; ``level_ref`` sets the RMS to match (English only)."""
        sig = np.asarray(sig, dtype=np.float64)
        if level_ref is not None:
            rms, ref_rms = np.sqrt(np.mean(sig**2)), np.sqrt(np.mean(np.asarray(level_ref) ** 2))
            if rms > 0:
                sig = sig * (ref_rms / rms)
        pocketsphinx_run(self.decoder, sig, sr, self.dither, self.seed)
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class WhisperASR:
    """Whisper through transformers (any size; hub id or local folder), greedy decoding.

    Parameters
    ----------
    source : str
        e.g. ``openai/whisper-large-v3`` or a local folder with config, weights, processor.
    device : str
    """

    sample_rate = 16000

    def __init__(self, source: str, device: str = "cpu") -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(source)
        self.model = WhisperForConditionalGeneration.from_pretrained(source).to(device).eval()
        self.device = device

    def transcribe(self, sig: np.ndarray, sr: int, level_ref: np.ndarray | None = None, lang: str = "en") -> str:
        import torch

        sig = _to_16k(sig, sr)
        feats = self.processor(sig, sampling_rate=16000, return_tensors="pt").input_features.to(self.device)
        with torch.no_grad():
            budget = min(220, self.model.config.max_target_positions // 2 - 4)  # 220 for real models
            ids = self.model.generate(feats, language=lang, task="transcribe", max_new_tokens=budget)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


class CTCASR:
    """A wav2vec2-style CTC model through transformers (hub id or local folder), greedy."""

    sample_rate = 16000

    def __init__(self, source: str, device: str = "cpu") -> None:
        from transformers import AutoModelForCTC, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(source)
        self.model = AutoModelForCTC.from_pretrained(source).to(device).eval()
        self.device = device

    def transcribe(self, sig: np.ndarray, sr: int, level_ref: np.ndarray | None = None, lang: str = "en") -> str:
        import torch

        sig = _to_16k(sig, sr)
        inputs = self.processor(sig, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(inputs.input_values.to(self.device)).logits
        return self.processor.batch_decode(logits.argmax(-1))[0].strip()


def _to_16k(sig: np.ndarray, sr: int) -> np.ndarray:
    if sr == 16000:
        return np.asarray(sig, dtype=np.float32)
    import torch

    from ..dataio import resample

    return resample(torch.as_tensor(sig, dtype=torch.float32), sr, 16000).numpy()


def asr_label(spec: str) -> str:
    """A short name for an ASR spec, for table headers: the model's (or folder's) name.

    >>> asr_label("ctc:facebook/wav2vec2-base-960h"), asr_label("pocketsphinx")
    ('wav2vec2-base-960h', 'pocketsphinx')
    """
    import os

    kind, _, source = spec.partition(":")
    return os.path.basename(os.path.normpath(source)) if source else kind


def make_asr(spec: str, device: str = "cpu"):
    """``"pocketsphinx"``, ``"whisper:<id or path>"`` or ``"ctc:<id or path>"``."""
    kind, _, source = spec.partition(":")
    if kind == "pocketsphinx":
        return PocketsphinxASR()
    if kind == "whisper":
        return WhisperASR(source or "openai/whisper-large-v3", device)
    if kind == "ctc":
        return CTCASR(source, device)
    raise ValueError(f"unknown ASR {spec!r}: use pocketsphinx, whisper:<id or path> or ctc:<id or path>")
