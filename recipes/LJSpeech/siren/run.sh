#!/usr/bin/env bash
# SIREN P1 (Krabbens/SIREN v0.1.0; ../../../../shared/specs/siren.md; README.md here): HuBERT-base
# hidden state 9 -> information factoriser -> residual FSQ semantic (12.5 Hz) + prosody (6.25 Hz)
# streams + a product-quantised 64-bit speaker code per utterance -> feature reconstructor ->
# Vocos-style iSTFT generator, trained against MPD + a multi-resolution STFT discriminator.
# Single speaker (LJSpeech) here; recipes/LibriTTS/siren/run.sh runs this script with
# --dataset libritts.
#
#   bash run.sh --corpus /data/LJSpeech-1.1                          # config default (186.9 b/s + 64 bits)
#   bash run.sh --corpus ... --config improved                       # 951.0 b/s + 64 bits
#   bash run.sh --corpus ... --config large200 --bitnet true         # HEAD's 198.1 b/s, ternary layers (P2)
#   bash run.sh --corpus ... --stage 4 --device cuda                 # encode / decode / evaluate again
#   bash run.sh --corpus FIXTURE --debug true                        # tiny random models, seconds (CI)
#
# Stages: 1 prepare (LJSpeech: its train / val / test splits; LibriTTS: train-clean-100, every 20th
# item of it (index % 20 == 0) for validation as the reference's download_data.py, test-clean for the
# test; 16 kHz copies; train/val clips of 1-15 s) -> 2 cache
# HuBERT-base hidden state 9 of train + val -> 3 train (the generic trainer, GAN brain) -> 4 encode
# the test split (.sbc: semantic + prosody frames + the speaker code) -> 5 decode -> 6 evaluate (per
# ASR in --asrs: WER and dWER; speaker similarity with --spk_model; DNSMOS; UTMOS with --utmos;
# STOI) -> 7 report. Finished stages are skipped; --stage N re-runs from N.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)

# -------- options (every one has a default; --help lists them)
stage=1                 # first stage to run
stop_stage=7            # last stage to run
dataset=ljspeech        # ljspeech | libritts (recipes/LibriTTS/siren sets it)
corpus=/data/LJSpeech-1.1   # LJSpeech-1.1 (or its parent) | LibriTTS (or its parent)
exp=$here/exp           # experiment folder
config=default          # default (186.9 b/s) | improved (951.0 b/s) | large200 (HEAD, 198.1 b/s)
bitnet=false            # true: SIREN P2's ternary (BitNet b1.58) layers
debug=false             # true: tiny random models, seconds of training (CI)
device=cpu              # torch device
hubert=facebook/hubert-base-ls960   # HuBERT-base (hidden state 9)
steps=""                # training steps (default: LJSpeech 50000, LibriTTS 100000)
batch_size=""           # default: LJSpeech 8, LibriTTS 16
disc_start=""           # discriminator / adversarial start step (default: LJSpeech 3000, LibriTTS 5000)
asrs="whisper:openai/whisper-large-v3 ctc:facebook/wav2vec2-base-960h"  # evaluation ASRs (dWER; not the codec's)
spk_model=microsoft/wavlm-base-plus-sv   # speaker similarity model (x-vector), or resemblyzer
utmos=""                # a TorchScript UTMOS checkpoint (adds the utmos metric)
metrics="stoi,spk,dnsmos"   # evaluation metrics (utmos added with --utmos)
train_args=""           # extra trainer overrides, shell-quoted

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"
. "$root/tools/codec_stages.sh"

s_prepare=1; s_cache=2; s_train=3; s_encode=4; s_decode=5; s_evaluate=6; s_report=7
[ "$stop_stage" -ge "$stage" ] || { echo "$0: --stop_stage $stop_stage is before --stage $stage" >&2; exit 1; }
case $dataset in
  ljspeech) d_steps=50000; d_batch=8; d_disc=3000 ;;
  libritts) d_steps=100000; d_batch=16; d_disc=5000 ;;
  *) echo "$0: --dataset ljspeech or libritts, not $dataset" >&2; exit 1 ;;
esac
steps=${steps:-$d_steps}; batch_size=${batch_size:-$d_batch}; disc_start=${disc_start:-$d_disc}
# the configurations of siren.md §2.7 (codec/siren.yaml's defaults are `default`)
case $config in
  default) cfg="" ;;
  improved) cfg="semantic_levels: [3, 3, 3, 3, 3, 3, 3, 3], semantic_stages: 4, prosody_levels: [3, 3, 3, 3, 3, 3, 3, 3], prosody_stages: 4" ;;
  large200) cfg="semantic_levels: [3, 3, 3, 3], semantic_factor: 2, prosody_levels: [3, 3, 3, 3], fsq_bound: sigmoid, scale_decay: 1.0, learnable_scales: False" ;;
  *) echo "$0: --config default, improved or large200, not $config" >&2; exit 1 ;;
