#!/usr/bin/env bash
# TODO(<system>) on TODO(<Dataset>): TODO one line on what this recipe reproduces (spec section).
# Copy templates/recipe/ to recipes/<Dataset>/<system>/, fill the TODOs, and keep README.md in step
# (or let tools/new_recipe.py generate the recipe for a corpus table or a Kaldi directory).
#
#   bash run.sh --data_folder /data/<Dataset>   # every stage; finished ones are skipped
#   bash run.sh --stage 3                       # re-run from stage 3 (encode) on
#   bash run.sh --debug true                    # seconds-long training (CI)
#   bash run.sh --stage 2                       # retrain from scratch (the old train/ moves to train.prev/)
#
# Stages 0-2 are this recipe's own (download, prepare, train phases with the generic trainer
# speechbrain_codec.bin.train_codec); the stages after them are the shared ones of
# tools/codec_stages.sh. A recipe with an alignment or feature-caching stage, or several
# training phases, adds them before the shared ones and renumbers in the one line below.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)  # recipes/<Dataset>/<system>/run.sh
# TODO: the dataset's shared preparation script (recipes/<Dataset>/<dataset>_prepare.py)
prepare=$root/recipes/TODO_Dataset/todo_prepare.py

# -------- options (every one has a default; --help lists them)
stage=1                 # first stage to run (0: download the corpus first)
stop_stage=8            # last stage to run
data_folder=""          # the corpus ({data_root} of the manifests); required
exp=$here/exp/default   # experiment folder
hparams=$here/hparams/train.yaml  # training hparams
codec_hparams=$here/hparams/codec.yaml  # the codec (encoder, quantizer, decoder)
debug=false             # true: shrink training to seconds (hparams/debug.yaml)
device=cpu              # torch device for training and coding
nproc=1                 # training processes (torchrun --nproc_per_node; gloo on cpu, nccl on cuda)
baselines="codec2_700C opus_6k"  # classical reference rows
entropy=false           # true: fit a token model on the training set, range-code the bitstreams
entropy_model=order0    # the token model of --entropy: order0 | ngram (order-2 back-off n-gram)
metrics=all             # evaluation metrics (comma-separated, or all offline ones)
asr=pocketsphinx        # ASR for WER/dWER: pocketsphinx | whisper:<id or path> | ctc:<id or path> | none
listening_items=10      # items per listening test
train_args=""           # extra trainer overrides, shell-quoted: "--number_of_epochs 5 --brain gan"

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"
. "$root/tools/codec_stages.sh"

# stage numbers: written here only
s_download=0; s_prepare=1; s_train=2; s_encode=3; s_decode=4; s_baselines=5; s_evaluate=6; s_report=7; s_listening=8
if [ "$stop_stage" -lt "$stage" ]; then
  echo "$0: --stop_stage $stop_stage is before --stage $stage: nothing to run" >&2; exit 1
fi
[ -n "$data_folder" ] || { echo "$0: --data_folder is required (the corpus folder)" >&2; exit 1; }
mkdir -p "$exp"
lock_exp                # one run per experiment folder
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"
# our row in the tables (TODO: the system's name)
system=$(basename "$here")

# ---------------------------------------------------------------- 0. download (needs internet)
if run_stage $s_download "download the corpus"; then
  python "$prepare" --data_folder "$data_folder" --save_folder "$exp/data" --download
fi

# ---------------------------------------------------------------- 1. prepare
k_prepare=$(stage_key prepare "$data_folder" "$(hash_files "$prepare")")
if run_stage $s_prepare "prepare manifests"; then
  if ! stage_done $s_prepare "$exp/data/.done" "$k_prepare"; then
    python "$prepare" --data_folder "$data_folder" --save_folder "$exp/data"
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

# ---------------------------------------------------------------- shared stages
stage_encode
stage_decode
stage_baselines
stage_evaluate
stage_report
stage_listening
