#!/usr/bin/env bash
# Mini recipe: train a small log-mel -> FSQ -> Vocos codec (~500 b/s) on 20 bundled real clips
# (English and Mandarin), encode the test clips to .sbc bitstreams, decode them, run Codec2 700C
# and Opus 6k on the same clips, and score everything (PESQ-wb, STOI, pocketsphinx WER/dWER,
# nominal and measured bitrates). Runs on 2 CPU cores in a few minutes.
#
#   bash run.sh                    # everything; finished stages are skipped
#   bash run.sh --stage 4          # re-run from stage 4 (decode) on
#   bash run.sh --debug true       # seconds-long training (CI)
#   bash run.sh --stage 2          # retrain from scratch (the old train/ moves to train.prev/)
#   bash run.sh --stage 6 --protocol focalcodec --model_dir /models   # score as FocalCodec does
#                                  # (/models/whisper-large-v3, wavlm-base-sv, utmos22_strong.onnx)
#
# Stages 1-2 are this recipe's own (its data preparation; its training is the generic trainer
# speechbrain_codec.bin.train_codec); stages 3-8 are the shared ones of tools/codec_stages.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

# -------- options (every one has a default; --help lists them)
stage=1                 # first stage to run
stop_stage=8            # last stage to run
data_folder=$here/data  # bundled clips with manifest.tsv
exp=$here/exp/mini      # experiment folder
hparams=$here/hparams/train.yaml  # training hparams
codec_hparams=$here/hparams/codec/mel_fsq.yaml  # the codec (encoder, quantizer, decoder)
debug=false             # true: shrink training to seconds (hparams/debug.yaml)
device=cpu              # torch device for training and coding
nproc=1                 # training processes (torchrun --nproc_per_node; gloo on cpu, nccl on cuda)
baselines="codec2_700C codec2_1200 codec2_3200 opus_6k"  # classical reference rows
entropy=false           # true: fit a token model on the training clips, range-code the bitstreams
entropy_model=order0    # the token model of --entropy: order0 | ngram (order-2 back-off n-gram)
protocol=offline        # evaluation preset: offline | focalcodec | llasa | focalcodec_s | lmloss | dpslm
model_dir=""            # folder with the preset's models (<name> per model: whisper-large-v3, utmos22_strong.onnx, ...)
metrics=protocol        # evaluation metrics (comma-separated, all offline ones, or protocol: the preset's)
asr=protocol            # ASR(s) for WER/dWER, space-separated: pocketsphinx | whisper:<id or path> | ctc:<id or path> | none | protocol
listening_items=3       # items per listening test (stage 8)
train_args=""           # extra trainer overrides, shell-quoted: "--number_of_epochs 5 --codec_overrides '{levels: [8, 8]}'"

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"
. "$root/tools/codec_stages.sh"

# stage numbers (the only place they are written), used by the guards and by the "missing input" messages
s_prepare=1; s_train=2; s_encode=3; s_decode=4; s_baselines=5; s_evaluate=6; s_report=7; s_listening=8
if [ "$stop_stage" -lt "$stage" ]; then
  echo "$0: --stop_stage $stop_stage is before --stage $stage: nothing to run" >&2; exit 1
fi
[ "$nproc" -ge 1 ] || { echo "$0: --nproc must be at least 1" >&2; exit 1; }
mkdir -p "$exp"
lock_exp
# replayable history of this experiment: one line per invocation, the command as typed
# (shell-quoted, run from the folder it was typed in), then the date as a comment
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"
# our row in the tables
system=mini-fsq

# ---------------------------------------------------------------- 1. prepare
k_prepare=$(stage_key prepare "$data_folder" "$(hash_files "$data_folder/manifest.tsv" "$here/mini_prepare.py")")
if run_stage $s_prepare "prepare manifests"; then
  if ! stage_done $s_prepare "$exp/data/.done" "$k_prepare"; then
    python "$here/mini_prepare.py" --data_folder "$data_folder" --save_folder "$exp/data"
    mark_done "$exp/data/.done" "$k_prepare"
  fi
fi

# ---------------------------------------------------------------- 2. train (the generic trainer)
debug_args=()
[ "$debug" = true ] && debug_args=(--overrides_file "$here/hparams/debug.yaml")
stage_train "train the codec" \
  "$(stage_key train "$k_prepare" "$(hash_files "$hparams" "$codec_hparams")" "$debug" "$train_args")" \
  "$hparams" --data_folder "$data_folder" --manifest_folder "$exp/data" \
  --codec_hparams "$codec_hparams" --device "$device" "${debug_args[@]}"

# ---------------------------------------------------------------- 3-8. shared stages
stage_encode      # 3. test clips -> bitstreams/<ID>.sbc (entropy=true: range-coded)
stage_decode      # 4. bitstreams -> decoded/<ID>.wav
stage_baselines   # 5. $baselines on the test clips -> baselines/<name>/
stage_evaluate    # 6. ours + baselines -> results/results.json
stage_report      # 7. results.md (printed) and plots
stage_listening   # 8. webMUSHRA MUSHRA + semantic MOS -> listening/
