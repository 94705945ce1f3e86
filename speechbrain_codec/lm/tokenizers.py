"""Tokenizers for :class:`~speechbrain_codec.lm.TokenLM`: sentencepiece for text, an integer
vocabulary for codec tokens and units. Both reserve ``pad = 0``, ``bos = 1``, ``eos = 2``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from ..utils import CodecError, atomic_path, atomic_write_json

__all__ = ["TextTokenizer", "UnitTokenizer"]

PAD, BOS, EOS = 0, 1, 2


class TextTokenizer:
    """Sentencepiece (BPE or unigram) text tokenizer.

    Example
    -------
    >>> import tempfile
    >>> words = ["the cat sat on the mat", "a cat and a hat"] * 50
    >>> tok = TextTokenizer.train(words, tempfile.mkdtemp(), vocab_size=30)
    >>> tok.decode(tok.encode("the cat"))
    'the cat'
    """

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece as spm

        if not Path(model_file).is_file():
            raise CodecError(f"{model_file}: no sentencepiece model (train one with TextTokenizer.train)")
        self.model_file = str(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=self.model_file)

    @classmethod
    def train(cls, texts: Iterable[str], folder: str | Path, vocab_size: int = 1000,
              model_type: str = "bpe", character_coverage: float = 1.0) -> "TextTokenizer":
        """Train on ``texts`` and save ``folder/tokenizer.model`` (atomically)."""
        import io

        import sentencepiece as spm

        lines = [t.strip() for t in texts if t and t.strip()]
        if not lines:
            raise CodecError("no text to train the tokenizer on")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=3,
            hard_vocab_limit=False, minloglevel=2,
        )
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "tokenizer.model") as tmp:
            Path(tmp).write_bytes(model.getvalue())
        return cls(folder / "tokenizer.model")

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode(list(ids))

    def save(self, folder: str | Path) -> None:
        import shutil

        shutil.copyfile(self.model_file, Path(folder) / "tokenizer.model")


class UnitTokenizer:
    """Units / codec tokens ``0 .. num_units-1`` <-> ids ``3 .. num_units+2``; optional dedup
    (DP-SLM scores deduplicated units).

    Example
    -------
    >>> tok = UnitTokenizer(100, dedup=True)
    >>> tok.encode([5, 5, 7, 7, 7, 5])
    [8, 10, 8]
    >>> tok.decode(tok.encode([5, 5, 7]))
    [5, 7]
    """

    pad_id, bos_id, eos_id = PAD, BOS, EOS
    offset = 3

    def __init__(self, num_units: int, dedup: bool = False) -> None:
        self.num_units, self.dedup = num_units, dedup

    @property
    def vocab_size(self) -> int:
        return self.num_units + self.offset

    def encode(self, units: Sequence[int]) -> list[int]:
        out = []
        for u in units:
            u = int(u)
            if not 0 <= u < self.num_units:
                raise CodecError(f"unit {u} outside 0..{self.num_units - 1}")
            if self.dedup and out and out[-1] == u + self.offset:
                continue
            out.append(u + self.offset)
        return out

    def decode(self, ids: Sequence[int]) -> list[int]:
        return [i - self.offset for i in ids if i >= self.offset]

    def save(self, folder: str | Path) -> None:
        atomic_write_json(Path(folder) / "units.json", {"num_units": self.num_units, "dedup": self.dedup})

    @classmethod
    def load(cls, folder: str | Path) -> "UnitTokenizer":
        return cls(**json.loads((Path(folder) / "units.json").read_text()))
