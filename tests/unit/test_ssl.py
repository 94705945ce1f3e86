"""SSL encoders through transformers, built from tiny random configurations saved to disk and
loaded back with ``from_pretrained(folder)`` (the hub is not reachable offline)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from speechbrain_codec.encoders import SSLEncoder, WhisperLogMel
from speechbrain_codec.utils import CodecError

CONV = dict(conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _save(kind: str, folder, **kw) -> str:
    import transformers as tf

    torch.manual_seed(0)
    if kind == "whisper":
        cfg = tf.WhisperConfig(d_model=16, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                               vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                               decoder_start_token_id=1, max_source_positions=1500, num_mel_bins=80)
        tf.WhisperModel(cfg).save_pretrained(folder)
        return str(folder)
    config_cls, model_cls = {"wavlm": (tf.WavLMConfig, tf.WavLMModel), "hubert": (tf.HubertConfig, tf.HubertModel)}[kind]
    cfg = config_cls(hidden_size=16, num_hidden_layers=kw.pop("layers", 4), num_attention_heads=2,
                     intermediate_size=32, **CONV, **kw)
    model_cls(cfg).eval().save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind,extra", [("wavlm", {}), ("hubert", {}), ("hubert", {"layers": 2}),
                                        ("wavlm", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"})])
def test_layers_match_hf_hidden_states_and_upper_layers_are_dropped(tmp_path, kind, extra):
    from transformers import AutoModel

    folder = _save(kind, tmp_path, **extra)
    ref = AutoModel.from_pretrained(folder).eval()
    sig = torch.randn(2, 6400)
    with torch.no_grad():  # the default padding: 40 zeros on both sides (the specs' references)
        hs = ref(torch.nn.functional.pad(sig, (40, 40)), output_hidden_states=True).hidden_states
    n = len(hs) - 1
    for layer in range(n + 1):
        enc = SSLEncoder(folder, layers=layer)
        assert len(enc.model.encoder.layers) == (max(layer, 1) if layer < n else n)
        with torch.no_grad():
            out = enc(sig)
        assert out.shape == (2, 20, 16)
        torch.testing.assert_close(out, hs[layer], atol=1e-5, rtol=1e-5)


def _cnn_support(enc: SSLEncoder, n: int) -> list[tuple[int, int]]:
    """For each CNN frame of an ``n``-sample input, the first and last input sample it depends on."""
    grabbed = {}
    handle = enc.model.feature_extractor.register_forward_hook(lambda m, a, out: grabbed.__setitem__("x", out))
    sig = torch.randn(1, n, requires_grad=True)
    try:
        enc(sig)
    finally:
        handle.remove()
    cnn = grabbed["x"]  # [1, C, frames]
    support = []
    for k in range(cnn.shape[-1]):
        (grad,) = torch.autograd.grad(cnn[0, :, k].sum(), sig, retain_graph=True)
        nz = grad[0].abs().gt(0).nonzero()[:, 0]
        support.append((int(nz[0]), int(nz[-1])))
    return support


@pytest.mark.parametrize("n", [320, 399, 640, 1280 * 3, 1280 * 3 + 80, 5000])
def test_default_centre_padding_matches_the_specs_frame_arithmetic(tmp_path, n):
    """lmloss.md §1.1 / dpslm.md §1.2: 40 zero samples on both sides -> floor(N/320) frames,
    frame k centred on sample 320k + 160 (receptive field 400 samples: 320k-40 ... 320k+359)."""
    # layer-normalised CNN (no group norm over time), so each frame sees only its receptive field
    folder = _save("hubert", tmp_path, layers=1, feat_extract_norm="layer", do_stable_layer_norm=True)
    enc = SSLEncoder(folder, layers=1)
    support = _cnn_support(enc, n)
    assert len(support) == n // 320
    for k, (first, last) in enumerate(support):
        assert first == max(320 * k - 40, 0) and last == min(320 * k + 359, n - 1)
        if 320 * k - 40 >= 0 and 320 * k + 359 < n:
            assert (first + last + 1) / 2 == 320 * k + 160  # centred on its 20-ms hop
    assert enc(torch.randn(1, n)).shape[1] == n // 320
    end = SSLEncoder(folder, layers=1, padding="end")  # the other arrangement, frame k from sample 320k
    assert [f for f, _ in _cnn_support(end, 1280)] == [0, 320, 640, 960]
    with pytest.raises(CodecError, match="give no frame"):
        enc(torch.randn(1, 300))


def test_waveform_not_normalised_by_default(tmp_path):
    """dpslm.md §1.2: WavLM-large is fed the raw waveform although its feature extractor
    normalises; ``normalize_input="auto"`` follows the extractor config instead."""
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    folder = _save("wavlm", tmp_path, do_stable_layer_norm=True, feat_extract_norm="layer")
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    ref = AutoModel.from_pretrained(folder).eval()
    sig = 0.1 * torch.randn(1, 3200) + 0.05
    with torch.no_grad():
        raw = ref(torch.nn.functional.pad(sig, (40, 40)), output_hidden_states=True).hidden_states[2]
        normed = (sig - sig.mean()) / (sig.var(unbiased=False) + 1e-7).sqrt()
        norm = ref(torch.nn.functional.pad(normed, (40, 40)), output_hidden_states=True).hidden_states[2]
        default, auto = SSLEncoder(folder, layers=2)(sig), SSLEncoder(folder, layers=2, normalize_input="auto")(sig)
    torch.testing.assert_close(default, raw, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(auto, norm, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(default, auto, atol=1e-3)


def test_weighted_mean_concat_and_training_mode(tmp_path):
    folder = _save("wavlm", tmp_path)
    sig = torch.randn(1, 3200, requires_grad=True)
    w = SSLEncoder(folder, layers=[2, 4], reduction="weighted", freeze=True)
    m = SSLEncoder(folder, layers=[2, 4], reduction="mean")
    c = SSLEncoder(folder, layers=[2, 4], reduction="concat")
    assert c.out_channels == 32 and c(sig).shape == (1, 10, 32)
    torch.testing.assert_close(w(sig), m(sig))  # equal weights at init
    w.train()
    assert not w.model.training  # frozen stays in eval mode
    w(sig).sum().backward()
    assert sig.grad is not None and sig.grad.abs().sum() > 0  # gradients reach the waveform
    assert w.layer_weights.grad is not None
    assert all(p.grad is None for p in w.model.parameters())
    with pytest.raises(CodecError, match="outside"):
        SSLEncoder(folder, layers=7)


def test_padding_mask_and_resampling_notice(tmp_path, caplog):
    folder = _save("wavlm", tmp_path / "m", do_stable_layer_norm=True, feat_extract_norm="layer")
    enc = SSLEncoder(folder, layers=3)
    a = torch.randn(1, 3200)
    batch = torch.cat([a, torch.nn.functional.pad(a[:, :1600], (0, 1600))])
    with torch.no_grad():
        full = enc(batch, torch.tensor([1.0, 0.5]))
        alone = enc(a[:, :1600])
    torch.testing.assert_close(full[1, :5], alone[0, :5], atol=1e-4, rtol=1e-4)
    enc8k = SSLEncoder(folder, layers=3, input_sample_rate=8000)
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        out = enc8k(torch.randn(1, 1600))
    assert out.shape == (1, 10, 16) and "resampling the input from 8000 Hz" in caplog.text


def test_whisper_encoder_and_missing_model(tmp_path):
    folder = _save("whisper", tmp_path / "w")
    enc = SSLEncoder(folder, layers=[1, 3], reduction="concat")
    out = enc(torch.randn(2, 16000))
    assert out.shape == (2, 50, 32)
    with pytest.raises(CodecError, match="cannot load"):
        SSLEncoder(str(tmp_path / "nothing-here"))


def test_whisper_frontend_matches_feature_extractor():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    fe = WhisperFeatureExtractor()
    sig = [rng.standard_normal(16000 * 3).astype(np.float32) * 0.1, rng.standard_normal(16000).astype(np.float32) * 0.3]
    ref = fe(sig, sampling_rate=16000, return_tensors="np").input_features
    ours = torch.stack([WhisperLogMel()(torch.from_numpy(s)[None])[0] for s in sig]).numpy()
    assert ours.shape == ref.shape == (2, 80, 3000)
    assert np.abs(ours - ref).max() < 1e-4
    x = torch.from_numpy(sig[1])[None].requires_grad_()
    WhisperLogMel()(x).sum().backward()
    assert x.grad.abs().sum() > 0
