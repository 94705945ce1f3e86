#!/usr/bin/env bash
# LJSpeech LM-loss codec (Yi & Kim, ICASSP 2026; ../../../../shared/specs/lmloss.md): HuBERT-base L6
# -> VQ-VAE (25 Hz, 32 or 64 codes) + YAAPT F0 -> VQ-VAE (12.5 Hz) + speaker vector -> HiFi-GAN,
# 187.5 / 212.5 b/s; phase 3 fine-tunes with a Whisper token CE (asr), the TTR loss or SD.
#
#   bash run.sh --corpus /data/LJSpeech-1.1                      # everything (config 2_5, variant asr)
#   bash run.sh --corpus ... --config 2_6 --variant ttr          # another configuration / loss
#   bash run.sh --corpus ... --stage 8 --variant distill         # phase 3 again, another variant
#   bash run.sh --corpus FIXTURE --debug true                    # tiny random models, seconds (CI)
#
# Stages: 1 prepare (LJSpeech-1.1 -> the study's split, 16 kHz, 1280-padded copies), 2 align
# (MFA when installed, else pocketsphinx), 3 cache HuBERT L6 + F0, 4 phase 1 HuBERT VQ-VAE,
# 5 phase 1 F0 VQ-VAE, 6 phase 2 (HiFi-GAN, MPD + MSD), 7 TTR summariser pretraining (skipped with
# --ttr_checkpoint), 8 phase 3 (--variant), 9 encode the test split (.sbc, both streams),
# 10 decode, 11 evaluate (WER against the ground truth and dWER, per ASR), 12 report, 13 listening
# tests (webMUSHRA MUSHRA + semantic MOS). Finished stages are skipped; --stage N re-runs from N.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)

# -------- options (every one has a default; --help lists them)
stage=1                 # first stage to run
stop_stage=13           # last stage to run
corpus=/data/LJSpeech-1.1   # LJSpeech-1.1 (metadata.csv + wavs/), or its parent folder
exp=$here/exp           # experiment folder
config=2_5              # 2_5 (32 content codes, 187.5 b/s) | 2_6 (64 codes, 212.5 b/s)
variant=asr             # phase 3 loss: asr | ttr | distill | none (stop after phase 2)
debug=false             # true: tiny random models, seconds of training (CI)
device=cpu              # torch device
aligner=auto            # auto (MFA when installed, else pocketsphinx) | mfa | pocketsphinx | ctc:<model>
hubert=facebook/hubert-base-ls960   # HuBERT-base (layer 6)
whisper=openai/whisper-tiny         # the ASR loss's model
wavlm=microsoft/wavlm-base          # the TTR loss's SSL model
bert=bert-base-uncased              # the TTR loss's targets
ttr_corpus=""           # LibriSpeech manifest folder for TTR pretraining (train.csv; default: LJSpeech train)
ttr_checkpoint=""       # a pretrained summariser: skips stage 7
ttr_steps=1000000       # TTR pretraining steps
asrs="whisper:openai/whisper-large-v3 ctc:facebook/wav2vec2-base-960h pocketsphinx"  # evaluation ASRs
metrics=all             # evaluation metrics
listening_items=10      # items per listening test
train_args=""           # extra trainer overrides for every phase, shell-quoted

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"
. "$root/tools/codec_stages.sh"

s_prepare=1; s_align=2; s_cache=3; s_vq_content=4; s_vq_f0=5; s_phase2=6; s_ttr=7; s_phase3=8
s_encode=9; s_decode=10; s_evaluate=11; s_report=12; s_listening=13
[ "$stop_stage" -ge "$stage" ] || { echo "$0: --stop_stage $stop_stage is before --stage $stage" >&2; exit 1; }
case $config in 2_5) codes=32 ;; 2_6) codes=64 ;; *) echo "$0: --config 2_5 or 2_6, not $config" >&2; exit 1 ;; esac
case $variant in asr|ttr|distill|none) ;; *) echo "$0: --variant asr, ttr, distill or none" >&2; exit 1 ;; esac
mkdir -p "$exp"
lock_exp
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"

