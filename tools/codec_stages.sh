#!/usr/bin/env bash
# The stages every codec recipe shares, sourced by run.sh after parse_options.sh and
# stage_lib.sh. Each one is a function that guards itself with run_stage (--stage/--stop_stage),
# skips itself when its stamp matches (stage_done), says which stage makes a missing input
# (require), writes through the CLI (temporary names, renamed on success) and stamps its output
# (mark_done). Each sets k_<name>, the key of its outputs, which the stages after it include in
# theirs, so a changed upstream stage re-runs everything downstream.
#
# run.sh defines the stage numbers once, as variables, and calls the functions in order:
#     s_prepare=1; s_train=2; s_encode=3; s_decode=4; s_baselines=5; s_evaluate=6; s_report=7; s_listening=8
#     ... its own stages (prepare, train: stage_train) ...
#     stage_encode; stage_decode; stage_baselines; stage_evaluate; stage_report; stage_listening
# A recipe without one of these stages leaves its function out (and its number unset).
#
# Variables read (run.sh options or its own):
#   exp data_folder device                   experiment folder, {data_root}, torch device
#   s_<name>                                  stage numbers (the ones the called functions need)
#   k_prepare k_train                         keys of the recipe's prepare and train stages
#   test_csv train_csv                        manifests (default $exp/data/{test,train}.csv)
#   codec_dir                                 exported codec (default $exp/train/codec)
#   system                                    our row's name in the tables (default the recipe folder's)
#   entropy entropy_model baselines metrics asr listening_items nproc train_args   as run.sh's options of the same names
#   protocol model_dir test_set evaluate_args   evaluation preset (speechbrain_codec.protocols; empty: none), the
#                                             folder of its local models, the test set's name, extra evaluate
#                                             options (shell-quoted); metrics=protocol / asr=protocol: the preset's;
#                                             asr may list several ASRs (space-separated: one --asr each)
#   report_format report_inputs               report --format (default: the protocol's layout); more results files
#                                             of the same systems (one per further ASR) merged into results.md
#
#   stage_train NAME KEY ARGS...             the generic trainer (speechbrain_codec.bin.train_codec)
#                                             ARGS... --output_folder $train_dir (default $exp/train)
#                                             then the shell-quoted $train_args; nproc > 1: torchrun;
#                                             an explicit --stage <= s_train adds --from_scratch true
#   stage_encode     test set -> $exp/bitstreams/<ID>.sbc (+ bitrate.json); entropy=true: fit-entropy first
#   stage_decode     bitstreams -> $exp/decoded/<ID>.wav
#   stage_baselines  classical codecs on the test set -> $exp/baselines/<name>/
#   stage_evaluate   ours + every baseline made -> $exp/results/results.json
#   stage_report     results.json -> results.md (printed) + plots (always re-run: it is quick)
#   stage_listening  webMUSHRA MUSHRA (every test item) + semantic MOS (English items with text)

hash_files() { cat "$@" | sha256sum | cut -c1-16; }

__stages_defaults() {
  test_csv=${test_csv:-$exp/data/test.csv}
  train_csv=${train_csv:-$exp/data/train.csv}
  codec_dir=${codec_dir:-$exp/train/codec}
  train_dir=${train_dir:-$exp/train}
  system=${system:-$(basename "$(dirname "$0")")}
  entropy=${entropy:-false}
  entropy_model=${entropy_model:-order0}
  baselines=${baselines:-}
  metrics=${metrics:-all}
  asr=${asr:-pocketsphinx}
  listening_items=${listening_items:-3}
  nproc=${nproc:-1}
  protocol=${protocol:-}
  model_dir=${model_dir:-}
  test_set=${test_set:-}
  evaluate_args=${evaluate_args:-}
  report_format=${report_format:-}
  report_inputs=${report_inputs:-}
}

# stage_train NAME KEY ARGS...: python -m speechbrain_codec.bin.train_codec ARGS... unless
# $train_dir/.done holds KEY. An interrupted training resumes from its last checkpoint when
# re-run with the same configuration (the trainer refuses checkpoints of another one); an
# explicit --stage at or before this stage retrains from scratch (the trainer moves the old
# folder to <it>.prev once the new run has loaded, just before training starts).
stage_train() {
  __stages_defaults
  local name=$1 key=$2; shift 2
  k_train=$key
  run_stage "$s_train" "$name" || return 0
  require "$train_csv" "$s_prepare" prepare
  stage_done "$s_train" "$train_dir/.done" "$key" && return 0
  local fresh=() launcher=(python) extra_args=()
  eval "extra_args=(${train_args:-})"  # shell quoting inside --train_args is honoured
  if [ "${given_stage:-false}" = true ] && [ "$stage" -le "$s_train" ]; then fresh=(--from_scratch true); fi
  [ "$nproc" -gt 1 ] && launcher=(python -m torch.distributed.run --standalone --nproc_per_node "$nproc")
  "${launcher[@]}" -m speechbrain_codec.bin.train_codec "$@" --output_folder "$train_dir" \
    "${fresh[@]}" "${extra_args[@]}"
  mark_done "$train_dir/.done" "$key"
}

