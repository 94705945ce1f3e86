"""The generic trainer's data pipeline (speechbrain_codec.bin.train_codec): every key a loss asks
for (manifest columns, word alignments cut to the crop, cached features by ID, cached features as
the codec input), one-line errors for keys nothing provides, the GAN brain, and the thin
entry points (train_lm, manifest_subset, recipes/mini/train.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.alignment import Word, read_alignment, write_alignment, write_textgrid
from speechbrain_codec.bin import train_codec as tc
from speechbrain_codec.dataio import load_audio, read_manifest
from speechbrain_codec.utils import CodecError

from ..conftest import ROOT, tiny_codec

MINI = ROOT / "recipes" / "mini"
SR = 16000


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


class Recorder(torch.nn.Module):
    """A loss that keeps what CodecBrain passed it."""

    def __init__(self, inputs):
        super().__init__()
        self.inputs = tuple(inputs)
        self.calls = []

    def forward(self, *args):
        self.calls.append(args)
        return args[0].abs().mean() if isinstance(args[0], torch.Tensor) else torch.zeros(())


class NeedsSpeakerName(torch.nn.Module):
    """For the entry-point test: a loss asking for a column the mini manifests lack."""

    inputs = ("sig_hat", "speaker_name")

    def forward(self, sig_hat, names):
        return sig_hat.abs().mean()


class StandInCache:
    """Exposes ``.get(utt_id)`` as FeatureCache: frame f of every utterance is ``[f, f, f]``,
    one frame per 320 samples."""

    def __init__(self, rows):
        self.frames = {uid: int(row["duration"] * SR) // 320 for uid, row in rows.items()}

    def get(self, utt_id):
        return torch.arange(self.frames[utt_id], dtype=torch.float16)[:, None].repeat(1, 3)

    def keys(self):
        return self.frames.keys()


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bin") / "data"
    subprocess.run([sys.executable, str(MINI / "mini_prepare.py"), "--data_folder", str(MINI / "data"),
                    "--save_folder", str(folder)], check=True, capture_output=True, env=env())
    return folder


def hparams_of(manifests: Path, losses: dict, **extra) -> dict:
    return {
        "train_csv": str(manifests / "train.csv"), "valid_csv": str(manifests / "valid.csv"),
        "data_folder": str(MINI / "data"), "sample_rate": SR, "segment_seconds": 1.0, "train_repeats": 1,
        "cache_audio": False, "seed": 7, "train_dataloader_opts": {"batch_size": 4, "shuffle": True},
        "losses": losses, **extra,
    }


def rows(manifests: Path, split: str) -> dict:
    return read_manifest(manifests / f"{split}.csv", MINI / "data")


# ---------------------------------------------------------------------------- output keys


def test_default_losses_need_the_signal_only(manifests):
    hp = hparams_of(manifests, {"mel": Recorder(("sig_hat", "sig")), "lat": Recorder(("qfeats", "feats", "lens"))})
    assert tc.batch_keys(hp) == ["id", "sig"]


def test_asr_loss_inputs_bring_text_and_language(manifests):
    """The Whisper / CTC losses' inputs: text and language per utterance, so a Mandarin clip is
    prompted with its own language; optional keys the data lacks are left out (None)."""
    asr = Recorder(("sig_hat", "sig", "text?", "lang?", "lens", "accent?"))
    hp = hparams_of(manifests, {"asr": asr, "mel": Recorder(("sig_hat", "sig"))})
    assert tc.batch_keys(hp) == ["id", "sig", "text", "lang"]
    _, _, valid, _ = tc.dataio_prepare(hp)
    from speechbrain_codec.training import CodecBrain

    brain = CodecBrain(modules={"codec": tiny_codec()}, hparams={"losses": hp["losses"], "loss_weights": {}},
                       run_opts={"device": "cpu", "noprogressbar": True})
    batch = sb.dataio.batch.PaddedBatch([valid[i] for i in range(len(valid))])
    brain.on_stage_start(sb.Stage.VALID)
    brain.compute_objectives(brain.compute_forward(batch, sb.Stage.VALID), batch, sb.Stage.VALID)
    _, _, texts, langs, lens, accent = asr.calls[-1]
    expected = rows(manifests, "valid")
    assert langs == [expected[u]["lang"] for u in batch.id] and sorted(langs) == ["en", "zh"]
    assert texts == [expected[u]["text"] for u in batch.id] and all(texts)
    assert accent is None and lens.shape == (2,)


def test_every_manifest_column_is_a_key(manifests):
    hp = hparams_of(manifests, {"spk": Recorder(("sig_hat", "spk_id", "duration"))})
    assert tc.batch_keys(hp) == ["id", "sig", "spk_id", "duration"]
    loader, _, _, _ = tc.dataio_prepare(hp)
    batch = next(iter(loader))
    train = rows(manifests, "train")
    uids = [u.rsplit("__", 1)[0] for u in batch.id]
    assert batch.spk_id == [train[u]["spk_id"] for u in uids]
    assert batch.duration.tolist() == pytest.approx([train[u]["duration"] for u in uids])


@pytest.mark.parametrize(
    "inputs, message",
    [
        (("sig_hat", "speaker_name"), "loss 'x' takes 'speaker_name': it is not a column of train.csv"),
        (("sig_hat", "alignment"), "loss 'x' takes 'alignment': set alignment_folder in the hparams"),
        (("qfeats", "cached_feats"), "loss 'x' takes 'cached_feats': set feature_cache in the hparams"),
    ],
    ids=["column", "alignment", "features"],
)
def test_a_key_nothing_provides_is_one_line_error(manifests, inputs, message):
    with pytest.raises(CodecError) as err:
        tc.batch_keys(hparams_of(manifests, {"x": Recorder(inputs)}))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    if "column" in message:
        assert "columns: ID, duration, wav, spk_id, lang, text" in str(err.value)


def test_the_entry_point_stops_before_training(manifests, tmp_path):
    """Through main(): the error comes before training (no checkpoint, no configuration record)."""
    yaml_text = (MINI / "hparams" / "train.yaml").read_text().replace(
        "losses:\n", "losses:\n    who: !new:tests.unit.test_bin_train_codec.NeedsSpeakerName\n", 1)
    hp = tmp_path / "train.yaml"
    hp.write_text(yaml_text)
    out = tmp_path / "out"
    with pytest.raises(CodecError, match="loss 'who' takes 'speaker_name': it is not a column of train.csv"):
        tc.main([str(hp), "--data_folder", str(MINI / "data"), "--manifest_folder", str(manifests),
                 "--output_folder", str(out), "--codec_hparams", str(MINI / "hparams" / "codec" / "mel_fsq.yaml"),
                 "--overrides_file", str(MINI / "hparams" / "debug.yaml")])
    assert not list(out.glob("save/CKPT*")) and not (out / "training_config.json").exists()


# ---------------------------------------------------------------------------- alignments


@pytest.fixture(scope="module")
def alignments(manifests, tmp_path_factory):
    """Words every 0.3 s over each clip: TextGrids for the English clips, JSON for the others."""
    folder = tmp_path_factory.mktemp("align")
    for split in ("train", "valid"):
        for uid, row in rows(manifests, split).items():
            words = [Word(round(t, 3), round(t + 0.25, 3), f"w{i}")
                     for i, t in enumerate(torch.arange(0.05, row["duration"] - 0.3, 0.3).tolist())]
            if row["lang"] == "en":
                write_textgrid(folder / f"{uid}.TextGrid", words, row["duration"])
            else:
                write_alignment(folder / f"{uid}.json", words)
    return folder


def test_alignments_are_read_and_cut_to_the_crop(manifests, alignments):
    ttr = Recorder(("sig_hat", "alignment"))
    hp = hparams_of(manifests, {"ttr": ttr}, alignment_folder=str(alignments))
    loader, _, valid, _ = tc.dataio_prepare(hp)
    loader.dataset.set_output_keys(tc.batch_keys(hp) + ["crop_start"])
    train = rows(manifests, "train")
    seen = 0
    for batch in loader:
        for uid, words, start, sig in zip(batch.id, batch.alignment, batch.crop_start.tolist(), batch.sig[0]):
            uid = uid.rsplit("__", 1)[0]
            path = alignments / (f"{uid}.TextGrid" if train[uid]["lang"] == "en" else f"{uid}.json")
            whole = read_alignment(path)
            assert words == tc.cut_alignment(whole, start / SR, 1.0)
            assert words and all(0.0 <= w.start < w.end <= 1.0 for w in words)
            # crop_start is where the crop was taken from
            audio = load_audio(train[uid]["wav"], SR, notices=False)
            assert torch.equal(sig[: SR], audio[start : start + SR])
            seen += 1
    assert seen == len(train)
    item = valid[0]  # validation: the whole clip, every word
    assert item["alignment"] == read_alignment(next(alignments.glob(f"{item['id']}.*")))


def test_missing_alignment_file_names_it(manifests, tmp_path):
    hp = hparams_of(manifests, {"ttr": Recorder(("sig_hat", "alignment"))}, alignment_folder=str(tmp_path))
    _, _, valid, _ = tc.dataio_prepare(hp)
    with pytest.raises(CodecError, match=f"{tmp_path}/aew_arctic_a0003.TextGrid \\(or .json\\): no alignment"):
        valid[0]


# ---------------------------------------------------------------------------- cached features


def test_cached_features_by_id_cut_to_the_crop(manifests, monkeypatch):
    caches = []
    monkeypatch.setattr(tc, "load_feature_cache", lambda folder: caches.append(folder) or
                        StandInCache({**rows(manifests, "train"), **rows(manifests, "valid")}))
    hp = hparams_of(manifests, {"distil": Recorder(("qfeats", "cached_feats"))}, feature_cache="/cache")
    assert tc.batch_keys(hp) == ["id", "sig", "cached_feats"]
    loader, _, valid, _ = tc.dataio_prepare(hp)
    assert caches == ["/cache"]
    loader.dataset.set_output_keys(tc.batch_keys(hp) + ["crop_start"])
    batch = next(iter(loader))
    feats, _ = batch.cached_feats
    assert feats.shape == (4, 50, 3) and feats.dtype == torch.float32
    for f, start in zip(feats, batch.crop_start.tolist()):
        first = start // 320
        assert f[:, 0].tolist() == list(range(first, first + 50))
    item = valid[0]
    duration = rows(manifests, "valid")[item["id"]]["duration"]
    assert item["cached_feats"].shape[0] == int(duration * SR) // 320  # whole clip


def test_cached_features_as_the_codec_input(manifests, monkeypatch):
    """`codec_input: cached_feats`: the batch's sig is the features (crops of segment_seconds
    worth of frames); no audio is read."""
    monkeypatch.setattr(tc, "load_feature_cache", lambda folder: StandInCache(
        {**rows(manifests, "train"), **rows(manifests, "valid")}))
    monkeypatch.setattr(tc, "segment_pipeline", None)  # would be called to read audio
    hp = hparams_of(manifests, {"rec": Recorder(("sig_hat", "sig"))}, feature_cache="/cache",
                    codec_input="cached_feats")
    loader, _, valid, whole = tc.dataio_prepare(hp)
    sig, lens = next(iter(loader)).sig
    assert sig.shape == (4, 50, 3) and torch.all(lens == 1)
    assert valid[0]["sig"].shape[1] == 3 and whole[0]["sig"].shape[1] == 3
    with pytest.raises(CodecError, match="codec_input: cached_feats needs feature_cache"):
        tc.dataio_prepare({**hp, "feature_cache": None})


def test_feature_cache_folder_must_exist(tmp_path):
    with pytest.raises(CodecError, match="no such folder"):
        tc.load_feature_cache(str(tmp_path / "none"))


# ---------------------------------------------------------------------------- brains and entry points

GAN_YAML = """
discriminator: !new:speechbrain_codec.discriminators.MultiResolutionSTFTDiscriminator
    n_ffts: [256]
    hop_lengths: [64]
    filters: 8