esac
case $bitnet in true|false) ;; *) echo "$0: --bitnet true or false" >&2; exit 1 ;; esac
mkdir -p "$exp"
lock_exp
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"

data=$exp/data                  # manifests (train / val / test at 16 kHz)
wavs=$exp/wavs_16khz            # the 16 kHz copies ({data_root} of the manifests)
data_folder=$wavs
test_csv=$data/test.csv; train_csv=$data/train.csv
disc_width=1.0; size="hubert_dim: 768"; debug_args=()
if [ "$debug" = true ]; then
  tiny=$exp/tiny_models
  python -m speechbrain_codec.bin.tiny_models "$tiny" > /dev/null
  [ -f "$tiny/hubert9/config.json" ] || python -c "import sys; from speechbrain_codec.bin.tiny_models import tiny_hubert; tiny_hubert(sys.argv[1], layers=9)" "$tiny/hubert9" > /dev/null 2>&1
  [ -f "$tiny/wavlm_sv/config.json" ] || python -c "import sys; from speechbrain_codec.bin.tiny_models import tiny_wavlm_sv; tiny_wavlm_sv(sys.argv[1])" "$tiny/wavlm_sv" > /dev/null 2>&1
  hubert=$tiny/hubert9; spk_model=$tiny/wavlm_sv; asrs="ctc:$tiny/ctc"; metrics="stoi,spk"; disc_width=0.0625
  size="hubert_dim: 32, semantic_hidden: 16, prosody_hidden: 16, speaker_dim: 16, speaker_hidden: 32, fusion_dim: 32, fusion_layers: 1, fusion_heads: 2, vocoder_dim: 32, vocoder_intermediate: 64, vocoder_dilations: [1], vocoder_res_dilations: [1], entropy_dim: 16, entropy_layers: 1, entropy_heads: 2"
  debug_args=(--overrides_file "$here/hparams/debug.yaml")
fi
[ -n "$utmos" ] && metrics="$metrics,utmos"
codec_overrides="{hubert_source: $hubert, $size${cfg:+, $cfg}, bitnet: $( [ "$bitnet" = true ] && echo True || echo False )}"
system=siren_${config}$( [ "$bitnet" = true ] && echo _bitnet || true )

# ---------------------------------------------------------------- 1. prepare
k_prepare=$(stage_key prepare "$dataset" "$corpus" "$(hash_files "$root/recipes/LJSpeech/ljspeech_prepare.py" "$root/recipes/LibriTTS/libritts_prepare.py")")
[ "$dataset" = libritts ] && k_prepare=$(stage_key "$k_prepare" "val: train-clean-100 index % 20 == 0")
if run_stage $s_prepare "prepare $dataset (splits, 16 kHz copies, 1-15 s train / val clips)"; then
  if ! stage_done $s_prepare "$data/.done" "$k_prepare"; then
    if [ "$dataset" = ljspeech ]; then
      python "$root/recipes/LJSpeech/ljspeech_prepare.py" --data_folder "$corpus" --save_folder "$exp/data_orig"
      splits=(train:train val:val test:test)
    else
      python "$root/recipes/LibriTTS/libritts_prepare.py" --data_folder "$corpus" --save_folder "$exp/data_orig" \
        --splits train-clean-100 test-clean
      splits=(train-clean-100:train test-clean:test)  # validation: carved out of train below
    fi
    for pair in "${splits[@]}"; do
      python -m speechbrain_codec.bin.resample_corpus --manifest "$exp/data_orig/${pair%%:*}.csv" --data-root "$corpus" \
        --out-folder "$wavs" --out-manifest "$data/${pair#*:}.csv" --sample-rate 16000
    done
    python - "$data" "$dataset" <<'PY'
# siren.md §1.1: LibriTTS validation = every 20th train-clean-100 item (index % 20 == 0, in ID order;
# download_data.py), the rest trains; then train and validation clips of 1.0-15.0 s; all.csv = train
# + val (the cache's list)
import sys
from speechbrain_codec.dataio import read_manifest, write_manifest
folder, dataset = sys.argv[1], sys.argv[2]
if dataset == "libritts":
    items = [{"ID": k, **v} for k, v in read_manifest(f"{folder}/train.csv").items()]
    write_manifest(f"{folder}/val.csv", items[::20])
    write_manifest(f"{folder}/train.csv", [r for i, r in enumerate(items) if i % 20])
