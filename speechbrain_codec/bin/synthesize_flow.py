"""Resynthesis and TTS through the flow decoder and the DAC-VAE (learnable_speech.md §5).

    # audio -> speech tokens -> flow (10 Euler steps, CFG 0.7) -> latents -> DAC-VAE decoder -> audio
    python -m speechbrain_codec.bin.synthesize_flow resynth --manifest test.csv --data-root DIR \\
        --token-source SRC --flow FLOW_DIR --vae VAE_DIR --out OUT
    # text + speaker prompt -> LM (RAS) -> speech tokens -> flow -> latents -> audio
    python -m speechbrain_codec.bin.synthesize_flow tts --manifest test.csv --data-root DIR \\
        --lm LM_DIR --flow FLOW_DIR --vae VAE_DIR --out OUT

Writes ``OUT/<ID>.wav`` (24 kHz) for every manifest row - what ``speechbrain-codec evaluate
--system NAME=OUT`` scores - and ``OUT/synthesis.json`` (per utterance: tokens, seconds of audio,
seconds of compute by part, the speaker prompt used). The speaker reference is a centre crop
(<= 4 s) of the prompt's mel; for TTS the prompt is another utterance of the same speaker in the
manifest (``spk_id``) when there is one, else the utterance itself (marked ``"self"``).
Finished files are kept: a re-run only makes the missing ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import soundfile as sf
import torch

from ..dataio import load_audio, read_manifest
from ..utils import CodecError, atomic_path, atomic_write_json, one_line_errors
from .cached_training import load_exported, reference_crop
from .extract_speech_latents import RefMelExtractor

logger = logging.getLogger("speechbrain_codec")


def _load(flow_dir: str, vae_dir: str, device):
    from ..codec import Codec
    from ..vae import DACVAE

    flow = load_exported(flow_dir).to(device)
    vae = Codec.from_pretrained(vae_dir, map_location="cpu")
    if not isinstance(vae, DACVAE):
        raise CodecError(f"{vae_dir}: not a DAC-VAE")
    return flow, vae.eval().to(device)


def _speaker_encoder(flow_dir: str, lm=None):
    """The flow's speaker encoder: the LM's architecture with the weights saved beside the flow."""
    info = json.loads((Path(flow_dir) / "info.json").read_text(encoding="utf-8"))
    if lm is None:
        lm = load_exported(info["speaker_from"])
    import copy

    spk = copy.deepcopy(lm.speaker_encoder)
    spk.load_state_dict(torch.load(Path(flow_dir) / "speaker_encoder.ckpt", map_location="cpu", weights_only=True))
    return spk.eval()


def _write(path: Path, sig: torch.Tensor, sr: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), sig.detach().cpu().clamp(-1, 1).numpy(), sr, subtype="PCM_16", format="WAV")


def _timed(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def synthesize(mode: str, manifest: str, data_root: str | None, flow_dir: str, vae_dir: str, out: str,
               token_source: str | None = None, lm_dir: str | None = None, device: str = "cpu", steps: int = 10,
               cfg: float = 0.7, seed: int = 0) -> dict:
    dev = torch.device(device)
    flow, vae = _load(flow_dir, vae_dir, dev)
    rows = read_manifest(manifest, data_root)
    if not rows:
        raise CodecError(f"{manifest}: no utterance")
    lm = tokenizer = text_tok = None
    if mode == "resynth":
        if not token_source:
            raise CodecError("resynth needs --token-source (the tokenizer the flow was trained on)")
        from ..speech_tokens import load_speech_tokenizer

        tokenizer = load_speech_tokenizer(token_source, vae.sample_rate).to(dev)
    else:
        if not lm_dir:
            raise CodecError("tts needs --lm (the trained text-to-token LM folder)")
        from ..lm.tokenizers import TextTokenizer

        lm = load_exported(lm_dir).to(dev)
        text_tok = TextTokenizer(Path(lm_dir) / "tokenizer.model")
    spk_enc = _speaker_encoder(flow_dir, lm.cpu() if lm is not None else None).to(dev)
    if lm is not None:
        lm.to(dev)
    mel = RefMelExtractor(vae.sample_rate).to(dev)
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    record_path = out_p / "synthesis.json"
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    by_spk: dict[str, list[str]] = {}
    for uid, row in rows.items():
        by_spk.setdefault(str(row.get("spk_id", "")), []).append(uid)
    import random

    for uid, row in rows.items():
        wav_out = out_p / f"{uid}.wav"
        if wav_out.is_file() and uid in record:
            continue
        sig = load_audio(row["wav"], vae.sample_rate).to(dev)
        prompt = uid
        if mode == "tts":
            others = [u for u in by_spk[str(row.get("spk_id", ""))] if u != uid]
            prompt = sorted(others)[0] if others and row.get("spk_id") else uid
        prompt_sig = sig if prompt == uid else load_audio(rows[prompt]["wav"], vae.sample_rate).to(dev)
        ref = reference_crop([mel(prompt_sig[None])[0].t()], mel.frame_rate, random.Random(0), train=False)
        t0 = _timed(dev)
        if mode == "resynth":
            toks, _ = tokenizer(sig[None], torch.tensor([sig.shape[-1]]))
            toks = toks.to(dev)
        else:
            ids = text_tok.encode(row.get("text", ""))
            if not ids:
                raise CodecError(f"{uid}: no text to synthesise (manifest column text)")
            g = torch.Generator().manual_seed(seed)
            toks = torch.tensor([lm.inference(ids, ref, generator=g)], dtype=torch.long, device=dev)
            if toks.shape[1] == 0:
                toks = torch.zeros(1, 1, dtype=torch.long, device=dev)
        t1 = _timed(dev)
        with torch.no_grad():
            v = spk_enc(ref)
            lats = flow.inference(toks, torch.tensor([toks.shape[1]], device=dev), v, n_steps=steps, cfg_rate=cfg)
        t2 = _timed(dev)
        wav = vae.lats_to_sig(lats.transpose(1, 2))[0]
        t3 = _timed(dev)
        if mode == "resynth":
            wav = wav[: sig.shape[-1]]
        _write(wav_out, wav, vae.sample_rate)
        record[uid] = {"tokens": int(toks.shape[1]), "audio_seconds": wav.shape[-1] / vae.sample_rate,
                       "seconds_tokens": t1 - t0, "seconds_flow": t2 - t1, "seconds_vae": t3 - t2,
                       "prompt": "self" if prompt == uid else prompt}
        atomic_write_json(record_path, record)
    audio = sum(r["audio_seconds"] for r in record.values())
    summary = {"mode": mode, "utterances": len(record), "audio_seconds": audio, "steps": steps, "cfg": cfg,
               "flow_seconds_per_audio_second": sum(r["seconds_flow"] for r in record.values()) / max(audio, 1e-9),
               "device": device}
    atomic_write_json(out_p / "summary.json", summary)
    return summary


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["resynth", "tts"])
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--flow", required=True)
    p.add_argument("--vae", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--token-source", default=None)
    p.add_argument("--lm", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cfg", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = synthesize(a.mode, a.manifest, a.data_root, a.flow, a.vae, a.out, a.token_source, a.lm, a.device, a.steps,
                   a.cfg, a.seed)
    print(f"{a.mode}: {s['utterances']} files in {a.out} ({s['audio_seconds']:.1f} s of audio; flow "
          f"{s['flow_seconds_per_audio_second']:.3f} s per s of audio)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