data=$exp/data                  # manifests (train / val / test at 16 kHz, 1280-padded)
wavs=$exp/wavs_16khz            # the padded copies ({data_root} of the manifests)
data_folder=$wavs               # what the shared stages call {data_root}
test_csv=$data/test.csv; train_csv=$data/train.csv
hubert_dim=768; width=32; channels=512; disc_width=1.0; debug_args=(); ttr_dims=()
if [ "$debug" = true ]; then
  tiny=$exp/tiny_models
  python -m speechbrain_codec.bin.tiny_models "$tiny" > /dev/null
  hubert=$tiny/hubert; whisper=$tiny/whisper; wavlm=$tiny/wavlm; bert=$tiny/bert
  hubert_dim=32; width=8; channels=32; disc_width=0.0625; ttr_steps=3; listening_items=2
  asrs="pocketsphinx ctc:$tiny/ctc"
  debug_args=(--overrides_file "$here/hparams/debug.yaml")
  ttr_dims=(--layers 1 --heads 2 --ffn 32 --concat-seconds 8)
fi

# ---------------------------------------------------------------- 1. prepare
k_prepare=$(stage_key prepare "$corpus" "$(hash_files "$root/recipes/LJSpeech/ljspeech_prepare.py")")
if run_stage $s_prepare "prepare LJSpeech (the study's split, 16 kHz, padded to 1280 samples)"; then
  if ! stage_done $s_prepare "$data/.done" "$k_prepare"; then
    python "$root/recipes/LJSpeech/ljspeech_prepare.py" --data_folder "$corpus" --save_folder "$exp/data22k"
    for split in train val test; do
      python -m speechbrain_codec.bin.resample_corpus --manifest "$exp/data22k/$split.csv" --data-root "$corpus" \
        --out-folder "$wavs" --out-manifest "$data/$split.csv" --sample-rate 16000 --pad-multiple 1280
    done
    python -m speechbrain_codec.bin.manifest_subset "$data/train.csv" "$data/trainval.csv" > /dev/null
    python - "$data" <<'PY'
import csv, sys
folder = sys.argv[1]
rows, fields = [], None
for split in ("train", "val", "test"):
    with open(f"{folder}/{split}.csv", newline="", encoding="utf-8") as f:
        r = csv.DictReader(f); fields = r.fieldnames; rows += list(r)
from speechbrain_codec.dataio import write_manifest
write_manifest(f"{folder}/all.csv", rows, fields)
PY
    mark_done "$data/.done" "$k_prepare"
  fi
fi

# ---------------------------------------------------------------- 2. align (TTR only needs it)
k_align=$(stage_key align "$k_prepare" "$aligner")
if run_stage $s_align "word alignments ($aligner)"; then
  require "$data/all.csv" $s_prepare prepare
  if ! stage_done $s_align "$exp/align/.done" "$k_align"; then
    python -m speechbrain_codec.bin.align --manifest "$data/all.csv" --data-root "$wavs" --out "$exp/align" --aligner "$aligner"
    mark_done "$exp/align/.done" "$k_align"
  fi
fi

# ---------------------------------------------------------------- 3. cache HuBERT L6 and F0
k_cache=$(stage_key cache "$k_prepare" "$hubert")
if run_stage $s_cache "cache HuBERT layer 6 and YAAPT F0"; then
  require "$data/all.csv" $s_prepare prepare
  if ! stage_done $s_cache "$exp/cache/.done" "$k_cache"; then
    python -m speechbrain_codec.dataio.cache extract --manifest "$data/all.csv" --data-root "$wavs" \
      --out "$exp/cache/hubert6" --kind ssl --source "$hubert" --layer 6 --device "$device"
    python -m speechbrain_codec.dataio.cache extract --manifest "$data/all.csv" --data-root "$wavs" \
      --out "$exp/cache/f0" --kind f0
    # F0 statistics of the train split's voiced frames (§1.3: one global "speaker" for LJSpeech)
    python - "$exp/cache/f0" "$data/train.csv" "$exp/cache/f0_stats.json" <<'PY'
import json, sys
from speechbrain_codec.dataio import FeatureCache, read_manifest
from speechbrain_codec.utils import atomic_write_json
cache, ids = FeatureCache(sys.argv[1]), read_manifest(sys.argv[2])
n = s = ss = 0.0
for uid in ids:
    f = cache.get(uid).double(); v = f[f != 0]
    n += v.numel(); s += float(v.sum()); ss += float((v * v).sum())