disc_opt_class: !name:torch.optim.AdamW
    lr: 0.0002
adv_start_step: 1
"""


def trainer(hparams: Path, manifests: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "speechbrain_codec.bin.train_codec", str(hparams), "--data_folder",
           str(MINI / "data"), "--manifest_folder", str(manifests), "--output_folder", str(out),
           "--codec_hparams", str(MINI / "hparams" / "codec" / "mel_fsq.yaml"), "--device", "cpu",
           "--overrides_file", str(MINI / "hparams" / "debug.yaml"), "--number_of_epochs", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env())


def test_gan_brain_trains_and_checkpoints_the_discriminator(manifests, tmp_path):
    hp = tmp_path / "gan.yaml"
    hp.write_text((MINI / "hparams" / "train.yaml").read_text() + GAN_YAML)
    proc = trainer(hp, manifests, tmp_path / "out", "--brain", "gan")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = next((tmp_path / "out" / "save").glob("CKPT+*"))
    assert {"codec.ckpt", "discriminator.ckpt", "disc_optimizer.ckpt"} <= {p.name for p in ckpt.iterdir()}
    log = (tmp_path / "out" / "train_log.txt").read_text()
    assert "train adv: " in log and "train fm: " in log and "train disc: " in log
    assert (tmp_path / "out" / "codec" / "codec.ckpt").is_file()
    record = json.loads((tmp_path / "out" / "training_config.json").read_text())
    assert record["hparams"]["brain"] == "gan"


def test_gan_brain_without_discriminator_is_one_line_error(manifests, tmp_path):
    proc = trainer(MINI / "hparams" / "train.yaml", manifests, tmp_path / "out", "--brain", "gan")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --brain gan needs discriminator and disc_opt_class in the hparams (a discriminator module and its optimiser)")
    assert "Traceback" not in proc.stderr


def test_recipe_train_py_is_the_generic_trainer(tmp_path):
    proc = subprocess.run([sys.executable, str(MINI / "train.py"), str(MINI / "hparams" / "train.yaml"),
                           "--data_folder", str(MINI / "data"), "--manifest_folder", str(tmp_path / "none"),
                           "--output_folder", str(tmp_path / "out"),
                           "--codec_hparams", str(MINI / "hparams" / "codec" / "mel_fsq.yaml")],
                          capture_output=True, text=True, env=env())
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}/none/train.csv: manifest missing")


def test_train_lm_is_the_lm_trainer():
    import speechbrain_codec.lm.train as lm_train
    from speechbrain_codec.bin import train_lm

    assert train_lm.main is lm_train.main
    proc = subprocess.run([sys.executable, "-m", "speechbrain_codec.bin.train_lm", "--help"],
                          capture_output=True, text=True, env=env())
    assert proc.returncode == 0 and "--units" in proc.stdout


def test_manifest_subset(manifests, tmp_path):
    from speechbrain_codec.bin.manifest_subset import main

    out = tmp_path / "en.csv"
    assert main([str(manifests / "test.csv"), str(out), "--lang", "en", "--with_text"]) == 0
    kept = read_manifest(out)
    assert len(kept) == 4 and {r["lang"] for r in kept.values()} == {"en"}
    assert out.read_text().splitlines()[0] == (manifests / "test.csv").read_text().splitlines()[0]
    assert main([str(tmp_path / "none.csv"), str(out)]) == 1
