"""The DP-SLM stages that are not shared with other codecs (spec ``dpslm.md``), one subcommand
each; every one handles all the (K, lambda) pairs it is given in one process and writes its
outputs atomically (a pair whose output exists with the same options is skipped).

    python -m speechbrain_codec.bin.dpslm kmeans --cache F --manifest train.csv --ks 100,200 --out exp/kmeans
    python -m speechbrain_codec.bin.dpslm units --cache F --manifest all.csv --kmeans exp/kmeans \\
        --pairs 100:0,100:600 --out exp/pairs
    python -m speechbrain_codec.bin.dpslm ulm --pairs ... --pairs_dir exp/pairs --train train.csv \\
        --valid valid.csv --test test.csv --config hparams/ulm.yaml
    python -m speechbrain_codec.bin.dpslm vocoder --source wavtokenizer_folder --out exp/wavtokenizer
    python -m speechbrain_codec.bin.dpslm ellav --pairs ... --pairs_dir exp/pairs --codes exp/cache/codes \\
        --train train.csv --valid valid.csv --config hparams/ellav.yaml
    python -m speechbrain_codec.bin.dpslm resynth --pairs ... --pairs_dir exp/pairs --wavlm W \\
        --kmeans exp/kmeans --vocoder exp/wavtokenizer --manifest test.csv --data-root D

Layout of ``<pairs_dir>/K<k>_l<lambda>/``: ``units.npz`` (frame-level DPDP units of every
utterance), ``units.json`` (per manifest split: deduplicated units per second R, unigram entropy
H, ``R H`` = the bitrate, ``R log2 K`` = its bound), ``ulm/`` + ``ulm_scores.json``, ``ellav/``,
``codec/`` (the whole pipeline as a :class:`~speechbrain_codec.lm.ellav.DPSLMCodec` folder, with
an order-0 entropy model of the units fitted on the training units), ``bitstreams/`` (plain
``.sbc``: the deduplicated units at ``log2 K`` bits each), ``bitstreams_entropy/`` (range coded),
``decoded/`` (24 kHz resynthesis, ``bitrate.json`` and ``system.json`` facts for the evaluation).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..utils import CodecError, atomic_path, atomic_write_json, one_line_errors

UNIT_RATE = 50.0  # WavLM frames per second


# ------------------------------------------------------------------------------------- helpers
def pair_name(k: int, lam: float) -> str:
    return f"K{k}_l{lam:g}"


def parse_pairs(text: str) -> list[tuple[int, float]]:
    """``"100:0,100:600 500:4500"`` -> ``[(100, 0.0), (100, 600.0), (500, 4500.0)]``."""
    out = []
    for item in text.replace(",", " ").split():
        k, sep, lam = item.partition(":")
        try:
            out.append((int(k), float(lam)))
        except ValueError:
            raise CodecError(f"--pairs: {item!r} is not K:lambda (e.g. 500:4500)") from None
        if not sep or out[-1][0] < 2 or out[-1][1] < 0:
            raise CodecError(f"--pairs: {item!r} is not K:lambda with K >= 2 and lambda >= 0")
    if not out:
        raise CodecError("--pairs: no (K, lambda) pair given")
    return out


def _ids(manifest: str | None) -> list[str]:
    if not manifest:
        return []
    from ..dataio import read_manifest

    return list(read_manifest(manifest))


def _stamp_ok(folder: Path, options: dict) -> bool:
    f = folder / ".options.json"
    return f.is_file() and json.loads(f.read_text()) == options


def _stamp(folder: Path, options: dict) -> None:
    atomic_write_json(folder / ".options.json", options)


def _config(paths: list[str] | None, section: str, overrides: str | None = None) -> dict:
    """The ``section`` mapping of each YAML file in ``paths`` merged in order (later files win),
    then ``overrides`` (a YAML mapping)."""
    cfg: dict = {}
    for path in paths or []:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise CodecError(f"{path}: no such configuration file") from None
        part = doc.get(section, {}) if isinstance(doc, dict) else None
        if not isinstance(part, dict):
            raise CodecError(f"{path}: expected a YAML mapping with a {section!r} mapping")
        cfg.update(part)
    if overrides:
        extra = yaml.safe_load(overrides) or {}
        if not isinstance(extra, dict):
            raise CodecError(f"--overrides must be a YAML mapping, not {overrides!r}")
        cfg.update(extra)
    return cfg


def save_units(path: Path, units: dict[str, np.ndarray]) -> None:
    ids = sorted(units)
    lengths = np.array([len(units[i]) for i in ids], dtype=np.int64)
    data = np.concatenate([units[i] for i in ids]).astype(np.int16) if ids else np.zeros(0, np.int16)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.array(ids), lengths=lengths, data=data)


def load_units(path: Path) -> dict[str, np.ndarray]:
    """``ID -> frame-level units [T]`` (int64) of a ``units.npz``."""
    if not path.is_file():
        raise CodecError(f"{path}: missing; it is written by the units stage")
    z = np.load(path)
    ends = np.cumsum(z["lengths"])
    starts = ends - z["lengths"]
    data = z["data"].astype(np.int64)
    return {str(i): data[s:e] for i, s, e in zip(z["ids"], starts, ends)}


def unit_rates(units: dict[str, np.ndarray], ids, k: int, frame_rate: float = UNIT_RATE) -> dict:
    """R (deduplicated units per second), H (bits, unigram entropy of the deduplicated units),
    ``R H`` (the bitrate) and ``R log2 K`` (its bound), over ``ids`` (§2.7)."""
    from ..quantizers.dpdp import dedup

    ded = [dedup(units[i])[0] for i in ids if i in units]
    frames = sum(len(units[i]) for i in ids if i in units)
    n = sum(len(d) for d in ded)
    if not n:
        return {"utterances": 0, "seconds": 0.0, "units": 0}
    counts = np.bincount(np.concatenate(ded), minlength=k).astype(np.float64)
    p = counts[counts > 0] / n
    h = float(-(p * np.log2(p)).sum())
    seconds = frames / frame_rate
    r = n / seconds
    return {"utterances": len(ded), "seconds": seconds, "units": n, "units_per_second": r, "entropy_bits": h,
            "bitrate": r * h, "bitrate_bound": r * math.log2(k), "mean_run_frames": frames / n}


# ------------------------------------------------------------------------------------- k-means
def cmd_kmeans(args) -> None:
    from ..dataio import FeatureCache
    from ..quantizers.kmeans import fit_kmeans, save_codebook

    cache = FeatureCache(args.cache)
    ids = [i for i in _ids(args.manifest)]
    missing = [i for i in ids if i not in cache]
    if missing:
        raise CodecError(f"{args.cache}: no features of {missing[0]} (and {len(missing) - 1} more); run the cache stage")
    for k in sorted({int(x) for x in args.ks.replace(",", " ").split()}):
        out = Path(args.out) / f"K{k}"
        options = {"cache": str(Path(args.cache).resolve()), "ids": len(ids), "k": k, "fraction": args.fraction,
                   "seed": args.seed, "batch_size": args.batch_size}
        if (out / "codebook.safetensors").is_file() and _stamp_ok(out, options):
            print(f"k-means K = {k}: up to date")
            continue
        rng = np.random.default_rng(args.seed)

        def frames():  # per file: shuffle the frames and keep `fraction` of them (WavLM-codebooks)
            for uid in ids:
                x = cache.get(uid).float().numpy()
                keep = max(1, int(round(args.fraction * x.shape[0])))
                yield x[rng.permutation(x.shape[0])[:keep]]

        sample = np.concatenate(list(frames()))
        if sample.shape[0] < k:
            raise CodecError(f"k-means K = {k}: only {sample.shape[0]} frames sampled; raise --fraction or add data")
        t0 = time.perf_counter()
        codebook, info = fit_kmeans(sample, k, batch_size=max(args.batch_size, k), seed=args.seed)
        out.mkdir(parents=True, exist_ok=True)
        save_codebook(out / "codebook.safetensors", codebook, k=k, **info)
        _stamp(out, options)
        print(f"k-means K = {k}: {info['frames']} frames, inertia/frame {info['inertia_per_frame']:.4g} "
              f"({time.perf_counter() - t0:.1f} s)")


# ------------------------------------------------------------------------------------- units
def _neighbors(k: int, fraction: float) -> int | None:
    """The paper's DP-WFST restriction: 5 % of K (5, 10, 25, 50); 0 or K: none."""
    n = int(fraction * k)
    return None if n <= 0 or n >= k else n