stage_encode() {
  __stages_defaults
  k_encode=$(stage_key encode "$k_train" "$entropy" "$entropy_model")
  run_stage "$s_encode" "encode the test clips to .sbc bitstreams" || return 0
  require "$codec_dir/codec.ckpt" "$s_train" train
  stage_done "$s_encode" "$exp/bitstreams/.done" "$k_encode" && return 0
  local encode_args=()
  if [ "$entropy" = true ]; then
    speechbrain-codec fit-entropy --manifest "$train_csv" --data-root "$data_folder" \
      --checkpoint "$codec_dir" --device "$device" --model "$entropy_model"
    encode_args=(--entropy)
  fi
  speechbrain-codec encode --manifest "$test_csv" --data-root "$data_folder" \
    "$exp/bitstreams" --checkpoint "$codec_dir" --device "$device" "${encode_args[@]}"
  mark_done "$exp/bitstreams/.done" "$k_encode"
}

stage_decode() {
  __stages_defaults
  k_decode=$(stage_key decode "$k_encode")
  run_stage "$s_decode" "decode the bitstreams" || return 0
  require "$exp/bitstreams/bitrate.json" "$s_encode" encode
  stage_done "$s_decode" "$exp/decoded/.done" "$k_decode" && return 0
  speechbrain-codec decode "$exp/bitstreams" "$exp/decoded" --checkpoint "$codec_dir" --device "$device"
  mark_done "$exp/decoded/.done" "$k_decode"
}

stage_baselines() {
  __stages_defaults
  k_baselines=$(stage_key baselines "$k_prepare" "$baselines")
  run_stage "$s_baselines" "classical baselines: $baselines" || return 0
  require "$test_csv" "$s_prepare" prepare
  stage_done "$s_baselines" "$exp/baselines/.done" "$k_baselines" && return 0
  if [ -z "${baselines// /}" ]; then
    log "no baselines asked for (--baselines)"
    mark_done "$exp/baselines/.done" "$k_baselines"
    return 0
  fi
  # shellcheck disable=SC2086
  speechbrain-codec baselines --manifest "$test_csv" --data-root "$data_folder" "$exp/baselines" $baselines
  mark_done "$exp/baselines/.done" "$k_baselines"
}

# The systems scored and listened to: ours, then each baseline whose folder exists.
__systems() {
  systems=(--system "$system=$exp/decoded")
  local b
  for b in $baselines; do
    [ -d "$exp/baselines/$b" ] && systems+=(--system "$b=$exp/baselines/$b")
  done
  return 0
}

stage_evaluate() {
  __stages_defaults
  __systems
  local eval_args=() extra_args=() a
  [ "$metrics" = protocol ] || eval_args+=(--metrics "$metrics")
  if [ "$asr" != protocol ]; then for a in $asr; do eval_args+=(--asr "$a"); done; fi
  [ -n "$protocol" ] && eval_args+=(--protocol "$protocol")
  [ -n "$model_dir" ] && eval_args+=(--model-dir "$model_dir")
  [ -n "$test_set" ] && eval_args+=(--test-set "$test_set")
  eval "extra_args=(${evaluate_args})"  # shell quoting inside --evaluate_args is honoured
  k_evaluate=$(stage_key evaluate "$k_decode" "${k_baselines:-}" "${systems[*]}" "$metrics" "$asr" "$protocol" \
    "$model_dir" "$test_set" "$evaluate_args")
  run_stage "$s_evaluate" "evaluate (${protocol:+protocol $protocol; }$metrics; ASR $asr)" || return 0
  require "$exp/decoded/.done" "$s_decode" decode
  stage_done "$s_evaluate" "$exp/results/.done" "$k_evaluate" && return 0
  speechbrain-codec evaluate --manifest "$test_csv" --data-root "$data_folder" \
    "${systems[@]}" "${eval_args[@]}" "${extra_args[@]}" --out "$exp/results/results.json"
  mark_done "$exp/results/.done" "$k_evaluate"
}

stage_report() {
  __stages_defaults
  run_stage "$s_report" "report" || return 0
  require "$exp/results/results.json" "$s_evaluate" evaluate
  local fmt=() inputs=() f
  [ -n "$report_format" ] && fmt=(--format "$report_format")
  for f in $report_inputs; do [ -f "$f" ] && inputs+=("$f"); done
  speechbrain-codec report "$exp/results/results.json" "${inputs[@]}" "${fmt[@]}" --out "$exp/results/results.md" \
    --plots "$exp/results"
  log "results: $exp/results/results.json, results.md and plots in $exp/results"
}

stage_listening() {
  __stages_defaults
  __systems
  k_listening=$(stage_key listening "$k_decode" "${k_baselines:-}" "${systems[*]}" "$listening_items")
  run_stage "$s_listening" "webMUSHRA listening tests (MUSHRA + semantic MOS)" || return 0
  require "$exp/decoded/.done" "$s_decode" decode
  stage_done "$s_listening" "$exp/listening/.done" "$k_listening" && return 0
  local out=$exp/listening n_english
  speechbrain-codec listening make "$out" --reference "$test_csv" --data-root "$data_folder" \
    "${systems[@]}" --kind mushra --items "$listening_items"
  # the semantic test shows the transcript: English items that have one
  n_english=$(python -m speechbrain_codec.bin.manifest_subset "$test_csv" "$out/english.csv" --lang en --with_text)
  if [ "$n_english" -gt 0 ]; then
    speechbrain-codec listening make "$out" --reference "$out/english.csv" --data-root "$data_folder" \
      "${systems[@]}" --kind semantic --items $(( n_english < listening_items ? n_english : listening_items ))
  else
    log "no English test item with a transcript: no semantic test"
  fi
  mark_done "$out/.done" "$k_listening"
}
