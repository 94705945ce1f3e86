"""Word-level forced alignment: one format, several backends.

An alignment is a list of :class:`Word` ``(start, end, word)`` in seconds, silences left out,
written per utterance as a Praat TextGrid with a ``words`` tier (what Montreal Forced Aligner
writes and what the TTR loss reads) or as JSON.

Backends
--------
``PocketsphinxAligner``
    Offline, English: the pocketsphinx wheel's en-us acoustic model and dictionary, Viterbi
    alignment to the given text (``set_align_text``), 10 ms frames. Words missing from the
    dictionary are reported by name.
``CTCAligner``
    Any CTC model loadable by transformers (``*ForCTC``, character vocabulary) through
    ``torchaudio.functional.forced_align``; words are the spans between word delimiters.
``MFAAligner``
    Montreal Forced Aligner for users who have it (``mfa`` on PATH, models downloaded): writes
    the corpus folder (wav + .lab per utterance), runs ``mfa align`` and parses the TextGrids.
    :meth:`MFAAligner.command` gives the exact command to run elsewhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..utils import CodecError, atomic_path, atomic_write_json

__all__ = [
    "CTCAligner",
    "MFAAligner",
    "PocketsphinxAligner",
    "Word",
    "energy_edges",
    "read_alignment",
    "read_textgrid",
    "write_alignment",
    "write_textgrid",
]


@dataclass(frozen=True)
class Word:
    """One aligned word (seconds)."""

    start: float
    end: float
    word: str


def _clean_words(text: str) -> list[str]:
    words = re.sub(r"[^a-z' ]", " ", text.lower()).split()
    if not words:
        raise CodecError(f"nothing to align in the transcript {text!r}")
    return words


def write_textgrid(path: str | Path, words: list[Word], duration: float) -> None:
    """Write a TextGrid with a ``words`` interval tier (atomically), via praatio."""
    from praatio import textgrid

    tg = textgrid.Textgrid()
    entries = [(w.start, min(w.end, duration), w.word) for w in words]
    tg.addTier(textgrid.IntervalTier("words", entries, 0.0, duration))
    with atomic_path(path) as tmp:
        tg.save(str(tmp), format="long_textgrid", includeBlankSpaces=True)


def read_textgrid(path: str | Path, tier: str = "words") -> list[Word]:
    """Words of a TextGrid tier (MFA's ``words``); empty intervals (silences) are skipped."""
    from praatio import textgrid

    try:
        tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    except FileNotFoundError:
        raise CodecError(f"{path}: no such TextGrid (run the alignment stage)") from None
    except Exception as err:
        raise CodecError(f"{path}: unreadable TextGrid ({err})") from None
    if tier not in tg.tierNames:
        raise CodecError(f"{path}: no tier {tier!r} (tiers: {list(tg.tierNames)})")
    return [Word(float(e.start), float(e.end), e.label) for e in tg.getTier(tier).entries if e.label.strip()]


def write_alignment(path: str | Path, words: list[Word]) -> None:
    """JSON list of ``{start, end, word}`` (atomic)."""
    atomic_write_json(path, [asdict(w) for w in words])


def read_alignment(path: str | Path) -> list[Word]:
    """Read :func:`write_alignment` JSON or a TextGrid (by suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".textgrid":
        return read_textgrid(path)
    try:
        return [Word(**w) for w in json.loads(path.read_text(encoding="utf-8"))]
    except FileNotFoundError:
        raise CodecError(f"{path}: no such alignment file (run the alignment stage)") from None
    except (ValueError, TypeError) as err:
        raise CodecError(f"{path}: not an alignment JSON ({err})") from None


def energy_edges(sig: np.ndarray, sr: int = 16000, threshold_db: float = -35.0) -> tuple[float, float]:
    """Speech onset and offset (s): the first and last 10-ms frame whose energy is within
    ``-threshold_db`` dB of the loudest frame. A rough reference for checking an aligner's
    utterance edges on clean read speech.

    Example
    -------
    >>> sig = np.zeros(16000); sig[4000:12000] = 0.5
    >>> energy_edges(sig)
    (0.25, 0.75)
    """
    hop = sr // 100
    n = len(sig) // hop
    energy = 10 * np.log10(np.mean(np.asarray(sig[: n * hop], dtype=np.float64).reshape(n, hop) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(energy > energy.max() + threshold_db)
    return float(active[0] * 0.01), float((active[-1] + 1) * 0.01)


class PocketsphinxAligner:
    """Offline English word alignment with pocketsphinx (see the module docstring).

    Example
    -------
    >>> aligner = PocketsphinxAligner()
    >>> aligner.missing_words("hello world qzxv")
    ['qzxv']
    """

    sample_rate = 16000
    frame_shift = 0.01

    def __init__(self, dither: float = 1e-4, pad: float = 0.25) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL")
        self.dither = dither
        # Silence added at both ends: without it pocketsphinx drops the last word of a clip that
        # ends right after it (2 of the 56 aligned clips of ../shared/data/en lost their last word).
        self.pad = pad

    def missing_words(self, text: str) -> list[str]:
        return [w for w in _clean_words(text) if self.decoder.lookup_word(w) is None]

    def align(self, sig: np.ndarray, sr: int, text: str) -> list[Word]:
        """``sig`` mono float at ``sr`` Hz, ``text`` its transcript -> words with times."""
        from ..metrics.asr import pocketsphinx_run

        missing = self.missing_words(text)
        if missing:
            raise CodecError(f"words not in the pocketsphinx dictionary: {missing}; use MFAAligner or CTCAligner")
        d = self.decoder
        expected = _clean_words(text)
        d.set_align_text(" ".join(expected))
        sig = np.asarray(sig, dtype=np.float32)
        silence = np.zeros(round(self.pad * sr), dtype=np.float32)
        pocketsphinx_run(d, np.concatenate([silence, sig, silence]), sr, self.dither)
        duration = len(sig) / sr

        def seconds(frame: int) -> float:
            return round(min(max(frame * self.frame_shift - self.pad, 0.0), duration), 3)

        words = [
            Word(seconds(s.start_frame), seconds(s.end_frame + 1), re.sub(r"\(\d+\)$", "", s.word))
            for s in d.seg() or ()  # None when no path reached the end of the text
            if not s.word.startswith("<") and not s.word.startswith("[")
        ]
        if [w.word for w in words] != expected:
            raise CodecError(
                f"pocketsphinx aligned {len(words)} of the {len(expected)} words of {text[:80]!r} "
                "(audio and transcript do not match?)"
            )
        return words


class CTCAligner:
    """Forced alignment with a character CTC model (transformers) and torchaudio.

    Parameters
    ----------
    source : str
        Hub id or folder of a ``*ForCTC`` model with its processor (e.g.
        ``facebook/wav2vec2-base-960h``).
    """

    sample_rate = 16000

    def __init__(self, source: str) -> None:
        from transformers import AutoModelForCTC, AutoProcessor

        try:
            self.model = AutoModelForCTC.from_pretrained(source).eval()
            self.processor = AutoProcessor.from_pretrained(source)
        except OSError as err:
            raise CodecError(f"{source}: cannot load the CTC model ({type(err).__name__})") from None
        tok = self.processor.tokenizer
        self.vocab = tok.get_vocab()
        self.delimiter = getattr(tok, "word_delimiter_token", "|")
        self.upper = any(c.isupper() for c in self.vocab if len(c) == 1)
        self.blank = self.model.config.pad_token_id

    def align(self, sig: np.ndarray, sr: int, text: str) -> list[Word]:
        import torch
        import torchaudio

        from ..dataio import resample

        x = torch.as_tensor(sig, dtype=torch.float32)
        if sr != self.sample_rate:
            x = resample(x, sr, self.sample_rate)
        words = _clean_words(text)
        chars = self.delimiter.join(w.upper() if self.upper else w for w in words)
        missing = sorted({c for c in chars if c not in self.vocab})
        if missing:
            raise CodecError(f"characters not in the CTC vocabulary: {missing}")
        targets = torch.tensor([[self.vocab[c] for c in chars]], dtype=torch.int32)
        with torch.no_grad():
            log_probs = self.model(x[None]).logits.log_softmax(-1)
        if log_probs.shape[1] < targets.shape[1]:
            raise CodecError("the audio is too short for its transcript")
        path, _ = torchaudio.functional.forced_align(log_probs, targets, blank=self.blank)
        path = path[0].tolist()
        seconds = x.numel() / self.sample_rate / len(path)
        # token index of each emitted character: a new character starts where the label changes
        starts, ends, k, prev = [], [], -1, self.blank
        for t, lab in enumerate(path):
            if lab != self.blank and (lab != prev or prev == self.blank):
                k += 1
                starts.append(t)
                ends.append(t + 1)
            elif lab != self.blank:
                ends[k] = t + 1
            prev = lab
        out, pos = [], 0
        for w in words:
            first, last = pos, pos + len(w) - 1
            out.append(Word(round(starts[first] * seconds, 3), round(ends[last] * seconds, 3), w))
            pos = last + 2  # skip the delimiter
        return out


class MFAAligner:
    """Montreal Forced Aligner (``mfa align``) when installed, with TextGrid parsing.

    Parameters
    ----------
    acoustic_model, dictionary : str
        MFA model names (LM-loss codec: ``english_us_arpa`` both) or paths.
    num_jobs : int
    """

    def __init__(self, acoustic_model: str = "english_us_arpa", dictionary: str = "english_us_arpa",
                 num_jobs: int = 2, mfa: str = "mfa") -> None:
        self.acoustic_model, self.dictionary, self.num_jobs, self.mfa = acoustic_model, dictionary, num_jobs, mfa

    def command(self, corpus: str | Path, out: str | Path) -> list[str]:
        """The ``mfa align`` command line for a corpus folder (wav + .lab) and an output folder."""
        return [self.mfa, "align", "--clean", "--num_jobs", str(self.num_jobs), "--output_format", "long_textgrid",
                str(corpus), self.dictionary, self.acoustic_model, str(out)]

    @staticmethod
    def prepare_corpus(folder: str | Path, items: dict[str, tuple[np.ndarray, int, str]]) -> Path:
        """Write ``{utt_id: (sig, sr, text)}`` as MFA's corpus layout (``utt.wav`` + ``utt.lab``)."""
        import torch

        from ..dataio import save_audio

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for uid, (sig, sr, text) in items.items():
            if not text.strip():
                raise CodecError(f"{uid}: empty transcript; MFA cannot align it")
            save_audio(folder / f"{uid}.wav", torch.as_tensor(sig, dtype=torch.float32), sr)
            (folder / f"{uid}.lab").write_text(text.strip() + "\n", encoding="utf-8")
        return folder

    def run(self, corpus: str | Path, out: str | Path) -> dict[str, list[Word]]:
        """Run MFA (it must be installed) and return ``{utt_id: words}`` from its TextGrids."""
        if shutil.which(self.mfa) is None:
            raise CodecError(
                f"`{self.mfa}` is not on PATH: install Montreal Forced Aligner (conda-forge) and its models "
                f"(`mfa model download acoustic {self.acoustic_model}`), or use PocketsphinxAligner; command: "
                + " ".join(self.command(corpus, out))
            )
        proc = subprocess.run(self.command(corpus, out), capture_output=True, text=True)
        if proc.returncode:
            raise CodecError(f"mfa align failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return self.parse(out)

    @staticmethod
    def parse(out: str | Path) -> dict[str, list[Word]]:
        """``{utt_id: words}`` from every TextGrid under ``out``."""
        grids = sorted(Path(out).rglob("*.TextGrid"))
        if not grids:
            raise CodecError(f"{out}: no TextGrid files")
        return {p.stem: read_textgrid(p) for p in grids}