def cmd_units(args) -> None:
    from ..dataio import FeatureCache, read_manifest
    from ..quantizers.dpdp import dpdp
    from ..quantizers.kmeans import load_codebook

    cache = FeatureCache(args.cache)
    splits = dict(s.split("=", 1) for s in args.split)
    all_ids = sorted({i for m in splits.values() for i in read_manifest(m)})
    for k, lam in parse_pairs(args.pairs):
        out = Path(args.out) / pair_name(k, lam)
        cb_path = Path(args.kmeans) / f"K{k}" / "codebook.safetensors"
        codebook = load_codebook(cb_path)
        n = _neighbors(k, args.neighbors_fraction)
        options = {"cache": str(Path(args.cache).resolve()), "codebook": str(cb_path.resolve()),
                   "codebook_mtime": cb_path.stat().st_mtime_ns, "lambda": lam, "num_neighbors": n,
                   "ids": len(all_ids), "splits": splits}
        if (out / "units.npz").is_file() and _stamp_ok(out, options):
            print(f"{pair_name(k, lam)}: units up to date")
            continue
        t0 = time.perf_counter()
        units = {}
        for uid in all_ids:
            if uid not in cache:
                raise CodecError(f"{args.cache}: no features of {uid}; run the cache stage")
            units[uid] = dpdp(cache.get(uid).float(), codebook, lam, n)
        out.mkdir(parents=True, exist_ok=True)
        save_units(out / "units.npz", units)
        stats = {"K": k, "lambda": lam, "num_neighbors": n,
                 "splits": {name: unit_rates(units, list(read_manifest(m)), k) for name, m in splits.items()}}
        atomic_write_json(out / "units.json", stats)
        _stamp(out, options)
        s = stats["splits"]
        line = ", ".join(f"{name}: R {v.get('units_per_second', 0):.1f}/s, R.H {v.get('bitrate', 0):.1f} b/s, "
                         f"R.log2K {v.get('bitrate_bound', 0):.1f} b/s" for name, v in s.items())
        print(f"{pair_name(k, lam)}: DPDP on {len(units)} utterances ({time.perf_counter() - t0:.1f} s); {line}")


