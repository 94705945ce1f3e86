"""ASR / feature losses with tiny random models: each decreases when it alone optimises a small
codec for a few steps (gradients reach the codec through the frozen recogniser), targets are
built as documented, and bad input gives clear errors."""

from __future__ import annotations

import pytest
import torch

from speechbrain_codec.losses import CTCLoss, DistillLoss, SSLFeatureLoss, WhisperTokenLoss
from speechbrain_codec.utils import CodecError
from tests.conftest import tiny_codec
from tests.tiny_models import tiny_ctc, tiny_whisper


def overfit(loss_fn, steps: int = 12, lr: float = 3e-3, **kw) -> tuple[float, float]:
    """Train a tiny codec on one 1-s clip with ``loss_fn`` alone; returns (first, last) loss."""
    codec = tiny_codec()
    torch.manual_seed(1)
    sig = torch.randn(2, 16000) * 0.1
    opt = torch.optim.Adam(codec.parameters(), lr=lr)
    values = []
    for _ in range(steps):
        out = codec(sig)
        loss = loss_fn(out.sig, sig, **kw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    frozen = [p for p in loss_fn.parameters()]
    assert all(p.grad is None for p in frozen), "the recogniser must stay frozen"
    return values[0], min(values[-3:])


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    # a 1-s input window and a louder cross-attention, so the random decoder's logits depend on
    # the audio enough for a few steps to show (a real Whisper listens far more)
    return tiny_whisper(tmp_path_factory.mktemp("whisper"), audio_gain=10.0, max_source_positions=50)


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory):
    return tiny_ctc(tmp_path_factory.mktemp("ctc"))


def test_whisper_ce_with_text_targets_decreases(whisper_dir):
    loss = WhisperTokenLoss(str(whisper_dir), target="text")
    first, last = overfit(loss, steps=15, lr=0.03, texts=["hello world", "codec"], langs=["en", "en"])
    assert first - last > 1e-3, (first, last)


def test_whisper_ce_with_pseudo_labels_and_zh_prompt(whisper_dir):
    loss = WhisperTokenLoss(str(whisper_dir), target="pseudo", max_new_tokens=8)
    sig = torch.randn(2, 16000) * 0.1
    labels = loss.pseudo_labels(sig, ["en", "zh"])
    assert len(labels) == 2 and all(0 < len(y) <= 8 for y in labels)
    assert loss.prompt("zh")[1] == loss.tokenizer.convert_tokens_to_ids("<|zh|>")
    first, last = overfit(loss, steps=15, lr=0.03, langs=["en", "zh"])
    assert first - last > 1e-3, (first, last)
    with pytest.raises(CodecError, match="not a language token"):
        loss.prompt("xx")


def test_whisper_ce_text_target_needs_transcripts(whisper_dir):
    loss = WhisperTokenLoss(str(whisper_dir), target="text")
    with pytest.raises(CodecError, match="non-empty transcript"):
        loss(torch.zeros(1, 1600), torch.zeros(1, 1600), texts=[""])
    with pytest.raises(CodecError, match="cannot load"):
        WhisperTokenLoss("/nonexistent/whisper")


def test_ctc_loss_text_and_pseudo_targets_decrease(ctc_dir):
    first, last = overfit(CTCLoss(str(ctc_dir), target="text"), texts=["HELLO", "WORLD"])
    assert last < first * 0.98, (first, last)
    first, last = overfit(CTCLoss(str(ctc_dir), target="pseudo"))
    assert last <= first, (first, last)


def test_ssl_feature_loss_decreases(tmp_path):
    from speechbrain_codec.encoders import SSLEncoder
    from tests.unit.test_ssl import _save

    loss = SSLFeatureLoss(SSLEncoder(_save("wavlm", tmp_path), layers=2))
    first, last = overfit(loss)
    assert last < first * 0.9, (first, last)


def test_distill_loss_moves_the_quantizer_only_towards_the_features():
    q, z = torch.zeros(1, 3, 2, requires_grad=True), torch.ones(1, 3, 2, requires_grad=True)
    DistillLoss(torch.nn.Identity())(q, z).backward()  # identity decoder: MSE(qlats, feats)
    assert z.grad is None and q.grad is not None and (q.grad < 0).all()
