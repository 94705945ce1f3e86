"""WhisperTokenLoss with a tiny random Whisper: pseudo-labels are exactly generate()'s greedy
tokens without prompt or end-of-text, the loss equals Hugging Face's own ``labels=`` loss, and
``lens`` makes a padded batch score its utterances as one by one (FocalCodec-S §3.3, lmloss.md
§3.5)."""

from __future__ import annotations

import pytest
import torch

from speechbrain_codec.losses import WhisperTokenLoss
from tests.tiny_models import tiny_whisper


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    # a 1-s window and a louder cross-attention: the logits depend on the audio
    return tiny_whisper(tmp_path_factory.mktemp("whisper"), audio_gain=10.0, max_source_positions=50)


def _sig(n: int = 16000, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, n, generator=torch.Generator().manual_seed(seed)) * 0.1


def _hf_loss(loss: WhisperTokenLoss, sig_hat, labels, langs):
    """Hugging Face's loss: decoder_input_ids = prompt + labels (EOT padding), labels -100 on the
    prompt and the padding, aligned with the logits that predict them."""
    rows, tgts = [], []
    width = max(4 + len(y) for y in labels)
    for y, lang in zip(labels, langs):
        prompt = [loss.tokenizer.convert_tokens_to_ids(t) for t in
                  ("<|startoftranscript|>", f"<|{lang}|>", "<|transcribe|>", "<|notimestamps|>")]
        ids = prompt + y
        rows.append(ids + [loss.tokenizer.eos_token_id] * (width - len(ids)))
        tgts.append(ids[1:] + [-100] * (width - len(ids) + 1))
        tgts[-1][:3] = [-100] * 3  # the prompt is never a target, nor is EOT
    out = loss.model(input_features=loss.frontend(sig_hat),  # = loss.log_mel at 16 kHz, no lens
                     decoder_input_ids=torch.tensor(rows),
                     labels=torch.tensor(tgts))
    return out.loss


def test_pseudo_labels_are_generates_tokens_without_prompt_or_eot(whisper_dir):
    loss = WhisperTokenLoss(str(whisper_dir), target="pseudo", max_new_tokens=8)
    sig = _sig()
    langs = ["en", "zh"]
    labels = loss.pseudo_labels(sig, langs)
    feats = loss.frontend(sig)  # = loss.log_mel(sig) at 16 kHz without lens
    for i, lang in enumerate(langs):
        prompt = loss.prompt(lang)
        raw = loss.model.generate(input_features=feats[i : i + 1], decoder_input_ids=torch.tensor([prompt]),
                                  max_new_tokens=8, do_sample=False, num_beams=1)[0].tolist()
        new = raw[len(prompt):] if raw[: len(prompt)] == prompt else raw  # the pinned version: new tokens only
        want = new[: new.index(loss.eot)] if loss.eot in new else new
        assert labels[i] == want and len(want) > 4, (labels[i], raw)
        assert not set(labels[i]) & set(prompt) and loss.eot not in labels[i]
        # independent of generate(): every label is the greedy continuation of prompt + previous labels
        logits = loss.model(input_features=feats[i : i + 1], decoder_input_ids=torch.tensor([prompt + labels[i]])).logits[0]
        assert logits[len(prompt) - 1 : len(prompt) - 1 + len(labels[i])].argmax(-1).tolist() == labels[i]


@pytest.mark.parametrize("echo", [False, True])
def test_pseudo_labels_slice_prompt_and_eot(whisper_dir, monkeypatch, echo):
    loss = WhisperTokenLoss(str(whisper_dir), target="pseudo")
    text = [40, 41, 42]

    def generate(input_features, decoder_input_ids, **kw):  # as transformers 5 / as older versions
        head = decoder_input_ids[0].tolist() if echo else []
        return torch.tensor([head + text + [loss.eot, loss.eot]])

    monkeypatch.setattr(loss.model, "generate", generate)
    assert loss.pseudo_labels(_sig(), ["en", "zh"]) == [text, text]


