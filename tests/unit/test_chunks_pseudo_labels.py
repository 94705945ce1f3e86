"""FocalCodec-S fixed chunks and the Whisper pseudo-label cache (focalcodec_s.md §1.3, §3.3–3.4):
the chunk rule and its IDs, the trainer's chunk items, the resumable pseudo_labels script with
a tiny random Whisper, the trainer reading the cache (checked against its chunk list, part of
the training configuration), and the loss with cached labels equal to the loss decoding online."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.alignment import read_alignment
from speechbrain_codec.bin import pseudo_labels as pl
from speechbrain_codec.bin import train_codec as tc
from speechbrain_codec.dataio import load_audio, read_manifest, save_audio, write_manifest
from speechbrain_codec.dataio.segments import chunks_sha256, cut_chunk, dropped_line, fixed_chunks
from speechbrain_codec.losses import WhisperTokenLoss
from speechbrain_codec.utils import CodecError
from tests.tiny_models import tiny_whisper

from ..conftest import tiny_codec
from .test_bin_train_codec import SR, Recorder, alignments, hparams_of, manifests, rows  # noqa: F401

# ---------------------------------------------------------------------------- the chunk rule


def test_chunk_counts_and_ids_follow_the_spec_rule():
    durations = {"z-last": 8.0, "a-exact": 3.0, "m-short": 2.99, "b-mid": 5.5}  # not in ID order
    table = {u: {"ID": u, "duration": d} for u, d in durations.items()}
    chunks = fixed_chunks(table, 3.0, 2.5, 16000)
    per_utt = {u: [c for c in chunks if c.utt_id == u] for u in table}
    assert {u: len(c) for u, c in per_utt.items()} == {"z-last": 3, "a-exact": 1, "m-short": 0, "b-mid": 2}
    # manifest row order, chunk ID = <utterance ID>@<start sample>, 48000-sample chunks every 40000
    assert [c.chunk_id for c in chunks] == ["z-last@0", "z-last@40000", "z-last@80000", "a-exact@0",
                                            "b-mid@0", "b-mid@40000"]
    assert all(c.stop - c.start == 48000 for c in chunks) and per_utt["z-last"][-1].stop == 128000
    assert fixed_chunks(dict(table), 3.0, 2.5, 16000) == chunks  # deterministic
    assert chunks_sha256(fixed_chunks(table, 3.0, 2.5, 16000)) == chunks_sha256(chunks)
    assert dropped_line(table, chunks, 3.0) == "dropped 1 of 4 utterances shorter than 3.0 s"
    # validation: hop = chunk (no overlap) by default
    assert [c.chunk_id for c in fixed_chunks(table, 3.0, None, 16000)] == ["z-last@0", "z-last@48000", "a-exact@0",
                                                                          "b-mid@0"]
    with pytest.raises(CodecError, match="chunk_seconds needs the manifests' duration column; x has none"):
        fixed_chunks({"x": {"ID": "x", "duration": ""}}, 3.0)


def test_cut_chunk_pads_rounding_only():
    sig = torch.arange(16000.0)
    assert torch.equal(cut_chunk(sig, 8000, 16000, 16000), sig[8000:])
    assert cut_chunk(sig, 8000, 16008, 16000)[-8:].abs().sum() == 0  # a duration rounded up by 0.5 ms
    with pytest.raises(CodecError, match="a.wav: 1.000 s of audio, but the manifest's duration plans a chunk up to "
                                         "1.500 s"):
        cut_chunk(sig, 8000, 24000, 16000, "a.wav")


# ---------------------------------------------------------------------------- trainer chunk items


def test_trainer_builds_fixed_chunk_items(manifests, alignments, capsys):  # noqa: F811
    asr = Recorder(("sig_hat", "sig", "text?", "lang", "spk_id", "duration", "alignment"))
    hp = hparams_of(manifests, {"asr": asr}, chunk_seconds=4.0, chunk_hop_seconds=2.5, alignment_folder=str(alignments))
    assert tc.batch_keys(hp) == ["id", "sig", "lang", "spk_id", "duration", "alignment"]  # no text for chunks
    loader, _, valid, whole = tc.dataio_prepare(hp)
    out = capsys.readouterr().out
    assert "train.csv: dropped 1 of 12 utterances shorter than 4.0 s" in out  # axb_arctic_a0006, 3.54 s
    assert "valid.csv: dropped 1 of 2 utterances shorter than 4.0 s" in out
    train, val = rows(manifests, "train"), rows(manifests, "valid")
    plan = fixed_chunks(train, 4.0, 2.5, SR)
    assert len(loader.dataset) == len(plan) and len(whole) == len(train)
    assert [loader.dataset[i]["id"] for i in range(len(plan))] == [f"{c.chunk_id}__0" for c in plan]
    for i in (0, 5, len(plan) - 1):
        item, c = loader.dataset[i], plan[i]
        audio = load_audio(train[c.utt_id]["wav"], SR, notices=False)
        assert torch.equal(item["sig"], cut_chunk(audio, c.start, c.stop, SR))
        assert item["lang"] == train[c.utt_id]["lang"] and item["duration"] == 4.0
        whole_words = read_alignment(next(alignments.glob(f"{c.utt_id}.*")))
        assert item["alignment"] == tc.cut_alignment(whole_words, c.start / SR, 4.0)
    # every epoch the same chunk: nothing random
    assert torch.equal(loader.dataset[3]["sig"], loader.dataset[3]["sig"])
    # validation: the valid hop (here = chunk), chunk IDs as item IDs
    assert [valid[i]["id"] for i in range(len(valid))] == [c.chunk_id for c in fixed_chunks(val, 4.0, None, SR)]
    batch = next(iter(loader))
    assert batch.sig[0].shape[-1] == 4 * SR and not hasattr(batch, "text")


def test_chunk_options_are_checked(manifests, tmp_path):  # noqa: F811
    with pytest.raises(CodecError, match="chunk_seconds and concat_seconds exclude each other"):
        tc.batch_keys(hparams_of(manifests, {}, chunk_seconds=3.0, concat_seconds=10.0))
    with pytest.raises(CodecError, match="loss 'asr' takes 'text': training items are fixed chunks"):
        tc.batch_keys(hparams_of(manifests, {"asr": Recorder(("sig_hat", "text"))}, chunk_seconds=3.0))
    with pytest.raises(CodecError, match="label_cache is set but chunk_seconds is not"):
        tc.batch_keys(hparams_of(manifests, {}, label_cache=str(tmp_path)))
    with pytest.raises(CodecError, match="loss 'asr' takes 'pseudo_labels': set label_cache"):
        tc.batch_keys(hparams_of(manifests, {"asr": Recorder(("sig_hat", "pseudo_labels"))}, chunk_seconds=3.0))


# ---------------------------------------------------------------------------- the pseudo-label cache

CHUNK, HOP = 1.0, 0.5  # the tiny Whisper listens to a 1-s window


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return tiny_whisper(tmp_path_factory.mktemp("whisper"), audio_gain=10.0, max_source_positions=50)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four clips: 2.0 s en (3 chunks), 1.5 s zh (2), 0.8 s (dropped), 1.2 s without lang (1)."""
    folder = tmp_path_factory.mktemp("corpus")
    gen = torch.Generator().manual_seed(0)
    items = []
    for uid, seconds, lang in [("a", 2.0, "en"), ("b", 1.5, "zh"), ("c", 0.8, "en"), ("d", 1.2, "")]:
        save_audio(folder / f"{uid}.wav", torch.randn(int(seconds * SR), generator=gen) * 0.1, SR)
        items.append({"ID": uid, "duration": seconds, "wav": f"{{data_root}}/{uid}.wav", "spk_id": uid,
                      "lang": lang, "text": "some words"})
    write_manifest(folder / "train.csv", items)
    return folder