# ------------------------------------------------------------------------------------- unit LM
def cmd_ulm(args) -> None:
    from ..lm.unit_lm import UnitLM, minimal_pair_accuracy, train_unit_lm
    from ..quantizers.dpdp import dedup

    cfg = _config(args.config, "ulm", args.overrides)
    model_keys = ("dim", "num_layers", "num_heads", "num_kv_heads", "ffn_dim", "rope_theta", "max_positions",
                  "rms_eps", "dropout")
    train_keys = ("steps", "batch_size", "grad_accumulation", "chunk_len", "peak_lr", "start_lr", "final_lr",
                  "warmup", "decay", "weight_decay", "eps", "clip", "valid_every", "seed")
    train_ids, valid_ids, test_ids = _ids(args.train), _ids(args.valid), _ids(args.test)
    for k, lam in parse_pairs(args.pairs):
        folder = Path(args.pairs_dir) / pair_name(k, lam)
        units = load_units(folder / "units.npz")
        options = {"config": cfg, "units_mtime": (folder / "units.npz").stat().st_mtime_ns,
                   "train": len(train_ids), "valid": len(valid_ids), "test": len(test_ids), "device": args.device}
        if (folder / "ulm_scores.json").is_file() and _stamp_ok(folder / "ulm", options):
            print(f"{pair_name(k, lam)}: unit LM up to date")
            continue
        torch.manual_seed(int(cfg.get("seed", 0)))
        lm = UnitLM(k, **{key: cfg[key] for key in model_keys if key in cfg}).to(args.device)
        pick = lambda ids: {i: dedup(units[i])[0] for i in ids if i in units}  # noqa: E731
        t0 = time.perf_counter()
        log = train_unit_lm(lm, pick(train_ids), pick(valid_ids), log_every=int(cfg.get("log_every", 0)),
                            **{key: cfg[key] for key in train_keys if key in cfg})
        lm.save_pretrained(folder / "ulm")
        # scoring (§5): per-utterance log-likelihood of the held-out units, and a minimal-pair
        # control: each test utterance against its time-reversed unit sequence (sWUGGY pairs are
        # scored the same way when a pairs file is given)
        test = pick(test_ids)
        seqs = [test[i] for i in sorted(test)]
        ll = lm.log_likelihood(seqs).tolist() if seqs else []
        scores = {"K": k, "lambda": lam, "train_seconds": time.perf_counter() - t0,
                  "final_train_loss": log["losses"][-1], "best_valid_loss": log["best_valid"],
                  "best_step": log["best_step"], "parameters": sum(p.numel() for p in lm.parameters()),
                  "log_likelihood": dict(zip(sorted(test), ll)),
                  "nats_per_unit": (-sum(ll) / sum(len(s) for s in seqs)) if seqs else None}
        if seqs:
            pairs = [(s, s[::-1]) for s in seqs]
            scores["utterance_vs_reversed"] = {k2: v for k2, v in minimal_pair_accuracy(lm, pairs).items() if k2 != "scores"}
        if args.pairs_file:
            pairs = [(p["word"], p["nonword"]) for p in json.loads(Path(args.pairs_file).read_text())[pair_name(k, lam)]]
            scores["lexical"] = {k2: v for k2, v in minimal_pair_accuracy(lm, pairs).items() if k2 != "scores"}
        atomic_write_json(folder / "ulm_scores.json", scores)
        _stamp(folder / "ulm", options)
        print(f"{pair_name(k, lam)}: unit LM {scores['parameters'] / 1e6:.2f} M parameters, valid loss "
              f"{log['best_valid']}, test {scores['nats_per_unit']} nats/unit ({scores['train_seconds']:.1f} s)")


