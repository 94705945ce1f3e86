"""Offline English ASR (pocketsphinx) and word-error counting (jiwer).

Pocketsphinx is sensitive to level and rounding (see the project's evaluation notes): the
hypothesis is level-matched to the reference, a fixed 1e-4 dither is added and samples are
rounded (not truncated) to int16.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

__all__ = ["PocketsphinxASR", "normalize_text", "word_errors"]


def normalize_text(text: str, lang: str = "en") -> str:
    """Case-fold, drop punctuation, collapse spaces; Mandarin is split into characters.

    Example
    -------
    >>> normalize_text("Not at this particular case, Tom, apologized Whittemore.")
    'not at this particular case tom apologized whittemore'
    >>> normalize_text("甚至出现，交易", "zh")
    '甚 至 出 现 交 易'
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

    def transcribe(self, sig: np.ndarray, sr: int, level_ref: np.ndarray | None = None) -> str:
        """Transcribe a mono float signal; ``level_ref`` sets the RMS to match."""
        if sr != self.sample_rate:
            import torch

            from ..dataio import resample

            sig = resample(torch.as_tensor(sig, dtype=torch.float32), sr, self.sample_rate).numpy()
        sig = np.asarray(sig, dtype=np.float64)
        if level_ref is not None:
            rms, ref_rms = np.sqrt(np.mean(sig**2)), np.sqrt(np.mean(np.asarray(level_ref) ** 2))
            if rms > 0:
                sig = sig * (ref_rms / rms)
        rng = np.random.default_rng(self.seed)
        sig = sig + self.dither * rng.standard_normal(sig.shape)
        pcm = np.round(np.clip(sig, -1.0, 1.0) * 32767).astype(np.int16)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""
