#!/usr/bin/env python3
"""CPU cost per training step of each loss brick at the published model sizes (random weights).

For a batch of one 3-s utterance (the FocalCodec-S chunk length), times the loss's forward and
backward into the reconstruction (the codec itself excluded): multi-resolution mel and STFT,
SSL feature MSE (WavLM-base size, layer 6), Whisper token CE (whisper-tiny and whisper-small
sizes; ground-truth and pseudo-label targets), CTC (wav2vec2-base size), TTR (WavLM-base
layer 10 + 2 x 4-layer 768-d summariser + BERT-base), LSGAN + feature matching with HiFi-GAN's
MPD + MSD. Models are built from default-size configs, saved and re-loaded through
``from_pretrained`` (the hub is not reachable offline). Best of ``--repeats``; prints and saves
``benchmarks/results/loss_cost.json``. Run on an idle machine:

    python benchmarks/loss_cost.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def whisper_folder(folder: Path, size: str) -> str:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from tests.tiny_models import tiny_whisper

    tiny_whisper(folder)  # tokenizer with the language tokens; the model is replaced below
    dims = {"tiny": (384, 4, 6), "small": (768, 12, 12)}[size]
    base = WhisperConfig.from_pretrained(folder)
    cfg = WhisperConfig(vocab_size=base.vocab_size, num_mel_bins=80, d_model=dims[0], encoder_layers=dims[1],
                        decoder_layers=dims[1], encoder_attention_heads=dims[2], decoder_attention_heads=dims[2],
                        encoder_ffn_dim=4 * dims[0], decoder_ffn_dim=4 * dims[0], max_source_positions=1500,
                        max_target_positions=448, decoder_start_token_id=base.decoder_start_token_id,
                        pad_token_id=base.pad_token_id, bos_token_id=base.bos_token_id, eos_token_id=base.eos_token_id)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = WhisperForConditionalGeneration.from_pretrained(folder).generation_config
    model.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loss_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers import BertConfig, BertModel, BertTokenizer, Wav2Vec2Config, Wav2Vec2ForCTC, WavLMConfig, WavLMModel

    from speechbrain_codec.alignment import Word
    from speechbrain_codec.discriminators import CombinedDiscriminator, MultiPeriodDiscriminator, MultiScaleDiscriminator
    from speechbrain_codec.encoders import SSLEncoder
    from speechbrain_codec.losses import (CTCLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss, SSLFeatureLoss,
                                          TTRLoss, TTRSummariser, WhisperTokenLoss, discriminator_loss,
                                          feature_matching_loss, generator_adversarial_loss)
    from speechbrain_codec.losses.ttr import BertTargets
    from tests.tiny_models import tiny_bert, tiny_ctc

    tmp = Path(tempfile.mkdtemp())
    WavLMModel(WavLMConfig()).save_pretrained(tmp / "wavlm")  # WavLM-base size
    ctc_dir = tiny_ctc(tmp / "ctc")  # processor; the model is replaced by a base-size one
    Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32, pad_token_id=0)).save_pretrained(ctc_dir)
    bert_dir = tiny_bert(tmp / "bert")
    BertModel(BertConfig(vocab_size=len(BertTokenizer.from_pretrained(bert_dir).vocab))).save_pretrained(bert_dir)

    sig = torch.randn(1, 48000) * 0.1
    words = [Word(0.2 + 0.3 * i, 0.45 + 0.3 * i, w) for i, w in enumerate("the codec keeps speech clear".split())]
    texts, langs = ["the codec keeps speech clear"], ["en"]
    disc = CombinedDiscriminator([MultiPeriodDiscriminator(), MultiScaleDiscriminator()])
    cases = {
        "mel (multi-resolution)": (MultiResolutionMelLoss(), lambda f, x: f(x, sig)),
        "stft (multi-resolution)": (MultiResolutionSTFTLoss(), lambda f, x: f(x, sig)),
        "ssl feature MSE (WavLM-base L6)": (SSLFeatureLoss(SSLEncoder(str(tmp / "wavlm"), layers=6)), lambda f, x: f(x, sig)),
        "whisper CE text (tiny size)": (WhisperTokenLoss(whisper_folder(tmp / "wt", "tiny"), target="text"),
                                        lambda f, x: f(x, sig, texts, langs)),
        "whisper CE pseudo (tiny size)": (WhisperTokenLoss(str(tmp / "wt"), target="pseudo", max_new_tokens=24),
                                          lambda f, x: f(x, sig, None, langs)),
        "whisper CE text (small size)": (WhisperTokenLoss(whisper_folder(tmp / "ws", "small"), target="text"),
                                         lambda f, x: f(x, sig, texts, langs)),
        "ctc text (wav2vec2-base size)": (CTCLoss(str(ctc_dir), target="text"), lambda f, x: f(x, sig, texts, langs)),
        "ttr (WavLM-base L10 + summariser + BERT-base)": (
            TTRLoss(TTRSummariser(), SSLEncoder(str(tmp / "wavlm"), layers=10), BertTargets(str(bert_dir))),
            lambda f, x: f(x, [words])),
        "adv + fm (HiFi-GAN MPD + MSD), generator side": (
            disc, lambda d, x: generator_adversarial_loss(d(x[:, None])[0])
            + feature_matching_loss(d(x[:, None])[1], d(sig[:, None])[1])),
        "discriminator step loss (MPD + MSD)": (
            disc, lambda d, x: discriminator_loss(d(x.detach()[:, None])[0], d(sig[:, None])[0])),
    }
    rows = []
    print(f"3 s of audio, batch 1, {args.threads} threads: seconds per forward + backward")
    for name, (module, call) in cases.items():
        def step():
            x = sig.clone().requires_grad_()
            call(module, x).backward()

        seconds = best(step, args.repeats)
        rows.append({"loss": name, "seconds_per_step": seconds})
        print(f"{name:50s} {seconds:7.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": args.threads, "audio_seconds": 3.0, "torch": torch.__version__,
                                          "rows": rows}, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