# ------------------------------------------------------------------------------------- vocoder
def cmd_vocoder(args) -> None:
    """A WavTokenizer codec folder (codec.yaml + weights) from the published release folder, or
    a tiny random one (``--tiny``: tests and the debug recipe)."""
    from ..wavtokenizer import WavTokenizer, tiny_wavtokenizer

    out = Path(args.out)
    if (out / "codec.yaml").is_file():
        print(f"{out}: up to date")
        return
    model = tiny_wavtokenizer(hop=600) if args.tiny else WavTokenizer.from_pretrained(args.source)
    model.save_codec(out)
    print(f"{out}: WavTokenizer ({model.frame_rate:g} Hz, {model.codebook_sizes[0]} codes)")


# ------------------------------------------------------------------------------------- ELLA-V
def cmd_ellav(args) -> None:
    from ..dataio import FeatureCache
    from ..lm.ellav import ELLAV, train_ellav

    cfg = _config(args.config, "ellav", args.overrides)
    model_keys = ("dim", "num_layers", "num_heads", "num_kv_heads", "ffn_dim", "rope_theta", "max_positions", "rms_eps")
    train_keys = ("steps", "batch_size", "grad_accumulation", "peak_lr", "start_lr", "final_lr", "warmup", "decay",
                  "weight_decay", "eps", "clip", "valid_every", "patience", "seed")
    codes = FeatureCache(args.codes)
    code_rate = float(cfg.get("code_rate", 40.0))
    num_codes = int(cfg.get("num_codes", 4096))
    train_ids, valid_ids = _ids(args.train), _ids(args.valid)
    for k, lam in parse_pairs(args.pairs):
        folder = Path(args.pairs_dir) / pair_name(k, lam)
        units = load_units(folder / "units.npz")
        options = {"config": cfg, "units_mtime": (folder / "units.npz").stat().st_mtime_ns,
                   "codes": str(Path(args.codes).resolve()), "train": len(train_ids), "valid": len(valid_ids)}
        if (folder / "ellav" / "ellav.json").is_file() and _stamp_ok(folder / "ellav", options):
            print(f"{pair_name(k, lam)}: ELLA-V up to date")
            continue

        def pairs(ids):
            out = []
            for i in ids:
                if i not in codes:
                    raise CodecError(f"{args.codes}: no codec tokens of {i}; run the codec-token stage")
                out.append((units[i], codes.get(i).reshape(-1).numpy()))
            return out

        torch.manual_seed(int(cfg.get("seed", 0)))
        model = ELLAV(k, num_codes, **{key: cfg[key] for key in model_keys if key in cfg}).to(args.device)
        t0 = time.perf_counter()
        ex = dict(unit_rate=UNIT_RATE, code_rate=code_rate)
        train = [model.example(u, c, **ex) for u, c in pairs(train_ids)]
        valid = [model.example(u, c, **ex) for u, c in pairs(valid_ids)]
        log = train_ellav(model, train, valid, log_every=int(cfg.get("log_every", 0)),
                          **{key: cfg[key] for key in train_keys if key in cfg})
        model.save_pretrained(folder / "ellav")
        atomic_write_json(folder / "ellav" / "train_log.json", {"final_train_loss": log["losses"][-1],
                                                                 "best_valid_loss": log["best_valid"],
                                                                 "best_step": log["best_step"],
                                                                 "seconds": time.perf_counter() - t0})
        _stamp(folder / "ellav", options)
        print(f"{pair_name(k, lam)}: ELLA-V trained, loss {log['losses'][-1]:.3f}, valid {log['best_valid']} "
              f"({time.perf_counter() - t0:.1f} s)")