@pytest.mark.parametrize("target", ["text", "pseudo"])
def test_whisper_loss_equals_hugging_face_labels_loss(whisper_dir, target):
    loss = WhisperTokenLoss(str(whisper_dir), target=target, max_new_tokens=6)
    sig, sig_hat = _sig(seed=0), _sig(seed=1)
    texts, langs = ["hello world", "codec"], ["en", "zh"]
    value = loss(sig_hat, sig, texts, langs)
    if target == "text":
        labels = [loss.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        assert len(labels[0]) != len(labels[1])  # batch padding is exercised
    else:
        labels = loss.pseudo_labels(sig, langs)
    ref = _hf_loss(loss, sig_hat, labels, langs)
    assert abs(value.item() - ref.item()) < 1e-5, (value.item(), ref.item())
    dec_in, tgt = loss.teacher_forcing(labels, langs)
    short = min(range(2), key=lambda i: len(labels[i]))
    assert loss.eot == loss.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert (dec_in[short, 4 + len(labels[short]):] == loss.eot).all()  # EOT padding (not the reference's 50237)
    assert tgt[tgt != -100].tolist() == sum(labels, [])  # the label tokens only: no prompt token, no EOT


def test_lens_make_a_padded_batch_score_each_utterance_alone(whisper_dir):
    loss = WhisperTokenLoss(str(whisper_dir), target="text")
    assert loss.inputs == ("sig_hat", "sig", "text?", "lang?", "lens")
    a, b = _sig(12000, seed=2)[0], _sig(8000, seed=3)[0]
    ha, hb = _sig(12000, seed=4)[0], _sig(12000, seed=5)[0]
    hb[8000:] *= 10  # b's reconstruction runs on, loud, past its end (a codec's output on padding)
    sig = torch.stack([a, torch.nn.functional.pad(b, (0, 4000))])
    sig_hat = torch.stack([ha, hb])
    lens = torch.tensor([1.0, 8000 / 12000])
    texts, langs = ["hello world", "codec"], ["en", "zh"]
    n = [len(loss.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    single = [loss(ha[None], a[None], texts[:1], langs[:1]), loss(hb[None, :8000], b[None], texts[1:], langs[1:])]
    want = (n[0] * single[0] + n[1] * single[1]) / sum(n)  # one token-weighted mean over the batch
    got = loss(sig_hat, sig, texts, langs, lens)
    assert abs(got.item() - want.item()) < 1e-4, (got.item(), want.item())
    # what Whisper hears: b's own 0.5 s padded to the window, not its padded reconstruction
    feats = loss.log_mel(sig_hat, lens)
    torch.testing.assert_close(feats[1], loss.log_mel(hb[None, :8000])[0])
    assert (feats[1] - loss.log_mel(sig_hat)[1]).abs().max() > 0.1
    pseudo = WhisperTokenLoss(str(whisper_dir), target="pseudo", max_new_tokens=6)
    assert pseudo.pseudo_labels(sig, langs, lens)[1] == pseudo.pseudo_labels(b[None], langs[1:])[0]
    sig_hat.requires_grad_(True)
    pseudo(sig_hat, sig, None, langs, lens).backward()
    assert sig_hat.grad[1, 8000:].abs().sum() == 0 and sig_hat.grad[1, :8000].abs().sum() > 0


def test_mini_batches_give_the_whole_batch_loss(whisper_dir):
    """FocalCodec-S runs Whisper in mini-batches of 32 inside the loss (§3.3): with max_batch 1
    (two utterances of different label lengths) the value is still one token-weighted mean, the
    Hugging Face loss of the whole batch."""
    whole = WhisperTokenLoss(str(whisper_dir), target="text")
    split = WhisperTokenLoss(str(whisper_dir), target="text", max_batch=1)
    sig, sig_hat = _sig(seed=0), _sig(seed=1)
    texts, langs = ["hello world and more words", "codec"], ["en", "zh"]
    labels = [whole.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    ref = _hf_loss(whole, sig_hat, labels, langs)
    assert abs(split(sig_hat, sig, texts, langs).item() - ref.item()) < 1e-5
    assert abs(whole(sig_hat, sig, texts, langs).item() - ref.item()) < 1e-5
    assert whole.max_batch == 32