if not n:
    sys.exit(f"error: no voiced F0 frame in {sys.argv[2]}: check the audio")
mean = s / n; std = max(ss / n - mean * mean, 0.0) ** 0.5
atomic_write_json(sys.argv[3], {"global": {"mean": mean, "std": std, "voiced_frames": int(n)}})
print(f"F0 of the train split: mean {mean:.3f} Hz, std {std:.3f} Hz over {int(n)} voiced frames")
PY
    mark_done "$exp/cache/.done" "$k_cache"
  fi
fi
f0_stats=$exp/cache/f0_stats.json
caches=(--hubert_cache "$exp/cache/hubert6" --f0_cache "$exp/cache/f0" --f0_stats "$f0_stats")
common=(--data_folder "$wavs" --manifest_folder "$data" --device "$device" "${debug_args[@]}")

# ---------------------------------------------------------------- 4-5. phase 1: the two VQ-VAEs
s_train=$s_vq_content; train_dir=$exp/vq_content
stage_train "phase 1: HuBERT VQ-VAE ($codes codes)" \
  "$(stage_key vq_content "$k_cache" "$(hash_files "$here/hparams/phase1.yaml" "$here/hparams/codec/vq_content.yaml")" "$codes" "$debug" "$train_args")" \
  "$here/hparams/phase1.yaml" "${common[@]}" "${caches[@]}" --codec_input hubert \
  --codec_hparams "$here/hparams/codec/vq_content.yaml" \
  --codec_overrides "{content_codes: $codes, hubert_dim: $hubert_dim, width: $width}"
k_vq_content=$k_train
s_train=$s_vq_f0; train_dir=$exp/vq_f0
stage_train "phase 1: F0 VQ-VAE" \
  "$(stage_key vq_f0 "$k_cache" "$(hash_files "$here/hparams/phase1.yaml" "$here/hparams/codec/vq_f0.yaml")" "$debug" "$train_args")" \
  "$here/hparams/phase1.yaml" "${common[@]}" "${caches[@]}" --codec_input f0 --grad_accumulation_factor 8 \
  --codec_hparams "$here/hparams/codec/vq_f0.yaml" --codec_overrides "{width: $width}"
k_vq_f0=$k_train

# the codec of phases 2-3 (f0 statistics measured in stage 3)
f0_mean_std() { python -c "import json,sys; g=json.load(open(sys.argv[1]))['global']; print(g['mean'], g['std'])" "$f0_stats"; }
codec_overrides() {  # $1: feed
  local m s; read -r m s < <(f0_mean_std)
  echo "{content_codes: $codes, feed: $1, hubert_source: $hubert, hubert_dim: $hubert_dim, width: $width, upsample_initial_channel: $channels, f0_mean: $m, f0_std: $s}"
}

# ---------------------------------------------------------------- 6. phase 2: HiFi-GAN on frozen tokens
s_train=$s_phase2; train_dir=$exp/phase2_$config
if run_stage $s_phase2 "check phase-1 outputs" >/dev/null; then
  require "$exp/vq_content/codec/codec.ckpt" $s_vq_content "phase 1"; require "$exp/vq_f0/codec/codec.ckpt" $s_vq_f0 "phase 1"
fi
stage_train "phase 2: HiFi-GAN decoder ($config)" \
  "$(stage_key phase2 "$k_vq_content" "$k_vq_f0" "$(hash_files "$here/hparams/phase2.yaml" "$here/hparams/codec/lmloss.yaml")" "$debug" "$disc_width" "$train_args")" \
  "$here/hparams/phase2.yaml" "${common[@]}" "${caches[@]}" --disc_width "$disc_width" \
  --init_from_content "$exp/vq_content/codec" --init_from_f0 "$exp/vq_f0/codec" \
  --codec_hparams "$here/hparams/codec/lmloss.yaml" --codec_overrides "$( [ -f "$f0_stats" ] && codec_overrides dict || echo '{}')"
k_phase2=$k_train
codec_dir=$exp/phase2_$config/codec; system=phase2_$config