# ------------------------------------------------------------------------------------- resynthesis
CODEC_YAML = """# DP-SLM (Visser & Kamper, 2025): WavLM-large L11 -> DPDP units (sent deduplicated, no run
# lengths) -> ELLA-V GAR -> WavTokenizer, written by speechbrain_codec.bin.dpslm
codec: !new:speechbrain_codec.lm.ellav.DPSLMCodec
    wavlm: {wavlm}
    layer: {layer}
    codebook: {codebook}
    lmbda: {lmbda}
    num_neighbors: {num_neighbors}
    ellav: {ellav}
    vocoder: {vocoder}
    max_codec_tokens_per_phone: {cap}
    max_tokens: {max_tokens}
    temperature: {temperature}
    top_p: {top_p}
    seed: 0
"""


def export_codec(folder: Path, k: int, lam: float, args, units: dict[str, np.ndarray], train_ids) -> Path:
    """Write ``folder/codec`` (DPSLMCodec) and its order-0 unit entropy model."""
    from hyperpyyaml import load_hyperpyyaml

    from ..codec import entropy_model_file
    from ..entropy import fit_token_model
    from ..quantizers.dpdp import dedup

    meta = json.loads((folder / "units.json").read_text())
    text = CODEC_YAML.format(
        wavlm=json.dumps(str(args.wavlm)), layer=args.layer,
        codebook=json.dumps(str((Path(args.kmeans) / f"K{k}" / "codebook.safetensors").resolve())),
        lmbda=lam, num_neighbors="null" if meta["num_neighbors"] is None else meta["num_neighbors"],
        ellav=json.dumps(str((folder / "ellav").resolve())), vocoder=json.dumps(str(Path(args.vocoder).resolve())),
        cap=args.max_codec_tokens_per_phone, max_tokens=args.max_tokens, temperature=args.temperature,
        top_p=args.top_p)
    import io

    codec = load_hyperpyyaml(io.StringIO(text))["codec"]
    out = folder / "codec"
    codec.save_pretrained(out, text)
    toks = [dedup(units[i])[0][:, None] for i in train_ids if i in units and len(units[i])]
    if toks:
        model = fit_token_model("order0", toks, [k])
        model.save(out / entropy_model_file("units"))
    return out


