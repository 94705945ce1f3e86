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
metrics=all             # evaluation metrics (comma-separated, or all offline ones)
asr=pocketsphinx        # ASR for WER/dWER: pocketsphinx | whisper:<id or path> | ctc:<id or path> | none
listening_items=3       # items per listening test (stage 8)
train_args=""           # extra train.py overrides, shell-quoted: "--number_of_epochs 5 --codec_overrides '{levels: [8, 8]}'"

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"

# stage numbers, used by the guards and by the "missing input" messages
s_prepare=1; s_train=2; s_encode=3; s_decode=4; s_baselines=5; s_evaluate=6; s_report=7; s_listening=8
if [ "$stop_stage" -lt "$stage" ]; then
  echo "$0: --stop_stage $stop_stage is before --stage $stage: nothing to run" >&2; exit 1
fi
[ "$nproc" -ge 1 ] || { echo "$0: --nproc must be at least 1" >&2; exit 1; }
mkdir -p "$exp"
# replayable history of this experiment: one line per invocation, the command as typed
# (shell-quoted, run from the folder it was typed in), then the date as a comment
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"

debug_args=()
[ "$debug" = true ] && debug_args=(--overrides_file "$here/hparams/debug.yaml")
hash_files() { cat "$@" | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- 1. prepare
k_prepare=$(stage_key prepare "$data_folder" "$(hash_files "$data_folder/manifest.tsv" "$here/mini_prepare.py")")
if run_stage $s_prepare "prepare manifests"; then
  if ! stage_done $s_prepare "$exp/data/.done" "$k_prepare"; then
    python "$here/mini_prepare.py" --data_folder "$data_folder" --save_folder "$exp/data"
    mark_done "$exp/data/.done" "$k_prepare"
  fi
fi

# ---------------------------------------------------------------- 2. train
k_train=$(stage_key train "$k_prepare" "$(hash_files "$hparams" "$codec_hparams")" "$debug" "$train_args")
# An interrupted training resumes from its last checkpoint when run.sh is run again with the
# same configuration; train.py refuses checkpoints of another configuration. An explicit
# --stage 1 or 2 retrains from scratch: train.py moves the old train/ to train.prev/ once the
# new run has loaded its configuration, data and codec, just before training starts.
if run_stage $s_train "train the codec"; then
  require "$exp/data/train.csv" $s_prepare prepare
  if ! stage_done $s_train "$exp/train/.done" "$k_train"; then
    eval "extra_args=($train_args)"  # shell quoting inside --train_args is honoured
    fresh_args=()
    if [ "${given_stage:-false}" = true ] && [ "$stage" -le $s_train ]; then
      fresh_args=(--from_scratch true)
    fi
    launcher=(python)
    [ "$nproc" -gt 1 ] && launcher=(python -m torch.distributed.run --standalone --nproc_per_node "$nproc")
    "${launcher[@]}" "$here/train.py" "$hparams" --data_folder "$data_folder" --manifest_folder "$exp/data" \
      --output_folder "$exp/train" --codec_hparams "$codec_hparams" --device "$device" \
      "${debug_args[@]}" "${fresh_args[@]}" "${extra_args[@]}"
    mark_done "$exp/train/.done" "$k_train"
  fi
fi

# ---------------------------------------------------------------- 3. encode
k_encode=$(stage_key encode "$k_train" "$entropy")
if run_stage $s_encode "encode the test clips to .sbc bitstreams"; then
  require "$exp/train/codec/codec.ckpt" $s_train train
  if ! stage_done $s_encode "$exp/bitstreams/.done" "$k_encode"; then
    encode_args=()
    if [ "$entropy" = true ]; then
      speechbrain-codec fit-entropy --manifest "$exp/data/train.csv" --data-root "$data_folder" \
        --checkpoint "$exp/train/codec" --device "$device"
      encode_args=(--entropy)
    fi
    speechbrain-codec encode --manifest "$exp/data/test.csv" --data-root "$data_folder" \
      "$exp/bitstreams" --checkpoint "$exp/train/codec" --device "$device" "${encode_args[@]}"
    mark_done "$exp/bitstreams/.done" "$k_encode"
  fi
fi

# ---------------------------------------------------------------- 4. decode
k_decode=$(stage_key decode "$k_encode")
if run_stage $s_decode "decode the bitstreams"; then
  require "$exp/bitstreams/bitrate.json" $s_encode encode
  if ! stage_done $s_decode "$exp/decoded/.done" "$k_decode"; then
    speechbrain-codec decode "$exp/bitstreams" "$exp/decoded" --checkpoint "$exp/train/codec" --device "$device"
    mark_done "$exp/decoded/.done" "$k_decode"
  fi
fi

# ---------------------------------------------------------------- 5. baselines
k_baselines=$(stage_key baselines "$k_prepare" "$baselines")
if run_stage $s_baselines "classical baselines: $baselines"; then
  require "$exp/data/test.csv" $s_prepare prepare
  if ! stage_done $s_baselines "$exp/baselines/.done" "$k_baselines"; then
    # shellcheck disable=SC2086
    speechbrain-codec baselines --manifest "$exp/data/test.csv" --data-root "$data_folder" \
      "$exp/baselines" $baselines
    mark_done "$exp/baselines/.done" "$k_baselines"
  fi
fi

# ---------------------------------------------------------------- 6. evaluate
systems=(--system "mini-fsq=$exp/decoded")
for b in $baselines; do
  [ -d "$exp/baselines/$b" ] && systems+=(--system "$b=$exp/baselines/$b")
done
k_evaluate=$(stage_key evaluate "$k_decode" "$k_baselines" "${systems[*]}" "$metrics" "$asr")
if run_stage $s_evaluate "evaluate ($metrics; ASR $asr)"; then
  require "$exp/decoded/.done" $s_decode decode
  if ! stage_done $s_evaluate "$exp/results/.done" "$k_evaluate"; then
    speechbrain-codec evaluate --manifest "$exp/data/test.csv" --data-root "$data_folder" \
      "${systems[@]}" --metrics "$metrics" --asr "$asr" --out "$exp/results/results.json"
    mark_done "$exp/results/.done" "$k_evaluate"
  fi
fi

# ---------------------------------------------------------------- 7. report
if run_stage $s_report "report"; then
  require "$exp/results/results.json" $s_evaluate evaluate
  speechbrain-codec report "$exp/results/results.json" --out "$exp/results/results.md" --plots "$exp/results"
  log "results: $exp/results/results.json, results.md and plots in $exp/results"
fi

# ---------------------------------------------------------------- 8. listening tests
k_listening=$(stage_key listening "$k_decode" "$k_baselines" "${systems[*]}" "$listening_items")
if run_stage $s_listening "webMUSHRA listening tests (MUSHRA + semantic MOS)"; then
  require "$exp/decoded/.done" $s_decode decode
  if ! stage_done $s_listening "$exp/listening/.done" "$k_listening"; then
    python "$here/make_listening.py" --test-manifest "$exp/data/test.csv" --data_folder "$data_folder" \
      --out "$exp/listening" --items "$listening_items" "${systems[@]}"
    mark_done "$exp/listening/.done" "$k_listening"
  fi
fi
