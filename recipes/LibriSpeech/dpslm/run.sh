#!/usr/bin/env bash
# DP-SLM (Visser & Kamper, Interspeech 2025; ../../../../shared/specs/dpslm.md): WavLM-large
# layer-11 features -> k-means (K = 100, 200, 500, 1000) -> DPDP units for the 24 published
# (K, lambda) pairs -> deduplication -> a unit LM per pair (trained, scored) and a units ->
# WavTokenizer-codes ELLA-V acoustic model per pair -> resynthesis -> WER (median per utterance,
# as the paper, and corpus WER / dWER) versus bitrate, with the paper's 24 points overlaid.
#
#   bash run.sh --corpus /data/LibriSpeech --device cuda        # everything (published settings)
#   bash run.sh --corpus ... --pairs "500:0 500:4500"           # some pairs only
#   bash run.sh --corpus ... --stage 8                           # resynthesis, evaluation, report again
#   bash run.sh --corpus FIXTURE --debug true                    # tiny random models, seconds (CI)
#
# Stages: 1 prepare (LibriSpeech manifests), 2 cache WavLM layer 11 (centre padding, raw
# waveform, before the final LayerNorm; sharded), 3 k-means per K, 4 DPDP units + dedup per
# (K, lambda) (R, H, R.H, R.log2 K), 5 unit LMs (train + score), 6 WavTokenizer codes of the
# training clips, 7 ELLA-V acoustic models, 8 resynthesis (export the codec, encode the test clips
# to .sbc -- plain and entropy coded -- and decode: units -> ELLA-V -> WavTokenizer), 9 evaluate
# (speechbrain-codec evaluate, every pair at once), 10 report (results.md, the WER-versus-bitrate
# plot and its table from results.json). Finished stages are skipped; --stage N re-runs from N.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)

# -------- options (every one has a default; --help lists them)
stage=1                 # first stage to run
stop_stage=10           # last stage to run
corpus=/data/LibriSpeech   # LibriSpeech (the split folders, or their parent)
exp=$here/exp           # experiment folder
train_splits="train-clean-100 train-clean-360 train-other-500"   # unit LMs + ELLA-V (ELLA-V: the clean ones)
kmeans_split=train-clean-100   # the k-means features (10 % of each file's frames)
valid_split=dev-clean   # validation (best checkpoint)
test_split=test-clean   # resynthesis + WER (the paper's set is not stated)
test_first=0            # keep the first N test clips (0: all)
ks="100 200 500 1000"   # codebook sizes
pairs="100:0 100:600 100:1500 100:3000 100:5000 100:9000 200:0 200:700 200:1500 200:3000 200:5000 200:7500 500:0 500:600 500:1500 500:2800 500:4500 500:7000 1000:0 1000:600 1000:1400 1000:2500 1000:3800 1000:6000"  # the 24 published (K, lambda) pairs
neighbors_fraction=0.05 # DPDP neighbour restriction: 5 % of K as the paper's DP-WFST (0: all K)
wavlm=microsoft/wavlm-large   # WavLM Large (hub id or save_pretrained folder)
layer=11                # WavLM block whose output is the feature
wavtokenizer=""         # WavTokenizer small_600_24k_4096 release folder (config + weights)
max_codec_tokens_per_phone=10   # ELLA-V decoding (§5)
max_tokens=1000         # ELLA-V: generated tokens at most
top_p=0                 # 0: greedy (the WER figure); the README demo uses 0.8
temperature=1.0         # sampling temperature
asr=whisper:openai/whisper-large-v3   # the evaluation ASR (the paper's is not named)
metrics=""              # extra evaluation metrics (comma-separated, e.g. stoi); WER/dWER always
debug=false             # true: tiny random models, a shrunk grid, seconds (CI)
device=cpu              # torch device
cache_dtype=float32     # storage of the WavLM features (float32 keeps lambda's scale exact)

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"
. "$root/tools/codec_stages.sh"

s_prepare=1; s_cache=2; s_kmeans=3; s_units=4; s_ulm=5; s_codes=6; s_ellav=7; s_resynth=8; s_evaluate=9; s_report=10
[ "$stop_stage" -ge "$stage" ] || { echo "$0: --stop_stage $stop_stage is before --stage $stage" >&2; exit 1; }
mkdir -p "$exp"
lock_exp
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"

hparams_files=("$here/hparams/dpslm.yaml")
if [ "$debug" = true ]; then
  tiny=$exp/tiny_models
  if [ ! -f "$tiny/.done" ]; then
    python - "$tiny" <<'PY'
import sys
from pathlib import Path
from speechbrain_codec.bin.tiny_models import tiny_ctc, tiny_wavlm
out = Path(sys.argv[1])
tiny_wavlm(out / "wavlm", hidden=16, layers=12)  # 12 blocks: block 11 exists, as in WavLM Large (24)
tiny_ctc(out / "ctc")
(out / ".done").write_text("ok")
PY
  fi
  wavlm=$tiny/wavlm; asr=ctc:$tiny/ctc
  train_splits=train-clean-100; kmeans_split=train-clean-100; test_first=2
  ks="8 16"; pairs="8:0 8:4 16:0 16:4"; neighbors_fraction=0
  max_codec_tokens_per_phone=2; max_tokens=60
  hparams_files+=("$here/hparams/debug.yaml")