def cmd_resynth(args) -> None:
    """Export each pair's codec, encode the test manifest to .sbc (plain and entropy coded),
    decode (units -> ELLA-V -> WavTokenizer) and write the facts the evaluation shows."""
    from ..bitstream import read_sbc
    from ..cli import bitrate_summary, decode_file, encode_file
    from ..codec import Codec
    from ..dataio import read_manifest

    rows = read_manifest(args.manifest, args.data_root)
    train_ids = _ids(args.train)
    for k, lam in parse_pairs(args.pairs):
        folder = Path(args.pairs_dir) / pair_name(k, lam)
        options = {"ellav_mtime": (folder / "ellav" / "ellav.json").stat().st_mtime_ns if (folder / "ellav" / "ellav.json").is_file() else None,
                   "units_mtime": (folder / "units.npz").stat().st_mtime_ns, "manifest": str(Path(args.manifest).resolve()),
                   "rows": len(rows), "wavlm": str(args.wavlm), "vocoder": str(args.vocoder), "cap": args.max_codec_tokens_per_phone,
                   "max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p,
                   "device": args.device, "train": len(train_ids)}
        if (folder / "decoded" / "system.json").is_file() and _stamp_ok(folder / "decoded", options):
            print(f"{pair_name(k, lam)}: resynthesis up to date")
            continue
        if not (folder / "ellav" / "ellav.json").is_file():
            raise CodecError(f"{folder / 'ellav'}: missing; it is made by the ELLA-V stage")
        units = load_units(folder / "units.npz")
        export_codec(folder, k, lam, args, units, train_ids)
        codec = Codec.from_pretrained(folder / "codec").to(args.device)
        t0 = time.perf_counter()
        for name, entropy in (("bitstreams", False), ("bitstreams_entropy", True)):
            with atomic_path(folder / name, is_dir=True) as tmp:
                facts = [encode_file(codec, row["wav"], tmp / f"{uid}.sbc", entropy) for uid, row in rows.items()]
                atomic_write_json(tmp / "bitrate.json", bitrate_summary(codec, facts, time.perf_counter() - t0, entropy))
        # R and H of what was sent (the .sbc units of the test set, §2.7)
        sent = {uid: read_sbc(folder / "bitstreams" / f"{uid}.sbc").token_dict()["units"][:, 0] for uid in rows}
        n = sum(len(u) for u in sent.values())
        seconds = sum(read_sbc(folder / "bitstreams" / f"{uid}.sbc").duration for uid in rows)
        counts = np.bincount(np.concatenate(list(sent.values())), minlength=k).astype(np.float64)
        p = counts[counts > 0] / max(n, 1)
        h = float(-(p * np.log2(p)).sum())
        plain = json.loads((folder / "bitstreams" / "bitrate.json").read_text())
        coded = json.loads((folder / "bitstreams_entropy" / "bitrate.json").read_text())
        facts = {"K": k, "lambda": lam, "num_neighbors": json.loads((folder / "units.json").read_text())["num_neighbors"],
                 "units_per_second": n / seconds, "entropy_bits": h, "bitrate": n / seconds * h,
                 "bitrate_bound": n / seconds * math.log2(k), "sbc_file_bitrate": plain["file_bitrate"],
                 "sbc_payload_bitrate": plain["payload_bitrate"], "sbc_entropy_payload_bitrate": coded["payload_bitrate"],
                 "sbc_entropy_file_bitrate": coded["file_bitrate"]}
        ulm = folder / "ulm_scores.json"
        if ulm.is_file():
            u = json.loads(ulm.read_text())
            facts["ulm_nats_per_unit"] = u.get("nats_per_unit")
            if "lexical" in u:
                facts["ulm_lexical_accuracy"] = u["lexical"]["accuracy"]
        t1 = time.perf_counter()
        with atomic_path(folder / "decoded", is_dir=True) as tmp:
            for uid in rows:
                decode_file(codec, folder / "bitstreams" / f"{uid}.sbc", tmp / f"{uid}.wav")
            rates = dict(plain, decode_rtf=(time.perf_counter() - t1) / seconds)
            atomic_write_json(tmp / "bitrate.json", rates)
            atomic_write_json(tmp / "system.json", facts)
            _stamp(tmp, options)
        print(f"{pair_name(k, lam)}: {len(rows)} clips: R {facts['units_per_second']:.2f} units/s, H {h:.3f} bits, "
              f"R.H {facts['bitrate']:.1f} b/s, R.log2K {facts['bitrate_bound']:.1f} b/s, .sbc file "
              f"{plain['file_bitrate']:.1f} b/s, entropy coded {coded['payload_bitrate']:.1f} b/s payload "
              f"({time.perf_counter() - t0:.1f} s)")


