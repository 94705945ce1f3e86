"""Tiny randomly initialised transformers models saved to a folder, for offline tests of the
code that loads real checkpoints with ``from_pretrained(name_or_path)``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>",
                    "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def tiny_whisper(folder: str | Path, audio_gain: float = 1.0, max_source_positions: int = 1500) -> Path:
    """Byte-level Whisper with en/zh language tokens, 1 layer, d_model 16.

    ``audio_gain`` scales the decoder's cross-attention output and ``max_source_positions`` sets
    the input window (1500 = 30 s): a random tiny Whisper barely listens to 1 s of audio in a
    30-s window, so loss tests that need the logits to depend on it shorten the window."""
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    eot = "<|endoftext|>"
    tok = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=eot,
                           bos_token=eot, eos_token=eot, pad_token=eot)
    tok.add_special_tokens({"additional_special_tokens": WHISPER_SPECIALS[1:]})
    ids = {s: tok.convert_tokens_to_ids(s) for s in WHISPER_SPECIALS}
    cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, encoder_layers=1, decoder_layers=1, d_model=16,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_source_positions=max_source_positions, max_target_positions=64,
                        decoder_start_token_id=ids["<|startoftranscript|>"], pad_token_id=ids[eot],
                        bos_token_id=ids[eot], eos_token_id=ids[eot])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    with torch.no_grad():
        for layer in model.model.decoder.layers:
            layer.encoder_attn.out_proj.weight.mul_(audio_gain)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[eot], pad_token_id=ids[eot],
        lang_to_id={"<|en|>": ids["<|en|>"], "<|zh|>": ids["<|zh|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True, max_length=32)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def tiny_ctc(folder: str | Path) -> Path:
    """Character-level wav2vec2 CTC model, 1 layer, hidden 16."""
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2ForCTC, Wav2Vec2Processor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("abcdefghijklmnopqrstuvwxyz'")
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    tok = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    cfg = Wav2Vec2Config(vocab_size=len(chars), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, pad_token_id=0)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(cfg).save_pretrained(folder)
    Wav2Vec2Processor(Wav2Vec2FeatureExtractor(sampling_rate=16000), tok).save_pretrained(folder)
    return folder


def tiny_wavlm_sv(folder: str | Path) -> Path:
    """WavLM x-vector speaker-verification model (as microsoft/wavlm-base-plus-sv), tiny."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    folder = Path(folder)
    cfg = WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                      conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16), tdnn_kernel=(3, 1),
                      tdnn_dilation=(1, 1), xvector_output_dim=8, num_buckets=32, max_bucket_distance=64)
    torch.manual_seed(0)
    WavLMForXVector(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def tiny_bert(folder: str | Path) -> Path:
    """BERT with a letter-level WordPiece vocabulary (any lower-case word tokenizes), hidden 16."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz'"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters), "the", "and"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    return folder


def _tiny_ssl(folder: str | Path, config_cls, model_cls, hidden: int, layers: int) -> Path:
    from transformers import Wav2Vec2FeatureExtractor

    folder = Path(folder)
    # the real 7-layer convolutional front end (receptive field 400, hop 320), narrow
    cfg = config_cls(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden,
                     conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    model_cls(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=False).save_pretrained(folder)
    return folder


def tiny_hubert(folder: str | Path, hidden: int = 32, layers: int = 6) -> Path:
    """HuBERT-base-shaped model (6 layers: layer 6 exists), hidden 32."""
    from transformers import HubertConfig, HubertModel

    return _tiny_ssl(folder, HubertConfig, HubertModel, hidden, layers)


def tiny_wavlm(folder: str | Path, hidden: int = 16, layers: int = 10) -> Path:
    """WavLM-base-shaped model (10 layers: hidden state 10 exists), hidden 16 (= tiny BERT's)."""
    from transformers import WavLMConfig, WavLMModel

    return _tiny_ssl(folder, WavLMConfig, WavLMModel, hidden, layers)


def tiny_focalcodec_causal(folder: str | Path, dim: int = 32, seed: int = 0) -> Path:
    """A shrunk ``focalcodec_50hz_2k_causal`` as the hub stores it (``config.json`` +
    ``model.safetensors``, random weights): the published layout and every focal setting, widths
    ``dim``, one encoder layer, two decoder layers; 16 kHz in, 24 kHz out, 11-bit codes at 50 Hz."""
    import copy
    import json

    import torch
    from safetensors.torch import save_file

    from ..focalcodec import PUBLISHED, build_focalcodec

    cfg = copy.deepcopy(PUBLISHED["focalcodec_50hz_2k_causal"])
    cfg["encoder_config"].update(hidden_dims=[16] * 7, num_layers=1, dim=dim, ffn_dim=2 * dim, num_heads=2,
                                 conv_pos=16, conv_pos_groups=4, window_size=64)
    for part in ("compressor_config", "decompressor_config"):
        cfg[part].update(hidden_dims=[dim] * 3, window_size=64)
    cfg["compressor_config"]["input_dim"] = dim
    cfg["decompressor_config"].update(output_dim=dim, last_window_size=64)
    cfg["decoder_config"].update(input_dim=dim, dim=dim, ffn_dim=2 * dim, num_layers=2)
    torch.manual_seed(seed)
    codec = build_focalcodec(cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m speechbrain_codec.bin.tiny_models OUT``: hubert/, wavlm/, bert/, whisper/, ctc/,
    focalcodec_50hz_2k_causal/ under OUT (the recipes' debug configurations; random weights, offline)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m speechbrain_codec.bin.tiny_models OUT", file=sys.stderr)
        return 2
    out = Path(args[0])
    for name, make in (("hubert", tiny_hubert), ("wavlm", tiny_wavlm), ("bert", tiny_bert),
                       ("whisper", tiny_whisper), ("ctc", tiny_ctc),
                       ("focalcodec_50hz_2k_causal", tiny_focalcodec_causal)):
        if not (out / name / "config.json").is_file():
            make(out / name)
    print(f"{out}: tiny random hubert, wavlm, bert, whisper, ctc, focalcodec_50hz_2k_causal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