def _argv(corpus, whisper_dir, out, *extra):
    return ["--manifest", str(corpus / "train.csv"), "--data_folder", str(corpus), "--whisper", str(whisper_dir),
            "--output", str(out), "--chunk_seconds", str(CHUNK), "--hop_seconds", str(HOP), "--batch_size", "2",
            "--shard_size", "2", "--max_new_tokens", "4", "--device", "cpu", *extra]


_ORIGINAL_PSEUDO = WhisperTokenLoss.pseudo_labels
_ORIGINAL_TF = WhisperTokenLoss.teacher_forcing


class Killed(Exception):
    pass


class Counting:
    """Wraps WhisperTokenLoss.pseudo_labels: counts the calls, raises after ``fail_after``."""

    def __init__(self, monkeypatch, fail_after=None):
        self.calls, self.fail_after = 0, fail_after
        original = _ORIGINAL_PSEUDO

        def wrapped(loss, *args, **kw):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise Killed  # the job stopped half-way
            self.calls += 1
            return original(loss, *args, **kw)

        monkeypatch.setattr(WhisperTokenLoss, "pseudo_labels", wrapped)


@pytest.fixture(scope="module")
def cache(corpus, whisper_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("labels") / "train"
    pl.main(_argv(corpus, whisper_dir, out))
    return out


def test_pseudo_label_script_resumes_and_refuses_other_settings(corpus, whisper_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "labels"
    counting = Counting(monkeypatch, fail_after=2)  # 6 chunks, shards of 2, batches of 2: killed in shard 3
    with pytest.raises(Killed):
        pl.main(_argv(corpus, whisper_dir, out))
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.json", "00001.json"]
    assert not (out / "labels.json").exists() and not (out / "stamp.json").exists()
    text = capsys.readouterr().out
    assert "train.csv: dropped 1 of 4 utterances shorter than 1.0 s; 6 chunks" in text
    assert "1 of 3 utterances have no lang (e.g. d): their chunks are prompted with <|en|> (--language)" in text

    counting = Counting(monkeypatch)
    stamp = pl.main(_argv(corpus, whisper_dir, out))
    assert counting.calls == 1 and (stamp["decoded"], stamp["reused"]) == (2, 4)  # only the missing shard
    assert not (out / "shards").exists()
    plan = fixed_chunks(read_manifest(corpus / "train.csv", corpus), CHUNK, HOP, SR)
    labels = json.loads((out / "labels.json").read_text())
    assert list(labels) == [c.chunk_id for c in plan] == ["a@0", "a@8000", "a@16000", "b@0", "b@8000", "d@0"]
    assert [v["lang"] for v in labels.values()] == ["en", "en", "en", "zh", "zh", "en"]
    saved = json.loads((out / "stamp.json").read_text())
    assert saved["chunks_sha256"] == chunks_sha256(plan) and saved["whisper"] == str(whisper_dir)
    assert (saved["chunk_seconds"], saved["hop_seconds"], saved["sample_rate"], saved["rows_without_lang"]) == (
        CHUNK, HOP, SR, 1)

    # the labels are the loss's own greedy decoding of each clean chunk
    loss = WhisperTokenLoss(str(whisper_dir), target="pseudo", max_new_tokens=4)
    data = read_manifest(corpus / "train.csv", corpus)
    for c in plan:
        sig = cut_chunk(load_audio(data[c.utt_id]["wav"], SR), c.start, c.stop, SR)
        assert labels[c.chunk_id]["tokens"] == loss.pseudo_labels(sig[None], [labels[c.chunk_id]["lang"]])[0]
    assert any(v["tokens"] for v in labels.values())

    counting = Counting(monkeypatch)
    assert pl.main(_argv(corpus, whisper_dir, out))["decoded"] == 0 and counting.calls == 0  # up to date
    with pytest.raises(CodecError) as err:
        pl.main(_argv(corpus, whisper_dir, out, "--max_new_tokens", "3"))
    msg = str(err.value)
    assert "made with other settings (max_new_tokens: 4 in the cache, 3 here)" in msg and "\n" not in msg
    assert "python -m speechbrain_codec.bin.pseudo_labels --manifest" in msg and "--overwrite true" in msg
    assert pl.run(_argv(corpus, whisper_dir, out, "--hop_seconds", "1.0")) == 1
    assert "hop_seconds: 0.5 in the cache, 1.0 here" in capsys.readouterr().err
    stamp = pl.main(_argv(corpus, whisper_dir, out, "--hop_seconds", "1.0", "--overwrite", "true"))
    assert stamp["n_chunks"] == 4 and stamp["decoded"] == 4


def _chunk_hparams(corpus, cache_dir, loss, **extra):
    return {"train_csv": str(corpus / "train.csv"), "valid_csv": str(corpus / "train.csv"), "data_folder": str(corpus),
            "sample_rate": SR, "segment_seconds": 1.0, "train_repeats": 1, "cache_audio": False, "seed": 7,
            "train_dataloader_opts": {"batch_size": 6}, "losses": {"asr": loss}, "chunk_seconds": CHUNK,
            "chunk_hop_seconds": HOP, "label_cache": str(cache_dir), **extra}


def test_the_trainer_reads_the_cache_and_the_loss_uses_it(corpus, whisper_dir, cache, monkeypatch, capsys):
    loss = WhisperTokenLoss(str(whisper_dir), target="pseudo", max_new_tokens=4)
    assert loss.inputs == ("sig_hat", "sig", "text?", "lang?", "lens", "pseudo_labels?")
    hp = _chunk_hparams(corpus, cache, loss)
    assert tc.batch_keys(hp) == ["id", "sig", "lang", "pseudo_labels"]
    loader, _, valid, _ = tc.dataio_prepare(hp)
    assert f"pseudo-labels of the 6 train chunks from {cache}" in capsys.readouterr().out
    labels = json.loads((cache / "labels.json").read_text())
    batch = sb.dataio.batch.PaddedBatch([loader.dataset[i] for i in range(len(loader.dataset))])
    assert batch.pseudo_labels == [labels[i.rsplit("__", 1)[0]]["tokens"] for i in batch.id]
    assert "pseudo_labels" not in valid[0]  # no valid_label_cache: validation decodes online

    # the loss on cached labels = the loss decoding the same clean chunks online
    sig = batch.sig[0]
    sig_hat = sig + 0.05 * torch.randn(sig.shape, generator=torch.Generator().manual_seed(3))
    langs = [lang or "en" for lang in batch.lang]
    online = loss(sig_hat, sig, None, langs, None)
    cached = loss(sig_hat, sig, None, langs, None, batch.pseudo_labels)
    assert online.item() > 0 and abs(cached.item() - online.item()) < 1e-6, (cached.item(), online.item())
    assert loss(sig_hat, sig, None, langs, None, [[] for _ in langs]).item() == 0.0  # nothing to score

    # through CodecBrain: the batch key reaches the loss by name; nothing is decoded online
    from speechbrain_codec.training import CodecBrain

    monkeypatch.setattr(WhisperTokenLoss, "pseudo_labels", lambda *a, **k: pytest.fail("decoded online"))
    seen = []
    monkeypatch.setattr(WhisperTokenLoss, "teacher_forcing",
                        lambda self, y, langs, device=None: _teacher_forcing(self, y, langs, device, seen))
    brain = CodecBrain(modules={"codec": tiny_codec()}, hparams={"losses": {"asr": loss}, "loss_weights": {}},
                       run_opts={"device": "cpu", "noprogressbar": True})
    brain.on_stage_start(sb.Stage.VALID)
    brain.compute_objectives(brain.compute_forward(batch, sb.Stage.VALID), batch, sb.Stage.VALID)
    assert seen == [batch.pseudo_labels]


def _teacher_forcing(self, labels, langs, device, seen):
    seen.append(labels)
    return _ORIGINAL_TF(self, labels, langs, device)


def test_a_cache_for_other_chunks_or_without_a_chunk_is_refused(corpus, whisper_dir, cache, tmp_path):
    loss = WhisperTokenLoss(str(whisper_dir), target="pseudo", max_new_tokens=4)
    with pytest.raises(CodecError) as err:
        tc.dataio_prepare(_chunk_hparams(corpus, cache, loss, chunk_hop_seconds=1.0))
    msg = str(err.value)
    assert msg.startswith(f"label_cache {cache} was made for another chunk list (hop_seconds: 0.5 in the cache, "
                          "1.0 here; n_chunks: 6 in the cache, 4 here; chunks_sha256:")
    assert f"regenerate it: python -m speechbrain_codec.bin.pseudo_labels --manifest {corpus / 'train.csv'}" in msg
    assert f"--whisper {whisper_dir}" in msg and "--hop_seconds 1.0" in msg and "\n" not in msg
    with pytest.raises(CodecError, match=f"label_cache {tmp_path / 'none'}: no such folder; make it with: python -m"):
        tc.dataio_prepare(_chunk_hparams(corpus, tmp_path / "none", loss))

    # a chunk missing from labels.json (its stamp made to agree): one line at that chunk
    broken = tmp_path / "broken"
    shutil.copytree(cache, broken)
    labels = json.loads((broken / "labels.json").read_text())
    del labels["b@8000"]
    (broken / "labels.json").write_text(json.dumps(labels))
    stamp = json.loads((broken / "stamp.json").read_text())
    with pytest.raises(CodecError, match="labels.json does not match its stamp.json"):
        tc.dataio_prepare(_chunk_hparams(corpus, broken, loss))
    stamp["labels_sha256"] = pl._sha(broken / "labels.json")
    (broken / "stamp.json").write_text(json.dumps(stamp))
    loader, _, _, _ = tc.dataio_prepare(_chunk_hparams(corpus, broken, loss))
    assert loader.dataset[3]["pseudo_labels"] == labels["b@0"]["tokens"]
    with pytest.raises(CodecError) as err:
        loader.dataset[4]
    assert str(err.value).startswith(f"chunk b@8000 is not in the label_cache {broken}; regenerate it: python -m "
                                     "speechbrain_codec.bin.pseudo_labels")


def test_the_cache_content_is_part_of_the_training_configuration(corpus, whisper_dir, cache, tmp_path):
    hp_file = tmp_path / "train.yaml"
    hp_file.write_text(f"train_csv: {corpus / 'train.csv'}\nvalid_csv: {corpus / 'train.csv'}\n"
                       f"label_cache: {cache}\nchunk_seconds: {CHUNK}\nchunk_hop_seconds: {HOP}\n")
    loss = WhisperTokenLoss(str(whisper_dir), target="pseudo", max_new_tokens=4)
    hp = _chunk_hparams(corpus, cache, loss)
    config = tc.training_config(str(hp_file), {}, hp, "codec: {}\n")
    stamp = json.loads((cache / "stamp.json").read_text())
    assert config["hparams"]["label_cache"] == "@label_cache"  # a location, not a property
    assert config["data"]["label_cache"] == stamp["labels_sha256"][:16]
    moved = tmp_path / "elsewhere"
    shutil.copytree(cache, moved)
    hp_file.write_text(hp_file.read_text().replace(str(cache), str(moved)))
    same = tc.training_config(str(hp_file), {}, {**hp, "label_cache": str(moved)}, "codec: {}\n")
    assert same["sha256"] == config["sha256"]  # the same labels elsewhere: the same configuration
    stamp["labels_sha256"] = "0" * 64  # a regenerated cache: other labels
    (moved / "stamp.json").write_text(json.dumps(stamp))
    changed = tc.training_config(str(hp_file), {}, {**hp, "label_cache": str(moved)}, "codec: {}\n")
    assert changed["sha256"] != config["sha256"] and tc.config_differences(config, changed) == ["data: label_cache"]
