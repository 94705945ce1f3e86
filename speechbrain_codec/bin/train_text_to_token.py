"""Train the text -> speech-token LM and its speaker encoder (learnable_speech.md §2.5, §3, §4).

    python -m speechbrain_codec.bin.train_text_to_token HPARAMS.yaml --output_folder OUT \\
        --manifest train.csv --cache_folder CACHE [--overrides_file debug.yaml] [--device cpu]

Trains a sentencepiece BPE tokenizer on the manifest's ``text`` (``text_vocab_size``; kept in
``OUT/model/tokenizer.model``), builds the model of ``model_hparams`` (+ ``model_overrides``,
with ``text_vocab_size`` / ``speech_vocab`` filled in from the tokenizer and the cache), and
fits it (:func:`speechbrain_codec.bin.cached_training.fit`). The speaker reference is a random
0.5-4 s crop of the target utterance's own mel, as in the reference (pitfall 3). Output:
``OUT/model`` (``model.yaml``, ``model.ckpt``, ``tokenizer.model``, ``info.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from ..lm.tokenizers import TextTokenizer
from ..utils import CodecError, one_line_errors
from .cached_training import CachedCorpus, export_model, fit, load_model_yaml, read_hparams, reference_crop

logger = logging.getLogger("speechbrain_codec")


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hparams")
    p.add_argument("--output_folder", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--cache_folder", required=True)
    p.add_argument("--overrides_file", default=None, help="a yaml of hparams overrides (e.g. hparams/debug.yaml)")
    p.add_argument("--overrides", default=None, help="inline yaml overrides")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def overrides_of(a) -> dict:
    import yaml

    out = {}
    if a.overrides_file:
        out.update(yaml.safe_load(Path(a.overrides_file).read_text(encoding="utf-8")) or {})
    if a.overrides:
        out.update(yaml.safe_load(a.overrides) or {})
    return out


@one_line_errors
def main(argv=None) -> int:
    a = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(a.output_folder)
    out.mkdir(parents=True, exist_ok=True)
    ov = overrides_of(a)
    hp = read_hparams(a.hparams, {**ov, "output_folder": str(out)})
    info = json.loads((Path(a.cache_folder) / "info.json").read_text(encoding="utf-8")) \
        if (Path(a.cache_folder) / "info.json").is_file() else None
    if info is None:
        raise CodecError(f"{a.cache_folder}/info.json: missing; made by the extraction stage")
    corpus = CachedCorpus(a.manifest, a.cache_folder, info["ratio"])
    ids = corpus.ids()
    model_dir = out / "model"
    tok_file = model_dir / "tokenizer.model"
    tokenizer = TextTokenizer(tok_file) if tok_file.is_file() else \
        TextTokenizer.train([corpus.items[i]["text"] for i in ids], model_dir, int(hp["text_vocab_size"]))
    model_ov = {**(hp.get("model_overrides") or {}), "text_vocab_size": tokenizer.vocab_size,
                "speech_vocab": info["vocab_size"]}
    model, yaml_text = load_model_yaml(hp["model_hparams"], model_ov)
    device = torch.device(a.device)
    model.to(device)
    texts = {i: tokenizer.encode(corpus.items[i]["text"]) for i in ids}
    empty = [i for i in ids if not texts[i]]
    if empty:
        logger.warning("%d utterances without text left out: %s", len(empty), ", ".join(empty[:5]))
        ids = [i for i in ids if texts[i]]
    if not ids:
        raise CodecError(f"{a.manifest}: no utterance with a transcript (column text)")
    mel_rate = float(info["mel_rate"])

    def batch_loss(batch_ids, rng):
        items = [corpus.items[i] for i in batch_ids]
        ref = reference_crop([it["mel"] for it in items], mel_rate, rng).to(device)
        o = model.compute_loss([texts[i] for i in batch_ids], [it["toks"].tolist() for it in items], ref, rng)
        return o.loss, {"acc": float(o.acc)}

    logs = fit(model, model.parameters(), batch_loss, ids, hp, out, device)
    export_model(model_dir, model.cpu(), yaml_text, {"final": logs, "text_vocab_size": tokenizer.vocab_size,
                                                      "speech_vocab": info["vocab_size"]})
    print(f"text-to-token LM: {model_dir} ({', '.join(f'{k} {v:.4f}' for k, v in logs.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