# ------------------------------------------------------------------------------------- main
@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    km = sub.add_parser("kmeans", help="k-means codebooks on cached features")
    km.add_argument("--cache", required=True)
    km.add_argument("--manifest", required=True)
    km.add_argument("--ks", required=True, help="codebook sizes, e.g. 100,200,500,1000")
    km.add_argument("--out", required=True)
    km.add_argument("--fraction", type=float, default=0.1, help="share of each file's frames (WavLM-codebooks: 10 %%)")
    km.add_argument("--batch_size", type=int, default=10000)
    km.add_argument("--seed", type=int, default=0)

    un = sub.add_parser("units", help="DPDP units for (K, lambda) pairs")
    un.add_argument("--cache", required=True)
    un.add_argument("--split", action="append", required=True, metavar="NAME=MANIFEST")
    un.add_argument("--kmeans", required=True)
    un.add_argument("--pairs", required=True)
    un.add_argument("--neighbors_fraction", type=float, default=0.05, help="DP-WFST's 5 %% of K; 0: all K")
    un.add_argument("--out", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--pairs", required=True)
    common.add_argument("--pairs_dir", required=True)
    common.add_argument("--device", default="cpu")

    ulm = sub.add_parser("ulm", parents=[common], help="train and score the unit LMs")
    for name in ("--train", "--valid", "--test"):
        ulm.add_argument(name, required=name == "--train")
    ulm.add_argument("--config", action="append", help="YAML file with a 'ulm' mapping (repeatable; later wins)")
    ulm.add_argument("--overrides", help="YAML mapping over --config")
    ulm.add_argument("--pairs_file", help="JSON {pair: [{word: units, nonword: units}, ...]} (sWUGGY)")

    vo = sub.add_parser("vocoder", help="the WavTokenizer codec folder")
    vo.add_argument("--source")
    vo.add_argument("--tiny", action="store_true")
    vo.add_argument("--out", required=True)

    el = sub.add_parser("ellav", parents=[common], help="train the ELLA-V acoustic models")
    el.add_argument("--codes", required=True)
    el.add_argument("--train", required=True)
    el.add_argument("--valid")
    el.add_argument("--config", action="append", help="YAML file with an 'ellav' mapping (repeatable)")
    el.add_argument("--overrides")

    rs = sub.add_parser("resynth", parents=[common], help="export, encode (.sbc), decode")
    rs.add_argument("--manifest", required=True)
    rs.add_argument("--data-root", dest="data_root")
    rs.add_argument("--train", help="training manifest: the units' entropy model is fitted on it")
    rs.add_argument("--wavlm", required=True)
    rs.add_argument("--layer", type=int, default=11)
    rs.add_argument("--kmeans", required=True)
    rs.add_argument("--vocoder", required=True)
    rs.add_argument("--max_codec_tokens_per_phone", type=int, default=10)
    rs.add_argument("--max_tokens", type=int, default=1000)
    rs.add_argument("--temperature", type=float, default=1.0)
    rs.add_argument("--top_p", type=float, default=0.0, help="0: greedy (the WER figure)")

    args = p.parse_args(argv)
    {"kmeans": cmd_kmeans, "units": cmd_units, "ulm": cmd_ulm, "vocoder": cmd_vocoder, "ellav": cmd_ellav,
     "resynth": cmd_resynth}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
