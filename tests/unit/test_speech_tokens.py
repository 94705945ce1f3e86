"""Speech token sources (learnable_speech.md §1.3, §2.7)."""

from __future__ import annotations

import pytest
import torch

from speechbrain_codec.speech_tokens import FSQSpeechTokenizer, S3SpeechTokenizer, load_speech_tokenizer
from speechbrain_codec.utils import CodecError


def _fsq_codec():
    from speechbrain_codec.codec import Codec
    from speechbrain_codec.decoders import VocosDecoder
    from speechbrain_codec.encoders import MelEncoder
    from speechbrain_codec.quantizers import FSQ

    return Codec(MelEncoder(24000, 8, n_fft=1920, mel_hop=480, dim=16, intermediate_dim=32, num_layers=1, downsample=2),
                 FSQ([3] * 8, dim=8),
                 VocosDecoder(8, dim=16, intermediate_dim=32, num_layers=1, n_fft=1920, hop_length=480, upsample=2,
                              sample_rate=24000))


def test_s3_missing_weights_is_one_line_error(tmp_path):
    with pytest.raises(CodecError) as err:
        S3SpeechTokenizer.from_pretrained("speech_tokenizer_v2_25hz", download_root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "speech_tokenizer_v2_25hz.onnx") in msg and "fsq" in msg
    with pytest.raises(CodecError, match="neither an .onnx file"):
        S3SpeechTokenizer.from_pretrained("no_such_model", download_root=tmp_path)
    with pytest.raises(CodecError):
        load_speech_tokenizer("s3")  # no weights in this machine's cache either


def test_s3_package_model_random_weights_shapes():
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

    m = S3TokenizerV2("speech_tokenizer_v2_25hz", ModelConfig(n_audio_state=128, n_audio_head=2, n_audio_layer=1))
    tok = S3SpeechTokenizer(m, sample_rate=24000)
    assert tok.vocab_size == 6561 and tok.frame_rate == 25.0
    assert tok.bitrate == pytest.approx(317.0, abs=0.01)
    toks, lens = tok(torch.randn(3, 48000) * 0.1, torch.tensor([48000, 24000, 480]))
    assert toks.shape == (3, 50) and lens.tolist() == [50, 25, 1]
    assert toks.dtype == torch.int64 and int(toks.min()) >= 0 and int(toks.max()) < 6561


def test_fsq_tokenizer_interface_and_padding():
    torch.manual_seed(0)
    tok = FSQSpeechTokenizer(_fsq_codec())
    assert (tok.vocab_size, tok.frame_rate, tok.sample_rate) == (6561, 25.0, 24000)
    assert tok.bitrate == pytest.approx(25 * 12.6797, abs=0.01)
    x = torch.randn(2, 24000) * 0.1
    toks, lens = tok(x, torch.tensor([24000, 12000]))
    assert toks.shape == (2, 25) and lens.tolist() == [25, 13]
    alone, _ = tok(x[:1], torch.tensor([24000]))
    assert torch.equal(alone[0], toks[0])
    one, n = tok(torch.randn(1, 960) * 0.1)
    assert one.shape == (1, 1) and n.tolist() == [1]
    assert tok.num_tokens(24000) == 25


def test_fsq_tokenizer_from_exported_folder(tmp_path):
    codec = _fsq_codec()
    from speechbrain_codec.codec import Codec
    import inspect

    # an exported folder loads through load_speech_tokenizer; a folder without a codec is refused
    with pytest.raises(CodecError):
        load_speech_tokenizer(str(tmp_path / "nothing"))
    with pytest.raises(CodecError, match="one codebook"):
        from speechbrain_codec.quantizers import FSQ
        codec.quantizer = FSQ([3] * 8, dim=8, num_codebooks=2)
        FSQSpeechTokenizer(codec)