fi
data=$exp/data; pairs_dir=$exp/pairs
train_csv=$data/train.csv; valid_csv=$data/valid.csv; test_csv=$data/test.csv; all_csv=$data/all.csv
vocoder=$exp/wavtokenizer
hparams=(); for f in "${hparams_files[@]}"; do hparams+=(--config "$f"); done
k_hparams=$(hash_files "${hparams_files[@]}")

# ---------------------------------------------------------------- 1. prepare
splits_all=$(printf '%s\n' $train_splits $kmeans_split $valid_split $test_split | sort -u | tr '\n' ' ')
k_prepare=$(stage_key prepare "$corpus" "$splits_all" "$train_splits" "$kmeans_split" "$valid_split" "$test_split" \
  "$test_first" "$(hash_files "$root/recipes/LibriSpeech/librispeech_prepare.py")")
if run_stage $s_prepare "prepare LibriSpeech ($splits_all)"; then
  if ! stage_done $s_prepare "$data/.done" "$k_prepare"; then
    # shellcheck disable=SC2086
    python "$root/recipes/LibriSpeech/librispeech_prepare.py" --data_folder "$corpus" --save_folder "$data/splits" \
      --splits $splits_all
    python - "$data" "$train_splits" "$kmeans_split" "$valid_split" "$test_split" "$test_first" <<'PY'
import csv, sys
from speechbrain_codec.dataio import write_manifest
folder, train, kmeans, valid, test, first = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
def rows(split):
    with open(f"{folder}/splits/{split}.csv", newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)
fields, _ = rows(valid)
sets = {"train": sum((rows(s)[1] for s in train), []), "kmeans": rows(kmeans)[1], "valid": rows(valid)[1],
        "test": rows(test)[1][: first or None]}
seen, union = set(), []
for name, rs in sets.items():
    write_manifest(f"{folder}/{name}.csv", rs, fields)
    union += [r for r in rs if not (r["ID"] in seen or seen.add(r["ID"]))]
write_manifest(f"{folder}/all.csv", union, fields)
write_manifest(f"{folder}/trainval.csv", sets["train"] + sets["valid"], fields)
print("manifests:", ", ".join(f"{n} {len(r)}" for n, r in sets.items()))
PY
    mark_done "$data/.done" "$k_prepare"
  fi
fi

# ---------------------------------------------------------------- 2. WavLM layer-11 features
k_cache=$(stage_key cache "$k_prepare" "$wavlm" "$layer" "$cache_dtype")
if run_stage $s_cache "cache WavLM layer $layer (centre padding, no normalisation, before the final LayerNorm)"; then
  require "$all_csv" $s_prepare prepare
  if ! stage_done $s_cache "$exp/cache/.done_wavlm" "$k_cache"; then
    python -m speechbrain_codec.dataio.cache extract --manifest "$all_csv" --data-root "$corpus" \
      --out "$exp/cache/wavlm$layer" --kind ssl --source "$wavlm" --layer "$layer" --device "$device" --dtype "$cache_dtype"
    mark_done "$exp/cache/.done_wavlm" "$k_cache"
  fi
fi
cache=$exp/cache/wavlm$layer

# ---------------------------------------------------------------- 3. k-means
k_kmeans=$(stage_key kmeans "$k_cache" "$ks")
if run_stage $s_kmeans "k-means for K = $ks"; then
  require "$cache/index.json" $s_cache cache
  if ! stage_done $s_kmeans "$exp/kmeans/.done" "$k_kmeans"; then
    fraction=0.1; [ "$debug" = true ] && fraction=0.5
    python -m speechbrain_codec.bin.dpslm kmeans --cache "$cache" --manifest "$data/kmeans.csv" --ks "$ks" \
      --out "$exp/kmeans" --fraction "$fraction"
    mark_done "$exp/kmeans/.done" "$k_kmeans"
  fi
fi

# ---------------------------------------------------------------- 4. DPDP units + dedup
k_units=$(stage_key units "$k_kmeans" "$pairs" "$neighbors_fraction")
if run_stage $s_units "DPDP units for (K, lambda) = $pairs"; then
  require "$exp/kmeans/.done" $s_kmeans k-means
  if ! stage_done $s_units "$pairs_dir/.done_units" "$k_units"; then
    python -m speechbrain_codec.bin.dpslm units --cache "$cache" --kmeans "$exp/kmeans" --pairs "$pairs" \
      --neighbors_fraction "$neighbors_fraction" --out "$pairs_dir" \
      --split "train=$train_csv" --split "valid=$valid_csv" --split "test=$test_csv"
    mark_done "$pairs_dir/.done_units" "$k_units"
  fi
fi

