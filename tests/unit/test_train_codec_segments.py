"""The generic trainer's LM-loss features: long segments of consecutive utterances ("bs1"),
several feature caches, cached encoder outputs passed to the codec, freeze_modules and
init_weights."""

from __future__ import annotations

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.bin import train_codec as tc
from speechbrain_codec.dataio import load_audio
from speechbrain_codec.dataio.segments import concat_segments
from speechbrain_codec.utils import CodecError

from ..conftest import tiny_codec
from .test_bin_train_codec import SR, Recorder, StandInCache, hparams_of, manifests, rows  # noqa: F401


def test_segments_follow_the_spec_rule_within_groups():
    durations = [4.0, 4.0, 4.0, 1.0, 9.0, 2.0]
    table = {f"{g}-{i}": {"ID": f"{g}-{i}", "duration": d} for i, (g, d) in enumerate(zip("AAAABB", durations))}
    items = concat_segments(table, 8.0, "id_prefix:1")
    # A-0 reaches 8 s with A-1; A-1 with A-2; A-2 + A-3 = 5 s and the chapter ends: no item; B-4 alone
    assert {k: v["members"] for k, v in items.items()} == {"A-0": ["A-0", "A-1"], "A-1": ["A-1", "A-2"], "B-4": ["B-4"]}
    assert list(concat_segments(table, 8.0, "id_prefix:1", stride=2, limit=1)) == ["A-0"]
    with pytest.raises(CodecError, match="no run of consecutive utterances reaches concat_seconds = 30"):
        concat_segments(table, 30.0, "id_prefix:1")


def test_concatenated_audio_features_and_text(manifests):
    """Each item is whole consecutive clips (no crop): audio, cached features and texts of the
    members concatenated in lock-step."""
    all_rows = {**rows(manifests, "train"), **rows(manifests, "valid")}
    cache = StandInCache(all_rows)
    hp = hparams_of(manifests, {"asr": Recorder(("sig_hat", "text", "feats_a"))}, concat_seconds=3.0,
                    feature_caches={"feats_a": {"folder": "/a", "hop": 320}})
    tc_load = tc.load_feature_cache
    tc.load_feature_cache = lambda folder: cache
    try:
        loader, _, valid, _ = tc.dataio_prepare(hp)
    finally:
        tc.load_feature_cache = tc_load
    train = rows(manifests, "train")
    item = loader.dataset[0]
    members = concat_segments(train, 3.0)[item["id"].rsplit("__", 1)[0]]["members"]
    audio = torch.cat([load_audio(train[m]["wav"], SR, notices=False) for m in members])
    assert torch.equal(item["sig"], audio) and item["sig"].numel() >= 3.0 * SR * 0.999
    assert item["feats_a"].shape[0] == sum(cache.frames[m] for m in members)
    assert item["text"] == " ".join(train[m]["text"].strip() for m in members).strip()


def test_codec_features_are_passed_to_the_codec(manifests):
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, sig, lens, features=None):
            seen.update(features)
            return tiny_codec()(sig, lens)

    from speechbrain_codec.training import CodecBrain

    brain = CodecBrain(modules={"codec": Spy()}, hparams={"losses": {}, "loss_weights": {},
                                                          "codec_features": {"content": "hub"}},
                       run_opts={"device": "cpu", "noprogressbar": True})
    batch = sb.dataio.batch.PaddedBatch([{"id": "a", "sig": torch.zeros(1600), "hub": torch.ones(5, 3)}])
    brain.compute_forward(batch, sb.Stage.VALID)
    assert torch.equal(seen["content"], torch.ones(1, 5, 3))


def test_a_feature_key_the_codec_reads_must_be_a_cache(manifests):
    with pytest.raises(CodecError, match="codec_features: content reads 'hub', which is not a feature cache"):
        tc.batch_keys(hparams_of(manifests, {}, codec_features={"content": "hub"}))


def test_freeze_modules_freezes_dotted_parts_and_keeps_them_in_eval():
    from speechbrain_codec.training import CodecBrain

    codec = tiny_codec()
    brain = CodecBrain(modules={"codec": codec}, hparams={"losses": {}, "loss_weights": {},
                                                          "freeze_modules": ["decoder"]},
                       run_opts={"device": "cpu", "noprogressbar": True})
    assert not any(p.requires_grad for p in codec.decoder.parameters())
    assert all(p.requires_grad for p in codec.encoder.parameters())
    brain.modules.train()
    brain._frozen_to_eval = True
    brain.on_fit_batch_start(None, True)
    assert not codec.decoder.training and codec.encoder.training
    with pytest.raises(ValueError, match="freeze_modules: 'nope' is neither"):
        CodecBrain(modules={"codec": tiny_codec()}, hparams={"losses": {}, "loss_weights": {}, "freeze_modules": ["nope"]},
                   run_opts={"device": "cpu", "noprogressbar": True})


def test_init_weights_loads_a_prefix_into_a_sub_module(tmp_path):
    src, dst = tiny_codec(), tiny_codec()
    torch.save({f"inner.{k}": v for k, v in src.decoder.state_dict().items()}, tmp_path / "w.ckpt")
    lines = tc.apply_init_weights([{"module": "decoder", "source": str(tmp_path / "w.ckpt"), "prefix": "inner."}], dst)
    assert lines == [f"decoder <- {tmp_path / 'w.ckpt'} [inner.]"]
    for k, v in src.decoder.state_dict().items():
        assert torch.equal(dst.decoder.state_dict()[k], v)
    with pytest.raises(CodecError, match="no weights under 'x.'"):
        tc.apply_init_weights([{"module": "decoder", "source": str(tmp_path / "w.ckpt"), "prefix": "x."}], dst)
    with pytest.raises(CodecError, match="init_weights: .*missing"):
        tc.apply_init_weights([{"module": "decoder", "source": str(tmp_path / "none")}], dst)
