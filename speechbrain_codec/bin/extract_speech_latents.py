"""Cache speech tokens, DAC-VAE latents and speaker-reference mels of a manifest (learnable_speech.md §1.3).

    python -m speechbrain_codec.bin.extract_speech_latents --manifest train.csv --data-root DIR \\
        --token-source {s3[:name or .onnx] | TOKENIZER_CODEC_DIR} --vae VAE_CODEC_DIR --out CACHE

Writes three resumable, sharded caches (:func:`speechbrain_codec.dataio.cache.extract_features`):
``CACHE/tokens`` (``[N, 1]`` int64 at the token rate), ``CACHE/latents`` (``[T, C]``: one draw
``z = m + eps sigma`` per utterance, as the reference stores, from a generator seeded with
``--seed``; ``--latents mean`` stores the posterior mean instead), ``CACHE/ref_mel``
(``[F, 80]``: the speaker encoder's log mel of the peak-normalised utterance) and
``CACHE/info.json`` (rates, dims, the token bitrate). A killed run resumes shard by shard;
a cache made with other options is refused (a one-line error).
"""

from __future__ import annotations

import argparse
import logging

import torch

from ..dataio.cache import Extractor, extract_features
from ..lm.text_to_token import reference_mel
from ..speech_tokens import load_speech_tokenizer
from ..utils import CodecError, atomic_write_json, one_line_errors

logger = logging.getLogger("speechbrain_codec")


class TokensExtractor(Extractor):
    kind = "speech_tokens"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.sample_rate = tokenizer.sample_rate
        self.frame_rate = tokenizer.frame_rate
        self._fingerprint = sum(float(p.double().sum()) for p in tokenizer.parameters())

    def describe(self) -> dict:
        return {**self.tokenizer.describe(), "weights": round(self._fingerprint, 6)}

    def to(self, device):
        self.tokenizer.to(device)
        return self

    def __call__(self, sig: torch.Tensor) -> torch.Tensor:
        toks, lens = self.tokenizer(sig, torch.tensor([sig.shape[-1]]))
        return toks[:, : int(lens[0]), None]


class LatentExtractor(Extractor):
    kind = "vae_latents"

    def __init__(self, vae, mode: str = "sample", seed: int = 0) -> None:
        if mode not in ("sample", "mean"):
            raise CodecError(f"--latents {mode}: sample or mean")
        self.vae, self.mode, self.seed = vae.eval(), mode, seed
        self.sample_rate = vae.sample_rate
        self.frame_rate = vae.latent_rate
        self._fingerprint = sum(float(p.double().sum()) for p in vae.parameters())

    def describe(self) -> dict:
        return {"kind": self.kind, "vae": self.vae.describe(), "mode": self.mode, "seed": self.seed,
                "weights": round(self._fingerprint, 6)}

    def to(self, device):
        self.vae.to(device)
        return self

    def __call__(self, sig: torch.Tensor) -> torch.Tensor:
        device = next(self.vae.parameters()).device
        g = torch.Generator(device=device).manual_seed(self.seed)
        return self.vae.sig_to_lats(sig.to(device), sample=self.mode == "sample", generator=g)


class RefMelExtractor(Extractor):
    kind = "ref_mel"

    def __init__(self, sample_rate: int = 24000) -> None:
        self.sample_rate = sample_rate
        self.mel = reference_mel(sample_rate)
        self.frame_rate = sample_rate / self.mel.hop_length

    def describe(self) -> dict:
        return {"kind": self.kind, "sample_rate": self.sample_rate, "n_fft": self.mel.n_fft,
                "hop": self.mel.hop_length, "n_mels": 80, "peak_norm": True}

    def to(self, device):
        self.mel.to(device)
        return self

    def __call__(self, sig: torch.Tensor) -> torch.Tensor:
        sig = sig.to(self.mel.mel_fb.device)
        peak = sig.abs().max()
        if peak > 0:
            sig = sig / peak
        if sig.shape[-1] < self.mel.n_fft:
            sig = torch.nn.functional.pad(sig, (0, self.mel.n_fft - sig.shape[-1]))
        return self.mel.log_mel(sig).transpose(1, 2)


def extract(manifest: str, data_root: str | None, token_source: str, vae_folder: str, out: str,
            device: str = "cpu", latents: str = "sample", seed: int = 0, shard_size: int = 200) -> dict:
    from pathlib import Path

    from ..codec import Codec
    from ..vae import DACVAE

    vae = Codec.from_pretrained(vae_folder, map_location="cpu")
    if not isinstance(vae, DACVAE):
        raise CodecError(f"{vae_folder}: not a DAC-VAE (codec.yaml builds a {type(vae).__name__})")
    tokenizer = load_speech_tokenizer(token_source, vae.sample_rate)
    ratio = vae.latent_rate / tokenizer.frame_rate
    if abs(ratio - round(ratio)) > 1e-6:
        raise CodecError(f"latent rate {vae.latent_rate} Hz is not a whole multiple of the token rate "
                         f"{tokenizer.frame_rate} Hz: choose the DAC-VAE variant that matches (spec §2.2)")
    out_p = Path(out)
    extract_features(manifest, data_root, TokensExtractor(tokenizer), out_p / "tokens", shard_size, device)
    extract_features(manifest, data_root, LatentExtractor(vae, latents, seed), out_p / "latents", shard_size, device)
    mel = RefMelExtractor(vae.sample_rate)
    extract_features(manifest, data_root, mel, out_p / "ref_mel", shard_size, device)
    info = {"token_rate": tokenizer.frame_rate, "vocab_size": tokenizer.vocab_size, "token_bitrate": tokenizer.bitrate,
            "latent_rate": vae.latent_rate, "latent_dim": vae.latent_dim, "ratio": round(ratio),
            "mel_rate": mel.frame_rate, "sample_rate": vae.sample_rate, "token_source": token_source,
            "latents": latents}
    atomic_write_json(out_p / "info.json", info)
    return info


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--token-source", required=True, help="s3[:name or .onnx path] | an exported FSQ codec folder")
    p.add_argument("--vae", required=True, help="the exported DAC-VAE folder")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--latents", default="sample", choices=["sample", "mean"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=200)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = extract(a.manifest, a.data_root, a.token_source, a.vae, a.out, a.device, a.latents, a.seed, a.shard_size)
    print(f"tokens {info['token_rate']:g} Hz x {info['vocab_size']} codes = {info['token_bitrate']:.1f} b/s; "
          f"latents {info['latent_dim']}-d at {info['latent_rate']:g} Hz (x{info['ratio']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