# ---------------------------------------------------------------- 7. TTR summariser pretraining
ttr_ckpt=${ttr_checkpoint:-$exp/ttr/summariser.ckpt}
if [ "$variant" = ttr ] && [ -z "$ttr_checkpoint" ] && run_stage $s_ttr "pretrain the TTR summariser"; then
  ttr_data=${ttr_corpus:-$data}
  k_ttr=$(stage_key ttr "$k_align" "$ttr_data" "$wavlm" "$bert" "$ttr_steps" "$debug")
  if ! stage_done $s_ttr "$exp/ttr/.done" "$k_ttr"; then
    python "$here/pretrain_ttr.py" --manifest "$ttr_data/train.csv" --data-root "$wavs" --alignments "$exp/align" \
      --out "$ttr_ckpt" --ssl "$wavlm" --bert "$bert" --steps "$ttr_steps" --device "$device" "${ttr_dims[@]}"
    mark_done "$exp/ttr/.done" "$k_ttr"
  fi
fi

# ---------------------------------------------------------------- 8. phase 3: the LM-driven loss
if [ "$variant" != none ]; then
  s_train=$s_phase3; train_dir=$exp/phase3_${config}_$variant
  if run_stage $s_phase3 "check phase-2 outputs" >/dev/null; then
    require "$exp/phase2_$config/codec/codec.ckpt" $s_phase2 "phase 2"
    [ "$variant" = ttr ] && require "$ttr_ckpt" $s_ttr "TTR pretraining"
    [ "$variant" = ttr ] && require "$exp/align/.done" $s_align "word alignments"
  fi
  align_args=(); [ "$variant" = ttr ] && align_args=(--alignment_folder "$exp/align")
  stage_train "phase 3: $variant loss ($config)" \
    "$(stage_key phase3 "$k_phase2" "$variant" "$(hash_files "$here/hparams/phase3.yaml")" "$debug" "$train_args")" \
    "$here/hparams/phase3.yaml" "${common[@]}" "${caches[@]}" --variant "$variant" --disc_width "$disc_width" \
    --phase2_codec "$exp/phase2_$config/codec" --init_from_content "$exp/vq_content/codec" \
    --ttr_checkpoint "$ttr_ckpt" --whisper_source "$whisper" --wavlm_source "$wavlm" --bert_source "$bert" \
    "${align_args[@]}" \
    --codec_hparams "$here/hparams/codec/lmloss.yaml" --codec_overrides "$( [ -f "$f0_stats" ] && codec_overrides codes || echo '{}')"
  codec_dir=$train_dir/codec; system=${variant}_$config
fi

# ---------------------------------------------------------------- 9-13. shared stages
stage_encode      # 9. test split -> bitstreams/<ID>.sbc (both streams) + bitrate.json
stage_decode      # 10. -> decoded/<ID>.wav
# 11. WER against the ground truth and dWER, once per ASR (results/results.json: the first), under the
# paper's protocol (lmloss.md §5: normaliser, corpus-level WER) with this run's ASRs and metrics; the
# Whisper the asr variant trains against is marked, the others (wav2vec2, pocketsphinx) are independent
protocol=lmloss
[ "$variant" = asr ] && evaluate_args="--training-asr whisper:$whisper"
first=true; report_inputs=""
for a in $asrs; do
  if [ "$first" = true ]; then asr=$a stage_evaluate; first=false; continue; fi
  name=$(echo "$a" | tr -c 'A-Za-z0-9._-' '_')
  report_inputs+=" $exp/results/results_$name.json"
  if run_stage $s_evaluate "evaluate with $a" && ! stage_done $s_evaluate "$exp/results/$name.done" "$k_decode$metrics$protocol${evaluate_args:-}"; then
    eval "extra_args=(${evaluate_args:-})"
    speechbrain-codec evaluate --manifest "$test_csv" --data-root "$data_folder" --system "$system=$exp/decoded" \
      --protocol "$protocol" --metrics "$metrics" --asr "$a" "${extra_args[@]}" --out "$exp/results/results_$name.json"
    mark_done "$exp/results/$name.done" "$k_decode$metrics$protocol${evaluate_args:-}"
  fi
done
stage_report      # 12. results.md: every ASR's WER side by side (report_inputs)
stage_listening   # 13. webMUSHRA configurations