rows = []
for split in ("train", "val"):
    kept = {k: v for k, v in read_manifest(f"{folder}/{split}.csv").items() if 1.0 <= float(v["duration"]) <= 15.0}
    if not kept:
        sys.exit(f"error: {folder}/{split}.csv has no clip of 1-15 s: check the corpus")
    write_manifest(f"{folder}/{split}.csv", [{"ID": k, **v} for k, v in kept.items()])
    rows += [{"ID": k, **v} for k, v in kept.items()]
write_manifest(f"{folder}/all.csv", rows)
PY
    mark_done "$data/.done" "$k_prepare"
  fi
fi

# ---------------------------------------------------------------- 2. cache HuBERT hidden state 9
k_cache=$(stage_key cache "$k_prepare" "$hubert")
if run_stage $s_cache "cache HuBERT hidden state 9 ($hubert)"; then
  require "$data/all.csv" $s_prepare prepare
  if ! stage_done $s_cache "$exp/cache/.done" "$k_cache"; then
    python -m speechbrain_codec.dataio.cache extract --manifest "$data/all.csv" --data-root "$wavs" \
      --out "$exp/cache/hubert9" --kind ssl --source "$hubert" --layer 9 --device "$device"
    mark_done "$exp/cache/.done" "$k_cache"
  fi
fi

# ---------------------------------------------------------------- 3. train (P1, GAN)
epoch_args=()
if [ "$debug" != true ] && [ -f "$train_csv" ]; then  # the epochs that make --steps at --batch_size
  n_train=$(python -c "import sys; from speechbrain_codec.dataio import read_manifest; print(len(read_manifest(sys.argv[1])))" "$train_csv")
  epoch_args=(--number_of_epochs $(( (steps * batch_size + n_train - 1) / n_train )) --batch_size "$batch_size"
              --disc_start_step "$disc_start" --adv_start_step "$disc_start")
fi
if run_stage $s_train "check the cache" > /dev/null; then require "$exp/cache/.done" $s_cache "cache HuBERT"; fi
train_dir=$exp/train_$system; codec_dir=$train_dir/codec
stage_train "train SIREN P1 ($system)" \
  "$(stage_key train "$k_cache" "$(hash_files "$here/hparams/train.yaml" "$here/hparams/codec/siren.yaml" "$here/hparams/debug.yaml")" "$codec_overrides" "$debug" "${epoch_args[*]}" "$train_args")" \
  "$here/hparams/train.yaml" --data_folder "$wavs" --manifest_folder "$data" --hubert_cache "$exp/cache/hubert9" \
  --codec_hparams "$here/hparams/codec/siren.yaml" --codec_overrides "$codec_overrides" --disc_width "$disc_width" \
  --device "$device" "${epoch_args[@]}" "${debug_args[@]}"

# ---------------------------------------------------------------- 4-5. encode, decode (the shared stages)
exp_root=$exp; exp=$exp_root/$system; mkdir -p "$exp"
test_csv=$data/test.csv
stage_encode      # 4. test split -> $exp/bitstreams/<ID>.sbc (3 streams) + bitrate.json
stage_decode      # 5. -> $exp/decoded/<ID>.wav

# ---------------------------------------------------------------- 6. evaluate, once per ASR
first=true
for a in $asrs; do
  name=$(echo "$a" | tr -c 'A-Za-z0-9._-' '_')
  out=$exp/results/results_$name.json; [ "$first" = true ] && out=$exp/results/results.json
  k_eval=$(stage_key evaluate "$k_decode" "$metrics" "$a" "$spk_model" "$utmos")
  if run_stage $s_evaluate "evaluate with $a ($metrics; speaker model $spk_model)"; then
    require "$exp/decoded/.done" $s_decode decode
    if ! stage_done $s_evaluate "$exp/results/$name.done" "$k_eval"; then
      utmos_args=(); [ -n "$utmos" ] && utmos_args=(--utmos "$utmos")
      speechbrain-codec evaluate --manifest "$test_csv" --data-root "$wavs" --system "$system=$exp/decoded" \
        --metrics "$metrics" --asr "$a" --spk-model "$spk_model" "${utmos_args[@]}" --out "$out"
      mark_done "$exp/results/$name.done" "$k_eval"
    fi
  fi
  first=false
done
stage_report      # 7. results.md
