"""ASR-driven losses: a frozen recogniser scores the codec's reconstruction, and its gradient
reaches the waveform.

``WhisperTokenLoss`` (FocalCodec-S; the LM-loss codec's "Whisper CE"): teacher-forced token
cross-entropy of a frozen Whisper on the reconstruction,

    L = -1/N sum_i log p(y_i | y_<i, prompt, logmel(sig_hat)),

prompt = ``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>``; targets ``y`` are the
ground-truth transcript (``target="text"``) or Whisper's own greedy transcript of the clean
input (``target="pseudo"``), with a per-utterance language token (en, zh, ...). The log-mel is
:class:`~speechbrain_codec.encoders.WhisperLogMel` (differentiable, equal to the feature extractor
to 1e-4). ``CTCLoss``: CTC of a frozen wav2vec2-style model (``*ForCTC``) on the reconstruction
against the transcript or the model's greedy labels of the clean input.

Both load with ``from_pretrained(hub id or folder)``, keep their weights frozen (eval mode),
and take ``(sig_hat, sig, texts=None, langs=None)``; ``sample_rate`` is the rate of ``sig_hat``
(resampled to 16 kHz inside).
"""

from __future__ import annotations

import torch
from torch import nn

from ..dataio import resample
from ..encoders.whisper_frontend import WhisperLogMel
from ..utils import CodecError

__all__ = ["CTCLoss", "WhisperTokenLoss"]


def _resample(sig: torch.Tensor, sr: int) -> torch.Tensor:
    return resample(sig, sr, 16000)


class _FrozenASRLoss(nn.Module):
    takes_text = True  # CodecBrain passes the batch's texts / languages

    def __init__(self, target: str, sample_rate: int) -> None:
        super().__init__()
        if target not in ("text", "pseudo"):
            raise CodecError(f"target must be 'text' or 'pseudo', got {target!r}")
        self.target, self.sample_rate = target, sample_rate

    def _freeze(self, model: nn.Module) -> nn.Module:
        model.requires_grad_(False)
        return model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: no dropout
        return self

    def _texts(self, texts, batch_size: int) -> list[str]:
        if self.target == "text":
            if texts is None or len(texts) != batch_size or any(not str(t).strip() for t in texts):
                raise CodecError(f"{type(self).__name__}(target='text') needs a non-empty transcript per utterance")
        return texts


