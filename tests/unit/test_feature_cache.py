"""Feature caches (speechbrain_codec.dataio.cache): round trip by ID, resume after a kill,
refusal of other options, several ranks + merge, damaged shards, and the SSL / token / F0
extractors on tiny models and a bundled clip."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.dataio.cache import (F0Extractor, FeatureCache, SSLExtractor, TokenExtractor,
                                            extract_features, main, merge, spec_f0)
from speechbrain_codec.utils import CodecError

from tests.conftest import MINI_DATA, tiny_codec

CLIPS = ["1089-134686-0001", "aew_arctic_a0003", "axb_arctic_a0006", "slt_arctic_a0009",
         "sense_and_sensibility_01_austen_64kb-0880"]


def _manifest(path: Path, clips=CLIPS) -> Path:
    rows = [{"ID": c, "duration": 1.0, "wav": "{data_root}/audio/en/" + c + ".flac", "spk_id": c.split("_")[0][:4],
             "lang": "en", "text": ""} for c in clips]
    write_manifest(path, rows)
    return path


class Frames:
    """A cheap deterministic extractor: per 320-sample frame, mean |x| and max |x| (50 Hz, 2 channels)."""

    sample_rate = 16000
    frame_rate = 50.0

    def __init__(self, scale: float = 1.0):
        self.scale, self.calls = scale, 0

    def describe(self):
        return {"kind": "frames", "scale": self.scale}

    def __call__(self, sig):
        self.calls += 1
        x = sig[0, : sig.shape[-1] // 320 * 320].reshape(-1, 320).abs()
        return torch.stack([x.mean(-1), x.amax(-1)], -1)[None] * self.scale


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return _manifest(tmp_path_factory.mktemp("man") / "m.csv")


def _direct(extractor, clip):
    return extractor(load_audio(MINI_DATA / "audio" / "en" / f"{clip}.flac", 16000)[None])[0]


def test_round_trip_by_id_bit_exact_with_codec_tokens(tmp_path, manifest):
    ex = TokenExtractor(tiny_codec())
    cache = extract_features(manifest, MINI_DATA, ex, tmp_path / "c", shard_size=2)
    assert len(cache) == 5 and list(cache.keys()) == CLIPS and CLIPS[0] in cache and "nope" not in cache
    for clip in CLIPS:
        got = FeatureCache(tmp_path / "c").get(clip)
        assert got.device.type == "cpu" and torch.equal(got, _direct(ex, clip))
    clone = pickle.loads(pickle.dumps(cache))  # a DataLoader worker's copy re-opens its shards
    assert torch.equal(clone.get(CLIPS[4]), cache.get(CLIPS[4]))
    cache.MAX_OPEN_SHARDS = 2
    for clip in CLIPS:
        cache.get(clip)
    assert list(cache._open) == [1, 2]
    m = cache.meta
    assert m["kind"] == "tokens" and m["frame_rate"] == 50.0 and m["dtype"] == "int64" and m["frame_shape"] == [1]
    assert m["config_hash"] == ex.config_hash and len(m["config_hash"]) == 16
    assert len(list((tmp_path / "c" / "shards").iterdir())) == 3
    FeatureCache(tmp_path / "c", expect=ex)
    FeatureCache(tmp_path / "c", expect=m)
    with pytest.raises(CodecError, match="another extractor configuration"):
        FeatureCache(tmp_path / "c", expect=TokenExtractor(tiny_codec(levels=(4, 4))))
    with pytest.raises(CodecError, match="another extractor configuration"):
        FeatureCache(tmp_path / "c", expect="0123456789abcdef")


def test_missing_id_is_one_line_naming_folder_and_id(tmp_path, manifest):
    cache = extract_features(manifest, MINI_DATA, Frames(), tmp_path / "c", shard_size=2)
    with pytest.raises(CodecError) as err:
        cache.get("LJ999-0000")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "c") in msg and "LJ999-0000" in msg


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, manifest):
    ref = Frames()
    extract_features(manifest, MINI_DATA, ref, tmp_path / "ref", shard_size=2)

    class Killed(Exception):
        pass

    def kill_after_two(k):
        if k == 1:
            raise Killed

    ex = Frames()
    with pytest.raises(Killed):
        extract_features(manifest, MINI_DATA, ex, tmp_path / "c", shard_size=2, on_shard=kill_after_two)
    assert ex.calls == 4 and not (tmp_path / "c" / "index.json").exists()
    with pytest.raises(CodecError, match="unfinished extraction"):
        FeatureCache(tmp_path / "c")
    ex2 = Frames()
    extract_features(manifest, MINI_DATA, ex2, tmp_path / "c", shard_size=2)
    assert ex2.calls == 1  # only the last shard was left
    assert _files(tmp_path / "c") == _files(tmp_path / "ref")
    again = Frames()  # finished: nothing is redone
    extract_features(manifest, MINI_DATA, again, tmp_path / "c", shard_size=2)
    assert again.calls == 0


def test_a_shard_interrupted_mid_write_leaves_no_file(tmp_path, manifest):
    class Dies(Frames):
        def __call__(self, sig):
            if self.calls == 2:
                raise KeyboardInterrupt
            return super().__call__(sig)

    with pytest.raises(KeyboardInterrupt):
        extract_features(manifest, MINI_DATA, Dies(), tmp_path / "c", shard_size=3)
    assert [p.name for p in (tmp_path / "c" / "shards").iterdir()] == []  # no temporary left, nothing half-written


@pytest.mark.parametrize("change", [{"shard_size": 3}, {"dtype": "float16"}, {"scale": 2.0}])
def test_other_options_are_refused(tmp_path, manifest, change):
    def kill(k):
        raise RuntimeError("kill")

    with pytest.raises(RuntimeError):  # interrupted after the first shard: a plan and one shard
        extract_features(manifest, MINI_DATA, Frames(), tmp_path / "c", shard_size=2, on_shard=kill)
    kw = {"shard_size": 2, **{k: v for k, v in change.items() if k != "scale"}}
    with pytest.raises(CodecError) as err:
        extract_features(manifest, MINI_DATA, Frames(change.get("scale", 1.0)), tmp_path / "c", **kw)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "c") in msg and "other options" in msg


def test_other_manifest_is_refused(tmp_path, manifest):
    extract_features(manifest, MINI_DATA, Frames(), tmp_path / "c", shard_size=2)
    other = _manifest(tmp_path / "o.csv", CLIPS[:3])
    with pytest.raises(CodecError, match="manifest_fingerprint differ"):
        extract_features(other, MINI_DATA, Frames(), tmp_path / "c", shard_size=2)


def test_two_ranks_then_merge_equal_one_rank(tmp_path, manifest):
    extract_features(manifest, MINI_DATA, Frames(), tmp_path / "one", shard_size=2)
    a, b = Frames(), Frames()
    assert extract_features(manifest, MINI_DATA, a, tmp_path / "two", shard_size=2, rank=0, world_size=2) is None
    with pytest.raises(CodecError, match="unfinished"):
        FeatureCache(tmp_path / "two")
    with pytest.raises(CodecError, match="1 of 3 shards not extracted"):
        merge(tmp_path / "two")
    assert extract_features(manifest, MINI_DATA, b, tmp_path / "two", shard_size=2, rank=1, world_size=2) is None
    assert (a.calls, b.calls) == (3, 2)  # shards 0, 2 and shard 1
    merge(tmp_path / "two")
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    # rank 0 finishing last merges by itself
    extract_features(manifest, MINI_DATA, Frames(), tmp_path / "rev", shard_size=2, rank=1, world_size=2)
    assert extract_features(manifest, MINI_DATA, Frames(), tmp_path / "rev", shard_size=2, rank=0, world_size=2)
    assert _files(tmp_path / "rev") == _files(tmp_path / "one")


def test_rank_from_environment(tmp_path, manifest, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    ex = Frames()
    extract_features(manifest, MINI_DATA, ex, tmp_path / "c", shard_size=2)
    assert ex.calls == 2 and [p.name for p in (tmp_path / "c" / "shards").iterdir()] == ["00001.safetensors"]


def test_damaged_or_missing_shard_is_a_one_line_error_naming_the_file(tmp_path, manifest):
    folder = tmp_path / "c"
    extract_features(manifest, MINI_DATA, Frames(), folder, shard_size=2)
    shard = folder / "shards" / "00001.safetensors"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])
    cache = FeatureCache(folder)
    cache.get(CLIPS[0])  # shard 0 is fine
    with pytest.raises(CodecError) as err:
        cache.get(CLIPS[2])
    assert "\n" not in str(err.value) and str(shard) in str(err.value) and "truncated" in str(err.value)
    with pytest.raises(CodecError, match="corrupt or truncated shard"):
        merge(folder)
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    with pytest.raises(CodecError, match="checksum mismatch") as err:
        FeatureCache(folder).verify()
    assert str(shard) in str(err.value)
    shard.unlink()
    with pytest.raises(CodecError) as err:
        FeatureCache(folder).get(CLIPS[3])
    assert "\n" not in str(err.value) and str(shard) in str(err.value) and "missing" in str(err.value)
    # a resumed extraction redoes the missing shard and restores the same cache
    (folder / "index.json").unlink()
    extract_features(manifest, MINI_DATA, Frames(), folder, shard_size=2)
    assert shard.read_bytes() == good
    FeatureCache(folder).verify()


def test_ssl_extractor_any_layer_on_a_tiny_wavlm(tmp_path):
    from tests.unit.test_ssl import _save

    from speechbrain_codec.encoders import SSLEncoder

    manifest = _manifest(tmp_path / "m.csv", CLIPS[:3])

    model = _save("wavlm", tmp_path / "wavlm", layers=3)
    ex = SSLExtractor(model, layers=2)
    cache = extract_features(manifest, MINI_DATA, ex, tmp_path / "c", shard_size=2, dtype="float32")
    enc = SSLEncoder(model, layers=2).eval()
    for clip in CLIPS[:2]:
        with torch.no_grad():
            ref = enc(load_audio(MINI_DATA / "audio" / "en" / f"{clip}.flac", 16000)[None])[0]
        assert torch.equal(cache.get(clip), ref)
    assert cache.meta["frame_shape"] == [16] and cache.meta["frame_rate"] == 50.0
    assert cache.meta["extractor"]["layers"] == [2]
    FeatureCache(tmp_path / "c", expect=ex)
    with pytest.raises(CodecError, match="another extractor configuration"):
        FeatureCache(tmp_path / "c", expect=SSLExtractor(model, layers=1))
    half = extract_features(manifest, MINI_DATA, ex, tmp_path / "h", shard_size=2, dtype="float16")
    assert half.get(CLIPS[0]).dtype == torch.float16


def test_f0_on_a_bundled_clip_and_its_normalisation(tmp_path, mini_clip):
    clip = mini_clip.stem
    man = _manifest(tmp_path / "m.csv", [clip])
    ex = F0Extractor()
    cache = extract_features(man, MINI_DATA, ex, tmp_path / "c", shard_size=1)
    sig = load_audio(mini_clip, 16000)
    f0 = cache.get(clip)
    assert f0.shape == (sig.shape[0] // 80,) and cache.meta["frame_rate"] == 200.0 and cache.meta["frame_shape"] == []
    assert torch.equal(f0, torch.from_numpy(spec_f0(sig.numpy())))
    voiced = f0[f0 > 0]
    assert 0.2 < len(voiced) / len(f0) < 0.95 and 70 < float(voiced.median()) < 350
    stats = cache.f0_stats()
    assert stats["voiced_frames"] == len(voiced)
    assert abs(stats["mean"] - float(voiced.double().mean())) < 1e-6
    assert abs(stats["std"] - float(voiced.double().std(unbiased=False))) < 1e-4
    z = FeatureCache(tmp_path / "c", f0_norm="global").get(clip)
    assert torch.equal(z == 0, f0 == 0) and abs(float(z[f0 > 0].mean())) < 1e-4
    spk = FeatureCache(tmp_path / "c", f0_norm="speaker", f0_stats=cache).get(clip)  # another cache's stats (train)
    assert torch.allclose(spk, z)
    fixed = FeatureCache(tmp_path / "c", f0_norm="global",
                         f0_stats={"global": {"mean": 204.16, "std": 49.846}}).get(clip)
    assert torch.allclose(fixed[f0 > 0], (f0[f0 > 0] - 204.16) / 49.846)
    # the spec's 1280-padded copy: L / 80 frames of the padded length; silence -> all zeros
    assert spec_f0(sig.numpy(), pad_multiple=1280).shape == (-(-sig.shape[0] // 1280) * 16,)
    assert not spec_f0(np.zeros(3840)).any() and spec_f0(np.zeros(3840)).shape == (48,)


def test_command_line_extract_info_merge(tmp_path, manifest, checkpoint, capsys):
    out = tmp_path / "toks"
    assert main(["extract", "--manifest", str(manifest), "--data-root", str(MINI_DATA), "--out", str(out),
                 "--kind", "tokens", "--checkpoint", str(checkpoint), "--shard-size", "2"]) == 0
    assert "5 utterances" in capsys.readouterr().out
    assert main(["info", str(out), "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "tokens" and info["shards"] == 3 and info["verified"]
    assert torch.equal(FeatureCache(out).get(CLIPS[1]), _direct(TokenExtractor(checkpoint), CLIPS[1]))
    assert main(["merge", str(out)]) == 0
    assert main(["info", str(tmp_path / "nothing")]) == 1
    assert "not a feature cache" in capsys.readouterr().err
    assert main(["extract", "--manifest", str(manifest), "--data-root", str(MINI_DATA), "--out", str(out),
                 "--kind", "tokens", "--checkpoint", str(checkpoint), "--shard-size", "3"]) == 1
    assert "other options" in capsys.readouterr().err


def test_under_a_process_group_rank_0_merges_after_a_barrier(tmp_path, manifest):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cache = extract_features(manifest, MINI_DATA, Frames(), tmp_path / "c", shard_size=2)
    finally:
        dist.destroy_process_group()
    extract_features(manifest, MINI_DATA, Frames(), tmp_path / "ref", shard_size=2)
    assert len(cache) == 5 and _files(tmp_path / "c") == _files(tmp_path / "ref")