# ---------------------------------------------------------------- 5. unit LMs
k_ulm=$(stage_key ulm "$k_units" "$k_hparams" "$device")
if run_stage $s_ulm "unit LMs (train + score)"; then
  require "$pairs_dir/.done_units" $s_units units
  if ! stage_done $s_ulm "$pairs_dir/.done_ulm" "$k_ulm"; then
    python -m speechbrain_codec.bin.dpslm ulm --pairs "$pairs" --pairs_dir "$pairs_dir" "${hparams[@]}" \
      --train "$train_csv" --valid "$valid_csv" --test "$test_csv" --device "$device"
    mark_done "$pairs_dir/.done_ulm" "$k_ulm"
  fi
fi

# ---------------------------------------------------------------- 6. WavTokenizer codes (training targets)
k_codes=$(stage_key codes "$k_prepare" "$wavtokenizer" "$debug")
if run_stage $s_codes "WavTokenizer codes of the training clips (24 kHz, 40 Hz)"; then
  require "$all_csv" $s_prepare prepare
  if ! stage_done $s_codes "$exp/cache/.done_codes" "$k_codes"; then
    if [ "$debug" = true ]; then
      python -m speechbrain_codec.bin.dpslm vocoder --tiny --out "$vocoder"
    else
      [ -n "$wavtokenizer" ] || { log "ERROR: --wavtokenizer FOLDER (the small_600_24k_4096 release) is needed"; exit 1; }
      python -m speechbrain_codec.bin.dpslm vocoder --source "$wavtokenizer" --out "$vocoder"
    fi
    python -m speechbrain_codec.dataio.cache extract --manifest "$data/trainval.csv" --data-root "$corpus" \
      --out "$exp/cache/codes" --kind tokens --checkpoint "$vocoder" --device "$device"
    mark_done "$exp/cache/.done_codes" "$k_codes"
  fi
fi

# ---------------------------------------------------------------- 7. ELLA-V acoustic models
k_ellav=$(stage_key ellav "$k_units" "$k_codes" "$k_hparams" "$device")
if run_stage $s_ellav "ELLA-V acoustic models (units -> WavTokenizer codes)"; then
  require "$pairs_dir/.done_units" $s_units units; require "$exp/cache/.done_codes" $s_codes codes
  if ! stage_done $s_ellav "$pairs_dir/.done_ellav" "$k_ellav"; then
    python -m speechbrain_codec.bin.dpslm ellav --pairs "$pairs" --pairs_dir "$pairs_dir" "${hparams[@]}" \
      --codes "$exp/cache/codes" --train "$train_csv" --valid "$valid_csv" --device "$device"
    mark_done "$pairs_dir/.done_ellav" "$k_ellav"
  fi
fi

# ---------------------------------------------------------------- 8. resynthesis
k_resynth=$(stage_key resynth "$k_ellav" "$k_ulm" "$max_codec_tokens_per_phone" "$max_tokens" "$top_p" "$temperature")
if run_stage $s_resynth "resynthesis: .sbc (deduplicated units) -> ELLA-V -> WavTokenizer"; then
  require "$pairs_dir/.done_ellav" $s_ellav ELLA-V
  if ! stage_done $s_resynth "$pairs_dir/.done_resynth" "$k_resynth"; then
    python -m speechbrain_codec.bin.dpslm resynth --pairs "$pairs" --pairs_dir "$pairs_dir" --manifest "$test_csv" \
      --data-root "$corpus" --train "$train_csv" --wavlm "$wavlm" --layer "$layer" --kmeans "$exp/kmeans" \
      --vocoder "$vocoder" --max_codec_tokens_per_phone "$max_codec_tokens_per_phone" --max_tokens "$max_tokens" \
      --top_p "$top_p" --temperature "$temperature" --device "$device"
    mark_done "$pairs_dir/.done_resynth" "$k_resynth"
  fi
fi

# ---------------------------------------------------------------- 9. evaluate (every pair at once)
systems=()
for p in $pairs; do
  k=${p%%:*}; l=${p#*:}; name=$(printf 'K%s_l%g' "$k" "$l")
  systems+=(--system "$name=$pairs_dir/$name/decoded")
done
k_evaluate=$(stage_key evaluate "$k_resynth" "${systems[*]}" "$metrics" "$asr")
if run_stage $s_evaluate "evaluate (WER: median per utterance, corpus, dWER; ASR $asr)"; then
  require "$pairs_dir/.done_resynth" $s_resynth resynthesis
  if ! stage_done $s_evaluate "$exp/results/.done" "$k_evaluate"; then
    speechbrain-codec evaluate --manifest "$test_csv" --data-root "$corpus" "${systems[@]}" \
      --metrics "$metrics" --asr "$asr" --device "$device" --out "$exp/results/results.json"
    mark_done "$exp/results/.done" "$k_evaluate"
  fi
fi

# ---------------------------------------------------------------- 10. report
if run_stage $s_report "report: WER versus bitrate (ours and the paper's 24 points)"; then
  require "$exp/results/results.json" $s_evaluate evaluate
  python "$here/plot_wer_bitrate.py" "$exp/results/results.json" --published "$here/published.json" \
    --out "$exp/results"
  log "WER versus bitrate: $exp/results/wer_vs_bitrate.md and wer_vs_bitrate.png"
fi
stage_report      # 10. the toolkit's results.md + plots of the same results.json