class WhisperTokenLoss(_FrozenASRLoss):
    """Whisper token cross-entropy on the reconstruction (see the module docstring).

    Parameters
    ----------
    source : str
        Whisper checkpoint (``openai/whisper-small`` in FocalCodec-S) or a folder.
    target : str
        ``"text"`` (ground truth) or ``"pseudo"`` (greedy decode of the clean input).
    language : str
        Default language token when a batch gives none (``"en"``, ``"zh"``...).
    sample_rate : int
        Rate of the signals passed in.
    max_new_tokens : int
        Length limit of pseudo-label decoding.
    dtype : str
        ``"float32"`` or ``"bfloat16"`` (autocast, as FocalCodec-S).

    Example
    -------
    See ``tests/unit/test_asr_losses.py`` (a tiny random Whisper).
    """

    def __init__(
        self,
        source: str,
        target: str = "pseudo",
        language: str = "en",
        sample_rate: int = 16000,
        max_new_tokens: int = 64,
        dtype: str = "float32",
    ) -> None:
        super().__init__(target, sample_rate)
        from transformers import WhisperForConditionalGeneration, WhisperTokenizer

        try:
            self.model = self._freeze(WhisperForConditionalGeneration.from_pretrained(source))
            self.tokenizer = WhisperTokenizer.from_pretrained(source)
        except OSError as err:
            raise CodecError(f"{source}: cannot load Whisper ({type(err).__name__}); pass a hub id or a local folder") from None
        self.frontend = WhisperLogMel.for_model(self.model.config)
        self.language, self.max_new_tokens = language, max_new_tokens
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        tid = self.tokenizer.convert_tokens_to_ids
        self.sot, self.eot = tid("<|startoftranscript|>"), self.tokenizer.eos_token_id
        self.transcribe, self.notimestamps = tid("<|transcribe|>"), tid("<|notimestamps|>")

    def lang_id(self, lang: str) -> int:
        tok = f"<|{lang}|>"
        idx = self.tokenizer.convert_tokens_to_ids(tok)
        if idx is None or idx == self.tokenizer.unk_token_id:
            raise CodecError(f"{tok} is not a language token of this Whisper tokenizer")
        return idx

    def prompt(self, lang: str) -> list[int]:
        return [self.sot, self.lang_id(lang), self.transcribe, self.notimestamps]

    @torch.no_grad()
    def pseudo_labels(self, sig: torch.Tensor, langs: list[str]) -> list[list[int]]:
        """Greedy transcript token ids (no prompt, no end token) of the clean ``sig``."""
        feats = self.frontend(_resample(sig, self.sample_rate))
        labels = []
        for i, lang in enumerate(langs):
            prompt = torch.tensor([self.prompt(lang)], device=sig.device)
            out = self.model.generate(input_features=feats[i : i + 1], decoder_input_ids=prompt,
                                      max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
            ids = out[0, prompt.shape[1]:].tolist()
            labels.append(ids[: ids.index(self.eot)] if self.eot in ids else ids)
        return labels

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor, texts: list[str] | None = None,
                langs: list[str] | None = None) -> torch.Tensor:
        B = sig_hat.shape[0]
        langs = list(langs) if langs else [self.language] * B
        if self.target == "text":
            labels = [self.tokenizer(t, add_special_tokens=False).input_ids for t in self._texts(texts, B)]
        else:
            labels = self.pseudo_labels(sig, langs)
        prompts = [self.prompt(lang) for lang in langs]
        width = max(len(p) + len(y) for p, y in zip(prompts, labels))
        dec_in = torch.full((B, width), self.eot, dtype=torch.long, device=sig_hat.device)
        tgt = torch.full((B, width), -100, dtype=torch.long, device=sig_hat.device)
        for i, (p, y) in enumerate(zip(prompts, labels)):
            dec_in[i, : len(p) + len(y)] = torch.tensor(p + y)
            if y:  # position t predicts token t + 1: the label tokens only
                tgt[i, len(p) - 1 : len(p) - 1 + len(y)] = torch.tensor(y)
        if (tgt != -100).sum() == 0:
            return sig_hat.sum() * 0.0  # nothing to score (empty pseudo-labels)
        feats = self.frontend(_resample(sig_hat, self.sample_rate))
        with torch.autocast(sig_hat.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            logits = self.model(input_features=feats, decoder_input_ids=dec_in).logits
        return nn.functional.cross_entropy(logits.float().transpose(1, 2), tgt, ignore_index=-100)


class CTCLoss(_FrozenASRLoss):
    """CTC loss of a frozen ``*ForCTC`` model (wav2vec 2.0 / HuBERT / WavLM) on the reconstruction.

    Parameters
    ----------
    source : str
        E.g. ``facebook/wav2vec2-base-960h`` or a folder with model and processor.
    target : str
        ``"text"`` (transcripts, upper/lower case as the vocabulary needs) or ``"pseudo"``.
    sample_rate : int
        Rate of the signals passed in.
    """

    def __init__(self, source: str, target: str = "text", sample_rate: int = 16000) -> None:
        super().__init__(target, sample_rate)
        from transformers import AutoModelForCTC, AutoProcessor

        try:
            self.model = self._freeze(AutoModelForCTC.from_pretrained(source))
            self.processor = AutoProcessor.from_pretrained(source)
        except OSError as err:
            raise CodecError(f"{source}: cannot load the CTC model ({type(err).__name__})") from None
        vocab = self.processor.tokenizer.get_vocab()
        self.lowercase = not any(c.isupper() for c in vocab if len(c) == 1)
        self.blank = self.model.config.pad_token_id

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor, texts: list[str] | None = None,
                langs: list[str] | None = None) -> torch.Tensor:
        B = sig_hat.shape[0]
        if self.target == "text":
            texts = [t.lower() if self.lowercase else t.upper() for t in self._texts(texts, B)]
            labels = [self.processor.tokenizer(t).input_ids for t in texts]
        else:
            with torch.no_grad():
                ids = self.model(_resample(sig, self.sample_rate)).logits.argmax(-1)
            labels = []
            for row in ids.tolist():
                collapsed = [t for j, t in enumerate(row) if (j == 0 or t != row[j - 1]) and t != self.blank]
                labels.append(collapsed)
        logits = self.model(_resample(sig_hat, self.sample_rate)).logits  # [B, T, V]
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        targets = torch.tensor([t for y in labels for t in y], dtype=torch.long)
        in_lens = torch.full((B,), log_probs.shape[0], dtype=torch.long)
        tgt_lens = torch.tensor([len(y) for y in labels], dtype=torch.long)
        return nn.functional.ctc_loss(log_probs, targets, in_lens, tgt_lens, blank=self.blank,
                                      reduction="mean", zero_infinity=True)
