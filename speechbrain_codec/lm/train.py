"""Train a token LM and its tokenizer; write them to one folder.

    python -m speechbrain_codec.lm.train --text corpus.txt --out lm/ [--vocab_size 1000]
    python -m speechbrain_codec.lm.train --units units.txt --num_units 500 [--dedup] --out lm/

``--text``: one sentence per line (UTF-8); a sentencepiece BPE tokenizer is trained first.
``--units``: one utterance per line of space-separated integer units. The folder then holds the
GPT-2 weights + config and ``tokenizer.model`` or ``units.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..utils import CodecError, atomic_path, one_line_errors
from .model import TokenLM, train_lm
from .tokenizers import TextTokenizer, UnitTokenizer


def _lines(path: str) -> list[str]:
    try:
        return [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise CodecError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise CodecError(f"{path}: not UTF-8 ({err.reason} at byte {err.start}); convert it to UTF-8") from None


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train a token LM (text BPE or integer units).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--units")
    p.add_argument("--out", required=True)
    p.add_argument("--vocab_size", type=int, default=1000)
    p.add_argument("--num_units", type=int, default=500)
    p.add_argument("--dedup", action="store_true")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max_len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with atomic_path(args.out, is_dir=True) as tmp:
        if args.text:
            lines = _lines(args.text)
            tok = TextTokenizer.train(lines, tmp, args.vocab_size)
            seqs = [tok.encode(ln) for ln in lines]
        else:
            tok = UnitTokenizer(args.num_units, args.dedup)
            try:
                seqs = [tok.encode([int(u) for u in ln.split()]) for ln in _lines(args.units)]
            except ValueError as err:
                raise CodecError(f"{args.units}: not integer units ({err})") from None
            tok.save(tmp)
        lm = TokenLM(tok.vocab_size, args.dim, args.layers, args.heads, args.max_len)
        train_lm(lm, [s[: args.max_len - 2] for s in seqs], args.steps, args.batch_size, args.lr,
                 seed=args.seed, log_every=100)
        lm.save_pretrained(tmp)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
