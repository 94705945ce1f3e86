"""Token language models over text (sentencepiece BPE) or codec tokens / units (integers).

``TokenLM`` is a small GPT-2 (transformers config) with a log-likelihood scoring API: DP-SLM
scores unit sequences with it, a minimal pair ("manufacture" / "manufelture") tests it, and the
Learnable-Speech text-to-token LM builds on it. ``python -m speechbrain_codec.lm.train`` trains
one (tokenizer included) from a text file or a unit file.
"""

from .model import TokenLM, train_lm
from .tokenizers import TextTokenizer, UnitTokenizer

__all__ = ["TextTokenizer", "TokenLM", "UnitTokenizer", "train_lm"]
