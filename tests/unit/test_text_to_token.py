"""Text -> speech-token LM (learnable_speech.md §2.5)."""

from __future__ import annotations

import random

import pytest
import torch

from speechbrain_codec.lm.text_to_token import (
    IGNORE,
    LearnableSpeakerEncoder,
    TextToTokenLM,
    nucleus_sample,
    qwen2_backbone,
    qwen2_config,
    ras_sample,
    reference_mel,
)


def _lm(speech_vocab=20, text_vocab=50):
    torch.manual_seed(0)
    return TextToTokenLM(qwen2_backbone(qwen2_config("tiny", vocab_size=text_vocab)), speech_vocab=speech_vocab,
                         speaker_encoder=LearnableSpeakerEncoder(80, 16, 1, 2, 8), spk_dim=8)


def test_published_layout():
    cfg = qwen2_config("0.5b")
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.intermediate_size) == (24, 896, 14, 2, 4864)
    enc = LearnableSpeakerEncoder()
    assert enc.init.out_channels == 512 and len(enc.attn) == 6 and enc.proj.out_features == 192
    lm = TextToTokenLM(qwen2_backbone(qwen2_config("tiny")), speech_vocab=6561,
                       speaker_encoder=LearnableSpeakerEncoder(80, 32, 1, 2, 192))
    assert lm.speech_embedding.num_embeddings == 6564 and lm.llm_decoder.out_features == 6564
    assert lm.eos_token == 6561 and lm.fill_token == 6563 and lm.llm_embedding.num_embeddings == 2


def test_speaker_encoder_first_frame_and_norm():
    enc = LearnableSpeakerEncoder(80, 16, 1, 2, 8)
    v = enc(torch.randn(3, 80, 40))
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    # zero-initialised output convs: the blocks start as identity, so the first frame decides
    a = torch.randn(1, 80, 40)
    b = a.clone()
    b[..., 1:] = torch.randn(1, 80, 39)
    torch.testing.assert_close(enc(a), enc(b))


def test_unistream_targets():
    lm = _lm().eval()
    out = lm.compute_loss([[3, 4, 5]], [[1, 2, 7, 9]], torch.randn(1, 80, 30))
    # [SOS] [SPK] t t t [TASK] s s s s -> targets - - - - - s1 s2 s3 s4 EOS
    assert out.targets[0].tolist() == [IGNORE] * 5 + [1, 2, 7, 9, 20]
    assert out.loss.dim() == 0 and 0 <= float(out.acc) <= 1


def test_bistream_layout_and_loss_normalisation():
    lm = _lm().train()
    lm.bistream_prob = 1.0
    text, speech = list(range(1, 11)), [i % 20 for i in range(40)]  # 40 / 10 > 15 / 5
    out = lm.compute_loss([text], [speech], torch.randn(1, 80, 30), random.Random(0))
    t = out.targets[0].tolist()
    # [SOS][SPK] + 2 blocks (5 text: 4 ignores + first speech, 15 speech: 14 next + FILL), rest
    block = [IGNORE] * 4 + speech[:15] + [22]
    assert t[:2] == [IGNORE, IGNORE] and t[2:22] == block
    assert t[22:42] == [IGNORE] * 4 + speech[15:30] + [22]
    assert t[42:] == speech[30:] + [20]  # no text left: [TASK] predicts the block's first token
    # length-normalised: sum of CE over the non-ignored targets / their number
    valid = out.targets != IGNORE
    ce = torch.nn.functional.cross_entropy(out.logits[valid].float(), out.targets[valid])
    assert float(out.loss) == pytest.approx(float(ce), rel=1e-5)


def test_padding_does_not_change_the_loss_of_an_item():
    lm = _lm().eval()
    mel = torch.randn(2, 80, 30)
    both = lm.compute_loss([[3, 4, 5], [6, 7]], [[1, 2, 3, 4, 5, 6], [1, 2]], mel)
    alone = lm.compute_loss([[6, 7]], [[1, 2]], mel[1:])
    n = alone.logits.shape[1]
    torch.testing.assert_close(both.logits[1, :n], alone.logits[0], atol=1e-4, rtol=1e-4)


def test_nucleus_and_ras():
    logits = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.1]))
    g = torch.Generator().manual_seed(0)
    seen = {nucleus_sample(logits, top_p=0.8, top_k=25, generator=g) for _ in range(200)}
    assert seen == {0, 1, 2}  # cumulative 0.5, 0.75 < 0.8 -> three tokens kept
    assert {nucleus_sample(logits, top_p=0.8, top_k=1, generator=g) for _ in range(50)} == {0}
    peaked = torch.log(torch.tensor([0.97, 0.01, 0.01, 0.01]))
    # token 0 occurred in the window: resampled from the full distribution (still mostly 0);
    # with a window without 0 nucleus keeps only 0
    assert ras_sample(peaked, [1, 2, 3], generator=g) == 0
    draws = [ras_sample(torch.log(torch.tensor([0.6, 0.4 - 3e-3, 1e-3, 2e-3])), [0] * 10, top_p=0.5,
                        generator=torch.Generator().manual_seed(s)) for s in range(200)]
    assert 1 in draws  # top-p 0.5 alone would always give 0


def test_inference_lengths_and_stop():
    lm = _lm().eval()
    text = [3, 4, 5]
    toks = lm.inference(text, torch.randn(1, 80, 30), generator=torch.Generator().manual_seed(0))
    assert 2 * len(text) <= len(toks) <= 20 * len(text)
    assert all(0 <= t < 20 for t in toks)
    # an LM that always wants EOS stops right at the minimum length
    with torch.no_grad():
        lm.llm_decoder.weight.zero_()
        lm.llm_decoder.bias.fill_(-10)
        lm.llm_decoder.bias[lm.eos_token] = 10
    assert len(lm.inference(text, torch.randn(1, 80, 30))) == 6


def test_reference_mel_settings():
    m = reference_mel(24000)
    assert (m.n_fft, m.hop_length, m.center, m.mel_fb.shape[0]) == (1920, 480, False, 80)
    assert m.log_mel(torch.randn(1, 24000)).shape == (1, 80, 50)
