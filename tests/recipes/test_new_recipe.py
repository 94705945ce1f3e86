"""tools/new_recipe.py: recipes generated for a made-up language from a manifest (run end to end
on the debug configuration), from a Kaldi directory, for the copied systems (lmloss,
focalcodec_s: their preparation stage), the worked example recipes/AISHELL-S0150/mini (run in
CI), and the refusals: an existing folder (naming its files), --force, a system whose source
recipe is absent, a language without a Whisper token, an ASR that cannot run offline."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ..conftest import ROOT

TOOL = ROOT / "tools" / "new_recipe.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
DEBUG_RUN = ["--debug", "true", "--metrics", "pesq,stoi", "--baselines", "", "--listening_items", "2"]


def _tool_module():
    spec = importlib.util.spec_from_file_location("new_recipe", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["new_recipe"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, env=ENV, timeout=120)


def bash(script: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def _rows(shared_dir: Path, subset: str) -> list[dict]:
    with open(shared_dir / "data" / subset / "manifest.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def xx_manifest(shared_dir: Path, folder: Path) -> Path:
    """A corpus of a made-up language `xx` (the clips are English): a comma-separated table with
    its own split column, paths relative to it, a 48 kHz clip among 16 kHz ones."""
    folder.mkdir(parents=True)
    rows = []
    for subset, n in (("en/cmu_arctic", 7), ("en/librivox", 4), ("en/vctk", 1)):
        for r in _rows(shared_dir, subset)[:n]:
            rows.append({"utt_id": r["utt_id"], "audio": str(shared_dir / "data" / subset / r["path"]),
                         "speaker": r["speaker"], "transcript": r["text"]})
    # relative paths: one clip copied beside the table
    shutil.copy(rows[0]["audio"], folder / "first.flac")
    rows[0]["audio"] = "first.flac"
    for i, r in enumerate(rows):
        r["split"] = "test" if i in (0, 7) else "dev" if i in (1, 8) else "train"
    with open(folder / "corpus.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["utt_id", "audio", "speaker", "transcript", "split"])
        w.writeheader()
        w.writerows(rows)
    return folder / "corpus.csv"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------- xx, manifest
def test_made_up_language_from_a_manifest_runs_end_to_end(shared_dir, tmp_path):
    table = xx_manifest(shared_dir, tmp_path / "corpus")
    recipe = tmp_path / "recipes" / "Xland" / "mini"
    gen = generate("--dataset", "Xland", "--lang", "xx", "--system", "mini", "--from-manifest", str(table),
                   "--out", str(recipe))
    assert gen.returncode == 0, gen.stderr
    assert "no offline ASR for 'xx' (pocketsphinx ships English only)" in gen.stderr
    assert sorted(str(p.relative_to(recipe.parent)) for p in recipe.parent.rglob("*") if p.is_file()) == [
        "mini/README.md", "mini/hparams/codec.yaml", "mini/hparams/debug.yaml", "mini/hparams/language.yaml",
        "mini/hparams/train.yaml", "mini/run.sh", "xland_prepare.py"]
    language = (recipe / "hparams" / "language.yaml").read_text()
    assert "lang: xx " in language and "whisper_language: null " in language and "text_normaliser: latin " in language
    run_sh = (recipe / "run.sh").read_text()
    assert "TODO" not in run_sh and f"data_folder={table.parent}  #" in run_sh and "\nasr=none  #" in run_sh
    assert "TODO" not in (recipe / "README.md").read_text()

    exp = tmp_path / "exp"
    proc = bash(recipe / "run.sh", "--exp", str(exp), *DEBUG_RUN, "--debug_utts", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(1, 9):
        assert f"stage {n}: " in proc.stdout
    assert "sample rates {16000: 11, 48000: 1}" in proc.stdout + proc.stderr
    # the manifests: the table's own split (dev -> valid), xx, latin-normalised text, raw text kept
    test = read_csv(exp / "data" / "test.csv")
    assert [r["ID"] for r in test] == ["aew_arctic_a0001", "sense_and_sensibility_01_austen_64kb-0870"]
    assert test[0]["wav"] == "{data_root}/first.flac" and test[1]["wav"].startswith(str(shared_dir))
    assert {r["lang"] for r in test} == {"xx"}
    assert test[0]["raw_text"] == "Author of the danger trail, Philip Steels, etc."
    assert test[0]["text"] == "author of the danger trail philip steels etc"
    assert len(read_csv(exp / "data" / "valid.csv")) == 2 and len(read_csv(exp / "data" / "train.csv")) == 4
    # the report: our row at the config's bitrate, no ASR
    results = json.loads((exp / "results" / "results.json").read_text())
    assert results["protocol"]["asr"] == "none" and results["systems"]["mini"]["summary"]["utterances"] == 2
    assert "| mini | 498 |" in (exp / "results" / "results.md").read_text()
    # a second run skips every stage
    again = bash(recipe / "run.sh", "--exp", str(exp), *DEBUG_RUN, "--debug_utts", "4", "--stop_stage", "6")
    assert again.returncode == 0 and again.stdout.count("already done with the same options") == 6, again.stdout


# ---------------------------------------------------------------------------------------------- Kaldi
def kaldi_dir(shared_dir: Path, folder: Path) -> tuple[Path, dict]:
    """A Kaldi data directory: two long recordings (clips of AISHELL-1 S0150 joined) cut by a
    segments file, plus a plain per-utterance recording; text and utt2spk."""
    rows = _rows(shared_dir, "zh/aishell1_S0150")[:9]
    folder.mkdir(parents=True)
    scp, segs, text, spk, want = [], [], [], [], {}
    for rec, members in (("recA", rows[0:4]), ("recB", rows[4:8])):
        sigs = [sf.read(shared_dir / "data" / "zh" / "aishell1_S0150" / r["path"], dtype="int16")[0] for r in members]
        sf.write(folder / f"{rec}.wav", np.concatenate(sigs), 16000, subtype="PCM_16")
        scp.append(f"{rec} {rec}.wav")
        t = 0
        for r, s in zip(members, sigs):
            end = t + len(s)
            segs.append(f"{r['utt_id']} {rec} {t / 16000:.4f} {end / 16000:.4f}")
            want[r["utt_id"]] = len(s) / 16000
            text.append(f"{r['utt_id']} {r['text']}，")
            spk.append(f"{r['utt_id']} spk_{rec}")
            t = end
    last = rows[8]
    scp.append(f"{last['utt_id']} {shared_dir / 'data' / 'zh' / 'aishell1_S0150' / last['path']}")
    segs.append(f"{last['utt_id']} {last['utt_id']} 0 -1")
    text.append(f"{last['utt_id']} {last['text']}")
    spk.append(f"{last['utt_id']} spk_last")
    want[last["utt_id"]] = float(last["duration"])
    for name, lines in (("wav.scp", scp), ("segments", segs), ("text", text), ("utt2spk", spk)):
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, want


def test_from_a_kaldi_directory(shared_dir, tmp_path):
    kdir, want = kaldi_dir(shared_dir, tmp_path / "kaldi")
    recipe = tmp_path / "recipes" / "ZhKaldi" / "mini"
    gen = generate("--dataset", "ZhKaldi", "--lang", "cmn", "--system", "mini", "--from-kaldi", str(kdir),
                   "--out", str(recipe))
    assert gen.returncode == 0, gen.stderr
    language = (recipe / "hparams" / "language.yaml").read_text()
    assert "lang: zh " in language and "text_normaliser: cjk " in language and "whisper_language: zh " in language
    assert 'SOURCE = "kaldi"' in (recipe.parent / "zhkaldi_prepare.py").read_text()
    exp = tmp_path / "exp"
    proc = bash(recipe / "run.sh", "--exp", str(exp), "--stop_stage", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["ID"]: r for split in ("train", "valid", "test") for r in read_csv(exp / "data" / f"{split}.csv")}
    assert set(rows) == set(want)  # every utterance in exactly one split
    assert all(len(read_csv(exp / "data" / f"{s}.csv")) >= 1 for s in ("valid", "test"))
    for uid, seconds in want.items():
        assert float(rows[uid]["duration"]) == pytest.approx(seconds, abs=2e-3)
        assert rows[uid]["lang"] == "zh" and "，" not in rows[uid]["text"]
        assert rows[uid]["text"].replace(" ", "") == rows[uid]["raw_text"].rstrip("，")
    assert {rows[u]["spk_id"] for u in want} == {"spk_recA", "spk_recB", "spk_last"}
    # segments were cut into files under the experiment; the whole recording is used in place
    cut = next(u for u in want if u != "BAC009S0150W0129")
    assert rows[cut]["wav"].startswith(str(exp / "data" / "audio"))


# ---------------------------------------------------------------------------------------------- copied systems
def small_manifest(shared_dir: Path, folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True)
    lines = ["utt_id\tpath\tspeaker\ttext"]
    for r in _rows(shared_dir, "zh/aishell1_S0150")[:n]:
        lines.append(f"{r['utt_id']}\t{shared_dir / 'data' / 'zh' / 'aishell1_S0150' / r['path']}\t{r['speaker']}\t{r['text']}")
    (folder / "corpus.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "corpus.tsv"


def test_lmloss_copy_prepares_the_new_corpus(shared_dir, tmp_path):
    table = small_manifest(shared_dir, tmp_path / "corpus")
    recipe = tmp_path / "recipes" / "Zh" / "lmloss"
    gen = generate("--dataset", "Zh", "--lang", "zh", "--system", "lmloss", "--from-manifest", str(table),
                   "--out", str(recipe))
    assert gen.returncode == 0, gen.stderr
    assert (recipe / "pretrain_ttr.py").is_file() and (recipe / "hparams" / "codec" / "lmloss.yaml").is_file()
    assert "language: zh" in (recipe / "hparams" / "phase3.yaml").read_text()
    run_sh = (recipe / "run.sh").read_text()
    assert "ljspeech_prepare" not in run_sh and "--split_names train,val,test" in run_sh
    exp = tmp_path / "exp"
    proc = bash(recipe / "run.sh", "--exp", str(exp), "--stop_stage", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stage 2: word alignments" not in proc.stdout  # only --variant ttr aligns
    counts = {s: len(read_csv(exp / "data" / f"{s}.csv")) for s in ("train", "val", "test", "all", "trainval")}
    assert counts["all"] == 8 and counts["train"] + counts["val"] + counts["test"] == 8
    info = sf.info(str(exp / "wavs_16khz" / (read_csv(exp / "data" / "test.csv")[0]["ID"] + ".wav")))
    assert info.samplerate == 16000 and info.frames % 1280 == 0


def test_focalcodec_s_copy_prepares_the_new_corpus(shared_dir, tmp_path):
    table = small_manifest(shared_dir, tmp_path / "corpus")
    recipe = tmp_path / "recipes" / "Pl" / "focalcodec_s"
    gen = generate("--dataset", "Pl", "--lang", "pol", "--system", "focalcodec_s", "--from-manifest", str(table),
                   "--out", str(recipe))
    assert gen.returncode == 0, gen.stderr
    assert "language: pl" in (recipe / "hparams" / "train.yaml").read_text()
    run_sh = (recipe / "run.sh").read_text()
    code = [line for line in run_sh.splitlines() if not line.lstrip().startswith("#")]
    assert 'langs="pl"' in run_sh and not [line for line in code if "aishell" in line.lower()]
    exp = tmp_path / "exp"
    proc = bash(recipe / "run.sh", "--exp", str(exp), "--stop_stage", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    mono = read_csv(exp / "data" / "mono25" / "train.csv")
    test = read_csv(exp / "data" / "test.csv")
    assert mono and test and {r["lang"] for r in mono + test} == {"pl"}
    assert bash(recipe / "run.sh", "--langs", "de").stderr.strip().endswith("--langs takes pl and/or en, not de")


def test_every_system_is_generated_or_refused_naming_its_source(shared_dir, tmp_path):
    """The table's systems: those whose source recipe exists generate a recipe whose --help runs;
    the others (being written) are refused with one line naming the missing folder."""
    table = small_manifest(shared_dir, tmp_path / "corpus", n=3)
    mod = _tool_module()
    for name, system in mod.SYSTEMS.items():
        recipe = tmp_path / "recipes" / "Any" / name
        gen = generate("--dataset", "Any", "--lang", "de", "--system", name, "--from-manifest", str(table),
                       "--out", str(recipe), "--force")
        if (ROOT / system.source / "run.sh").is_file():
            assert gen.returncode == 0, (name, gen.stderr)
            help_ = bash(recipe / "run.sh", "--help", timeout=60)
            assert help_.returncode == 0 and "Options (default in brackets)" in help_.stdout, (name, help_.stderr)
            assert "language.yaml" in (recipe / "run.sh").read_text()
        else:
            assert gen.returncode == 1
            assert gen.stderr.strip() == (f"error: --system {name}: its source recipe {system.source}/ is not in "
                                          "this checkout (no run.sh); it is generated once that recipe exists")


def test_absent_source_and_unknown_system(tmp_path, monkeypatch, capsys):
    mod = _tool_module()
    monkeypatch.setitem(mod.SYSTEMS, "ghost", mod.System(source="recipes/Nowhere/ghost", summary="x"))
    rc = mod.main(["--dataset", "D", "--lang", "en", "--system", "ghost", "--from-manifest", str(TOOL)])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip().endswith("its source recipe recipes/Nowhere/ghost/ is not in this checkout "
                                            "(no run.sh); it is generated once that recipe exists")
    assert mod.main(["--dataset", "D", "--lang", "en", "--system", "nope"]) == 1
    assert "unknown --system 'nope': one of mini, lmloss, focalcodec_s" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- refusals
def test_existing_folder_is_refused_naming_its_files_then_force(shared_dir, tmp_path):
    table = small_manifest(shared_dir, tmp_path / "corpus", n=3)
    recipe = tmp_path / "recipes" / "Again" / "mini"
    args = ["--dataset", "Again", "--lang", "fr", "--system", "mini", "--from-manifest", str(table), "--out", str(recipe)]
    assert generate(*args).returncode == 0
    (recipe / "hparams" / "train.yaml").write_text("# edited by hand\n")
    before = {p: p.read_bytes() for p in recipe.parent.rglob("*") if p.is_file()}
    refused = generate(*args)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    msg = refused.stderr
    assert msg.startswith(f"error: {recipe} exists; --force would overwrite: ")
    for f in ("again_prepare.py", "mini/README.md", "mini/hparams/codec.yaml", "mini/hparams/debug.yaml",
              "mini/hparams/language.yaml", "mini/hparams/train.yaml", "mini/run.sh"):
        assert str(recipe.parent / f) in msg, f
    assert {p: p.read_bytes() for p in recipe.parent.rglob("*") if p.is_file()} == before  # nothing written
    forced = generate(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"overwrote {recipe / 'hparams' / 'train.yaml'}\n" in forced.stdout
    assert f"overwrote {recipe / 'run.sh'} (same content)" in forced.stdout
    assert forced.stdout.count("overwrote ") == 7
    assert "edited by hand" not in (recipe / "hparams" / "train.yaml").read_text()


def test_a_second_system_reuses_the_dataset_preparation(shared_dir, tmp_path):
    table = small_manifest(shared_dir, tmp_path / "corpus", n=3)
    base = tmp_path / "recipes" / "Shared"
    assert generate("--dataset", "Shared", "--lang", "it", "--system", "mini", "--from-manifest", str(table),
                    "--out", str(base / "mini")).returncode == 0
    prep = (base / "shared_prepare.py").read_text()
    second = generate("--dataset", "Shared", "--lang", "it", "--system", "lmloss", "--out", str(base / "lmloss"))
    assert second.returncode == 0, second.stderr
    assert (base / "shared_prepare.py").read_text() == prep
    # the same dataset from another table: its preparation script would change
    other = small_manifest(shared_dir, tmp_path / "other", n=2).rename(tmp_path / "other" / "table.tsv")
    clash = generate("--dataset", "Shared", "--lang", "it", "--system", "mini", "--from-manifest", str(other),
                     "--out", str(base / "mini2"))
    assert clash.returncode == 1 and "shared_prepare.py exists with other settings" in clash.stderr
    none = generate("--dataset", "Fresh", "--lang", "it", "--system", "mini", "--out", str(tmp_path / "F" / "mini"))
    assert none.returncode == 1 and "give --from-manifest CSV or --from-kaldi DIR" in none.stderr


@pytest.mark.parametrize("args, message", [
    (["--lang", "xx", "--system", "lmloss"], "error: language 'xx' has no Whisper language token"),
    (["--lang", "xx", "--system", "focalcodec_s"], "pass --no-whisper to generate it without them"),
    (["--lang", "zh", "--asr", "pocketsphinx"], "pocketsphinx ships an English model only, not 'zh'"),
    (["--lang", "en", "--asr", "whisper:openai/whisper-large-v3"], "needs a local model folder"),
    (["--lang", "de", "--asr", "whisper:{tmp}"], "scores whisper ASR for en, zh only"),
    (["--lang", "en", "--asr", "google"], "use auto, none, pocketsphinx, whisper:<local folder>"),
    (["--lang", "english"], "--lang 'english': an ISO 639-1 or 639-3 code"),
    (["--lang", "en", "--normaliser", "fancy"], "unknown text normaliser 'fancy'"),
    (["--lang", "en", "--dataset", "a/b"], "--dataset 'a/b': letters, digits"),
])
def test_refusals_are_one_line(tmp_path, args, message):
    table = tmp_path / "t.tsv"
    table.write_text("utt_id\tpath\n")
    opts = {"--dataset": "D", "--system": "mini", "--from-manifest": str(table), "--out": str(tmp_path / "r")}
    opts.update(dict(zip(args[::2], (a.replace("{tmp}", str(tmp_path)) for a in args[1::2]))))
    proc = generate(*(x for kv in opts.items() for x in kv))
    assert proc.returncode == 1 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r").exists()


def test_no_whisper_turns_the_whisper_losses_off(shared_dir, tmp_path):
    table = small_manifest(shared_dir, tmp_path / "corpus", n=3)
    recipe = tmp_path / "recipes" / "X" / "lmloss"
    gen = generate("--dataset", "X", "--lang", "xx", "--system", "lmloss", "--from-manifest", str(table),
                   "--out", str(recipe), "--no-whisper")
    assert gen.returncode == 0, gen.stderr
    assert "\nvariant=none            # phase 3 loss" in (recipe / "run.sh").read_text()
    assert "whisper_language: null" in (recipe / "hparams" / "language.yaml").read_text()
    assert "Generated with --no-whisper" in (recipe / "README.md").read_text()


def test_english_defaults_to_pocketsphinx():
    mod = _tool_module()
    assert mod.choose_asr("auto", "en") == ("pocketsphinx", "")
    assert mod.choose_asr("auto", "eng") == ("pocketsphinx", "")
    asr, notice = mod.choose_asr("auto", "pl")
    assert asr == "none" and "pocketsphinx ships English only" in notice and "whisper:/path" in notice


# ---------------------------------------------------------------------------------------------- the worked example
EXAMPLE = ROOT / "recipes" / "AISHELL-S0150" / "mini"


def test_worked_example_is_the_generators_output():
    """recipes/AISHELL-S0150/mini is what its README's command writes today (the README aside:
    it is meant to be edited: results, notes)."""
    mod = _tool_module()
    readme = (EXAMPLE / "README.md").read_text()
    command = readme.split("Generated by `", 1)[1].split("`", 1)[0].split()
    assert command[:2] == ["python", "tools/new_recipe.py"]
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # the command's relative paths are from the repository root
        args = mod.build_parser().parse_args(command[2:])
        args.argv = command[2:]
        if not (ROOT / args.from_manifest).is_file():
            pytest.skip(f"{args.from_manifest} is missing (../shared)")
        recipe, out, _ = mod.plan(args)
    finally:
        os.chdir(cwd)
    assert recipe == EXAMPLE
    for path, text in out.items():
        if path.name == "README.md":
            continue
        assert path.read_text(encoding="utf-8") == text, f"{path} differs from the generator's output: regenerate it"


def test_worked_example_runs_in_ci(shared_dir, tmp_path):
    exp = tmp_path / "exp"
    proc = bash(EXAMPLE / "run.sh", "--data_folder", str(shared_dir / "data" / "zh" / "aishell1_S0150"),
                "--exp", str(exp), *DEBUG_RUN, "--debug_utts", "3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    test = read_csv(exp / "data" / "test.csv")
    assert len(test) == 3 and {r["lang"] for r in test} == {"zh"}
    assert all(r["text"].replace(" ", "") == r["raw_text"] and " " in r["text"] for r in test)  # one token per character
    results = json.loads((exp / "results" / "results.json").read_text())
    ours = results["systems"]["mini"]["summary"]
    assert ours["utterances"] == 3 and ours["pesq_wb"] is not None and 0 < ours["stoi"] <= 1
    assert "| mini | 498 |" in (exp / "results" / "results.md").read_text()
