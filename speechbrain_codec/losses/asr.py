"""ASR-driven losses: a frozen recogniser scores the codec's reconstruction, and its gradient
reaches the waveform.

``WhisperTokenLoss`` (FocalCodec-S §3.3; the LM-loss codec's "ASR loss", lmloss.md §3.5):
teacher-forced token cross-entropy of a frozen Whisper on the reconstruction,

    L = -1/N sum_i log p(y_i | y_<i, prompt, logmel(sig_hat)),

prompt = ``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>``; the targets are the
label tokens ``y_1 .. y_L`` only (no prompt token, and the end-of-text token is never a target),
one mean over all label tokens of the batch; batch padding uses the end-of-text id and is
excluded. ``y`` is the ground-truth transcript (``target="text"``) or Whisper's own greedy
transcript of the clean input (``target="pseudo"``: no prompt token, no end-of-text), with a
per-utterance language token (en, zh, ...). This is the value of Hugging Face's
``WhisperForConditionalGeneration(input_features, decoder_input_ids=prompt + y, labels=...).loss``
with labels -100 on the prompt and the padding (tested to 1e-5). The log-mel is
:class:`~speechbrain_codec.encoders.WhisperLogMel` (differentiable, equal to the feature
extractor to 1e-4).

``CTCLoss``: CTC of a frozen wav2vec2-style model (``*ForCTC``) on the reconstruction against the
transcript or the model's greedy labels of the clean input.

Both load with ``from_pretrained(hub id or folder)``, keep their weights frozen (eval mode) and
take ``(sig_hat, sig, texts=None, langs=None, lens=None)`` (``inputs = ("sig_hat", "sig", "text?",
"lang?", "lens")``: text and language are optional batch keys, ``None`` when the data has none); ``sample_rate`` is the rate of ``sig_hat`` (resampled to 16 kHz inside).
``lens`` (relative lengths of the padded batch) cuts every utterance, reconstruction and clean
input alike, to its own length before the recogniser sees it (Whisper then pads each one to its
30-s window; CTC gets each utterance's own frame count as input length), so a padded batch gives
the loss of its utterances taken one by one.

**Cached pseudo-labels** (FocalCodec-S §3.4): a ``WhisperTokenLoss(target="pseudo")`` also takes
the batch key ``pseudo_labels`` (its ``inputs`` end with ``"pseudo_labels?"``: a list of label
token-id lists, one per utterance, from the trainer's ``label_cache``, made by
:mod:`speechbrain_codec.bin.pseudo_labels` with :meth:`WhisperTokenLoss.pseudo_labels`); when
given they are the targets and nothing is decoded online, when absent (``None``) the clean input
is decoded online. Utterances with empty labels score nothing (loss 0 when all are empty). A
language that is missing or empty for an utterance is the loss's ``language`` (as the cache does
for a row without ``lang``). Pseudo-labels are decoded, online as for the cache, under the
loss's ``dtype`` (bf16 autocast in FocalCodec-S).
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


def _abs_lens(lens: torch.Tensor | None, batch: int, total: int) -> list[int]:
    """Samples per utterance from SpeechBrain relative lengths (``None``: all ``total``)."""
    if lens is None:
        return [total] * batch
    if len(lens) != batch:
        raise CodecError(f"lens has {len(lens)} entries for a batch of {batch}")
    return [min(total, max(1, round(float(r) * total))) for r in lens]


class _FrozenASRLoss(nn.Module):
    inputs = ("sig_hat", "sig", "text?", "lang?", "lens")  # CodecBrain passes these, in this order

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
                raise CodecError(f"{type(self).__name__}(target='text') needs a non-empty transcript per utterance "
                               "(a `text` key in the training data, or target='pseudo')")
        return texts

    def utterances(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each utterance of ``sig [B, T]`` cut to its own length and resampled to 16 kHz."""
        n = _abs_lens(lens, sig.shape[0], sig.shape[-1])
        return [_resample(sig[i, : n[i]], self.sample_rate) for i in range(sig.shape[0])]


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
        Length limit of pseudo-label decoding (224, openai-whisper's default: a 30-s LM-loss window holds
        80–120 tokens).
    dtype : str
        ``"float32"`` or ``"bfloat16"`` (autocast, as FocalCodec-S).
    max_batch : int
        Utterances per Whisper forward inside the loss (FocalCodec-S: 32); the loss is the same
        token-weighted mean over the whole batch.

    Example
    -------
    See ``tests/unit/test_asr_losses.py`` and ``tests/unit/test_loss_whisper.py`` (a tiny random
    Whisper).
    """

    def __init__(
        self,
        source: str,
        target: str = "pseudo",
        language: str = "en",
        sample_rate: int = 16000,
        max_new_tokens: int = 224,
        dtype: str = "float32",
        max_batch: int = 32,
    ) -> None:
        super().__init__(target, sample_rate)
        from transformers import WhisperForConditionalGeneration, WhisperTokenizer

        if max_batch < 1:
            raise CodecError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch

        try:
            self.model = self._freeze(WhisperForConditionalGeneration.from_pretrained(source))
            self.tokenizer = WhisperTokenizer.from_pretrained(source)
        except OSError as err:
            raise CodecError(f"{source}: cannot load Whisper ({type(err).__name__}); pass a hub id or a local folder") from None
        self.frontend = WhisperLogMel.for_model(self.model.config)
        self.language, self.max_new_tokens = language, max_new_tokens
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        tid = self.tokenizer.convert_tokens_to_ids
        self.sot, self.eot = tid("<|startoftranscript|>"), self.tokenizer.eos_token_id  # EOT: 50257 in Whisper
        self.transcribe, self.notimestamps = tid("<|transcribe|>"), tid("<|notimestamps|>")
        if target == "pseudo":  # the label cache's batch key (None when the training has none)
            self.inputs = (*type(self).inputs, "pseudo_labels?")
        self.source = str(source)

    def lang_id(self, lang: str) -> int:
        tok = f"<|{lang}|>"
        idx = self.tokenizer.convert_tokens_to_ids(tok)
        if idx is None or idx == self.tokenizer.unk_token_id:
            raise CodecError(f"{tok} is not a language token of this Whisper tokenizer")
        return idx

    def prompt(self, lang: str) -> list[int]:
        return [self.sot, self.lang_id(lang), self.transcribe, self.notimestamps]

    def log_mel(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """Whisper input features ``[B, n_mels, frames]``: every utterance cut to its own length,
        resampled to 16 kHz and zero-padded to Whisper's window on its own."""
        return torch.cat([self.frontend(u[None]) for u in self.utterances(sig, lens)])

    @torch.no_grad()
    def pseudo_labels(self, sig: torch.Tensor, langs: list[str], lens: torch.Tensor | None = None,
                      batched: bool = False) -> list[list[int]]:
        """Greedy transcript token ids of the clean ``sig``: no prompt token, no end token.

        ``batched``: one ``generate`` call for the whole batch (every prompt has 4 tokens, so no
        padding; :mod:`speechbrain_codec.bin.pseudo_labels` decodes so) instead of one per
        utterance: the same greedy search, up to floating-point rounding."""
        feats = self.log_mel(sig, lens)
        prompts = [self.prompt(lang or self.language) for lang in langs]
        # never past the decoder's positions (448 in every released Whisper)
        limit = min(self.max_new_tokens, self.model.config.max_target_positions - len(prompts[0]))
        groups = [range(len(prompts))] if batched else [range(i, i + 1) for i in range(len(prompts))]
        labels = []
        with torch.autocast(sig.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            for group in groups:
                rows = torch.tensor([prompts[i] for i in group], device=sig.device)
                out = self.model.generate(input_features=feats[group[0] : group[-1] + 1], decoder_input_ids=rows,
                                          max_new_tokens=limit, do_sample=False, num_beams=1)
                for i, ids in zip(group, out.tolist()):
                    # transformers 5 (pinned) returns the new tokens only; older versions echo the prompt
                    if ids[: len(prompts[i])] == prompts[i]:
                        ids = ids[len(prompts[i]):]
                    labels.append(ids[: ids.index(self.eot)] if self.eot in ids else ids)
        return labels

    def teacher_forcing(self, labels: list[list[int]], langs: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(decoder_input_ids, targets)`` ``[B, W]``: prompt + labels padded with EOT; targets
        hold ``y_t`` at the position that predicts it (prompt end - 1 + t), -100 elsewhere."""
        prompts = [self.prompt(lang) for lang in langs]
        width = max(len(p) + len(y) for p, y in zip(prompts, labels))
        dec_in = torch.full((len(labels), width), self.eot, dtype=torch.long, device=device)
        tgt = torch.full((len(labels), width), -100, dtype=torch.long, device=device)
        for i, (p, y) in enumerate(zip(prompts, labels)):
            dec_in[i, : len(p) + len(y)] = torch.tensor(p + y)
            if y:  # position t predicts token t + 1: the label tokens only
                tgt[i, len(p) - 1 : len(p) - 1 + len(y)] = torch.tensor(y)
        return dec_in, tgt

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor, texts: list[str] | None = None,
                langs: list[str] | None = None, lens: torch.Tensor | None = None,
                pseudo_labels: list[list[int]] | None = None) -> torch.Tensor:
        """The loss of a batch; ``pseudo_labels`` (target ``"pseudo"``): the cached label tokens
        of each utterance, decoded online from ``sig`` when None."""
        B = sig_hat.shape[0]
        langs = [lang or self.language for lang in langs] if langs else [self.language] * B
        if self.target == "text":
            labels = [self.tokenizer(t, add_special_tokens=False).input_ids for t in self._texts(texts, B)]
        elif pseudo_labels is not None:
            if len(pseudo_labels) != B:
                raise CodecError(f"pseudo_labels has {len(pseudo_labels)} label lists for a batch of {B}")
            labels = [[int(t) for t in y] for y in pseudo_labels]
        else:
            labels = self.pseudo_labels(sig, langs, lens)
        dec_in, tgt = self.teacher_forcing(labels, langs, sig_hat.device)
        if (tgt != -100).sum() == 0:
            return sig_hat.sum() * 0.0  # nothing to score (empty pseudo-labels)
        feats = self.log_mel(sig_hat, lens)
        total = sig_hat.new_zeros(())
        for i in range(0, B, self.max_batch):  # Whisper in mini-batches (FocalCodec-S: 32), one token-weighted mean
            part = slice(i, i + self.max_batch)
            if (tgt[part] != -100).sum() == 0:
                continue
            with torch.autocast(sig_hat.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                logits = self.model(input_features=feats[part], decoder_input_ids=dec_in[part]).logits
            total = total + nn.functional.cross_entropy(logits.float().transpose(1, 2), tgt[part], ignore_index=-100,
                                                        reduction="sum")
        return total / (tgt != -100).sum()


class CTCLoss(_FrozenASRLoss):
    """CTC loss of a frozen ``*ForCTC`` model (wav2vec 2.0 / HuBERT / WavLM) on the reconstruction.

    Each utterance is cut to its own length (``lens``) and, when the model's feature extractor
    normalises its input (``do_normalize``, e.g. ``wav2vec2-base-960h``), normalised to zero mean
    and unit variance over that length as the extractor does; the CTC input length of an
    utterance is its own frame count. ``reduction="mean"`` as ``torch``: each utterance's loss
    divided by its target length, then averaged over the batch.

    Parameters
    ----------
    source : str
        E.g. ``facebook/wav2vec2-base-960h`` or a folder with model and processor.
    target : str
        ``"text"`` (transcripts, upper/lower case as the vocabulary needs) or ``"pseudo"``.
    sample_rate : int
        Rate of the signals passed in.
    normalize : bool or None
        Zero-mean unit-variance input; ``None``: as the model's feature extractor.
    """

    def __init__(self, source: str, target: str = "text", sample_rate: int = 16000, normalize: bool | None = None) -> None:
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
        if normalize is None:
            normalize = bool(getattr(getattr(self.processor, "feature_extractor", None), "do_normalize", False))
        self.normalize = normalize

    def model_inputs(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each utterance at 16 kHz, cut to its length, normalised as the feature extractor does."""
        utts = self.utterances(sig, lens)
        if self.normalize:
            utts = [(u - u.mean()) / torch.sqrt(u.var(unbiased=False) + 1e-7) for u in utts]
        return utts

    def log_probs(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_probs [T', B, V], input_lengths [B])`` of the utterances of ``sig``."""
        utts = self.model_inputs(sig, lens)
        if len({u.shape[-1] for u in utts}) == 1:  # no padding: one batched pass
            logits = [self.model(torch.stack(utts)).logits]
        else:
            logits = [self.model(u[None]).logits for u in utts]
        rows = [lp.float().log_softmax(-1) for lg in logits for lp in lg]  # [T_i, V] each
        in_lens = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
        return nn.utils.rnn.pad_sequence(rows), in_lens

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor, texts: list[str] | None = None,
                langs: list[str] | None = None, lens: torch.Tensor | None = None) -> torch.Tensor:
        B = sig_hat.shape[0]
        if self.target == "text":
            texts = [t.lower() if self.lowercase else t.upper() for t in self._texts(texts, B)]
            labels = [self.processor.tokenizer(t).input_ids for t in texts]
        else:
            with torch.no_grad():
                log_probs, in_lens = self.log_probs(sig, lens)
            labels = []
            for i, row in enumerate(log_probs.argmax(-1).T.tolist()):
                row = row[: int(in_lens[i])]
                labels.append([t for j, t in enumerate(row) if (j == 0 or t != row[j - 1]) and t != self.blank])
        log_probs, in_lens = self.log_probs(sig_hat, lens)
        targets = torch.tensor([t for y in labels for t in y], dtype=torch.long)
        tgt_lens = torch.tensor([len(y) for y in labels], dtype=torch.long)
        return nn.functional.ctc_loss(log_probs, targets, in_lens, tgt_lens, blank=self.blank,
                                      reduction="mean", zero_infinity=True)
