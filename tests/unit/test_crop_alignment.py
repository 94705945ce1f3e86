"""Training crops start on the encoder's feature hop (speechbrain_codec.bin.train_codec's
``crop_hop``), as SIREN's recipe sets it (siren.md §1.3: the waveform slice of a crop of
``max_frames`` HuBERT frames starts at ``start_frame x 320`` samples; shorter clips are
zero-padded to the full window).

The setting is read from recipes/LJSpeech/siren/hparams (train.yaml and the CI debug.yaml), and
the crops are drawn by the trainer's own data pipeline (``dataio_prepare``) over several epochs,
on clips of one hop, shorter than a segment, exactly a segment, a segment plus less than a hop,
plus exactly a hop, and longer. Without ``crop_hop`` the same clips get starts off the hop (the
other recipes' behaviour, unchanged), so the assertions here fail if the setting does nothing."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from speechbrain_codec.bin import train_codec as tc
from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.utils import CodecError

from ..conftest import ROOT
from .test_bin_train_codec import StandInCache

SIREN = ROOT / "recipes" / "LJSpeech" / "siren" / "hparams"
TRAIN = yaml.load((SIREN / "train.yaml").read_text(encoding="utf-8"), Loader=tc._TagLoader)
DEBUG = yaml.safe_load((SIREN / "debug.yaml").read_text(encoding="utf-8"))
SR = TRAIN["sample_rate"]
HOP = 320  # HuBERT-base's feature hop (siren.md §1.2)
EPOCHS = 12


def test_siren_recipe_sets_the_hubert_hop():
    assert tc.crop_hop(TRAIN) == HOP
    assert TRAIN["feature_caches"]["hubert"]["hop"] == HOP  # the cache the crops are cut from
    assert "crop_hop" not in DEBUG  # CI crops like the real configuration
    assert tc.crop_hop({}) == 1  # other recipes: any start, as before


@pytest.mark.parametrize("bad", [0, -320, 320.0, "320", True])
def test_bad_crop_hop_is_one_line_error(bad):
    with pytest.raises(CodecError, match=r"crop_hop: .*a whole number of samples >= 1"):
        tc.crop_hop({"crop_hop": bad})


def clip_lengths(segment: int) -> dict[str, int]:
    return {"one_hop": HOP, "short": 4321, "segment": segment, "segment_plus_319": segment + HOP - 1,
            "segment_plus_hop": segment + HOP, "longer": segment + 5 * HOP + 17, "long": 3 * segment + 1234}


def corpus(folder, segment: int) -> dict[str, int]:
    """One 16 kHz PCM clip per length (random samples, so a crop's content shows where it was cut)
    and train / valid manifests of them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lengths = clip_lengths(segment)
    rows = []
    for uid, n in lengths.items():
        sf.write(folder / f"{uid}.wav", rng.integers(-20000, 20000, n).astype(np.int16), SR, subtype="PCM_16")
        rows.append({"ID": uid, "duration": n / SR, "wav": f"{{data_root}}/{uid}.wav"})
    for split in ("train", "valid"):
        write_manifest(folder / f"{split}.csv", rows)
    return lengths


def siren_data_hparams(folder, segment_seconds: float, **extra) -> dict:
    """The data part of the SIREN training hparams (its HuBERT cache feeding the codec), on ``folder``."""
    return {"train_csv": str(folder / "train.csv"), "valid_csv": str(folder / "valid.csv"),
            "data_folder": str(folder), "sample_rate": SR, "segment_seconds": segment_seconds, "train_repeats": 1,
            "cache_audio": False, "seed": TRAIN["seed"], "train_dataloader_opts": {"batch_size": 2, "shuffle": True},
            "losses": {}, "feature_caches": {"hubert": {"folder": "/cache", "hop": HOP}},
            "codec_features": dict(TRAIN["codec_features"]), **extra}


def draw(hparams: dict, monkeypatch, lengths: dict[str, int]) -> dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]]:
    """``uid -> [(crop_start, sig, hubert), ...]`` over EPOCHS epochs of the trainer's pipeline."""
    monkeypatch.setattr(tc, "load_feature_cache", lambda folder: StandInCache(
        {uid: {"duration": n / SR} for uid, n in lengths.items()}))
    loader, sampler, _, _ = tc.dataio_prepare(hparams)
    dataset = loader.dataset
    dataset.set_output_keys(["id", "sig", "crop_start", "hubert"])
    seen: dict[str, list] = {uid: [] for uid in lengths}
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for i in range(len(dataset)):
            item = dataset[i]
            seen[item["id"].rsplit("__", 1)[0]].append((item["crop_start"], item["sig"], item["hubert"]))
    return seen


@pytest.mark.parametrize("config", ["train.yaml", "debug.yaml"])
def test_crops_start_on_the_hop_and_keep_the_segment_length(config, tmp_path, monkeypatch):
    seconds = (DEBUG if config == "debug.yaml" else TRAIN)["segment_seconds"]
    segment = round(seconds * SR)
    assert segment % HOP == 0  # 100 / 500 HuBERT frames
    frames = segment // HOP
    lengths = corpus(tmp_path / "data", segment)
    seen = draw(siren_data_hparams(tmp_path / "data", seconds, crop_hop=TRAIN["crop_hop"]), monkeypatch, lengths)
    for uid, n in lengths.items():
        audio = load_audio(tmp_path / "data" / f"{uid}.wav", SR, notices=False)
        assert audio.numel() == n
        starts = set()
        for start, sig, hubert in seen[uid]:
            assert start % HOP == 0, (uid, start)
            assert sig.shape == (segment,), uid
            if n <= segment:  # the whole clip, zero-padded to the segment
                assert start == 0
                assert torch.equal(sig[:n], audio) and not sig[n:].any(), uid
            else:
                assert 0 <= start <= n - segment, (uid, start)
                assert torch.equal(sig, audio[start : start + segment]), uid
            # the cached HuBERT frames of the crop begin at its first sample (frame f: [f, f, f])
            assert hubert.shape == (frames, 3)
            first = start // HOP
            assert first * HOP == start
            available = min(frames, int(StandInCache({uid: {"duration": n / SR}}).get(uid).shape[0]) - first)
            assert hubert[:available, 0].tolist() == list(range(first, first + available)), uid
            assert not hubert[available:].any(), uid
            starts.add(start)
        if n < segment + HOP:  # no whole crop starts on a later hop
            assert starts == {0}, uid
        elif uid == "segment_plus_hop":
            assert starts == {0, HOP}, starts  # both hop-aligned starts are drawn
        else:
            assert len(starts) > 2, (uid, starts)  # random, not a fixed start


def test_without_crop_hop_starts_are_anywhere_as_before(tmp_path, monkeypatch):
    """The trainer's default (other recipes): the draws of before ``crop_hop``, off the hop, so
    the test above tells an aligned crop from an unaligned one."""
    seconds = DEBUG["segment_seconds"]
    segment = round(seconds * SR)
    lengths = corpus(tmp_path / "data", segment)
    seen = draw(siren_data_hparams(tmp_path / "data", seconds), monkeypatch, lengths)
    off_hop = 0
    for uid in ("longer", "long"):
        for epoch, (start, _, _) in enumerate(seen[uid]):
            assert start == tc._seeded_start(TRAIN["seed"], epoch, f"{uid}__0", lengths[uid] - segment)
            off_hop += start % HOP != 0
    assert off_hop > EPOCHS  # almost every draw falls between two hops
