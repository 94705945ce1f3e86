#!/usr/bin/env bash
# FocalCodec-S bilingual (zh/en) fine-tuning (../../../../shared/specs/focalcodec_s.md, in the
# repository's docs: recipes/Bilingual/focalcodec_s/README.md): the published causal FocalCodec
# (lucadellalib/focalcodec_50hz_2k_causal, 550 b/s) fine-tuned on AISHELL-1 + LibriSpeech and
# grown to 25 Hz (275 b/s) and 12.5 Hz (137.5 b/s), with a Whisper-small token CE on cached
# pseudo-labels (Exp J, K); experiments E-K of the seed's tables, each from its parent.
#
#   bash run.sh --aishell /data/aishell --librispeech /data/LibriSpeech     # E1 F1 E2 F2 E3 G H J K
#   bash run.sh ... --experiments "J K"        # only what J and K need (E1 -> G -> H -> J -> K)
#   bash run.sh ... --stage 3 --experiments K --nproc 2 --device cuda     # retrain K on 2 GPUs
#   bash run.sh --langs zh ...                 # one language (recipes/AISHELL-1/focalcodec_s)
#
# Stages: 1 prepare (AISHELL-1, LibriSpeech, the experiments' data mixes by hours, the test list:
# the first 2000 utterances of each language) -> 2 Whisper pseudo-labels of every 3-s chunk (for
# the experiments with the ASR loss; batched, resumable) -> 3 train every experiment asked for and
# its parents (the generic trainer; --nproc N: torchrun) -> 4 the pretrained row and every
# experiment: encode the test list (offline and streaming: equal tokens checked), decode ->
# 5 evaluate (per ASR in --asrs: dCER / dWER as the seed defines them, corpus CER / WER against the
# ground truth, dWER against the original's transcript, PESQ, STOI, MOS) -> 6 report (the seed's
# table format). Finished stages (and each finished training) are skipped; --stage N re-runs from N.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)

# -------- options (every one has a default; --help lists them)
stage=1                 # first stage to run
stop_stage=6            # last stage to run
aishell=/data/aishell   # AISHELL-1 (data_aishell/ or its parent)
librispeech=/data/LibriSpeech   # LibriSpeech (train-clean-100, dev-clean, test-clean) or its parent
langs="zh en"           # languages to use: "zh en" | zh | en (the AISHELL-1 / LibriSpeech variants)
exp=$here/exp           # experiment folder
experiments="E1 F1 E2 F2 E3 G H J K"   # experiments to train (their parents are added); I needs --weights_i
weights_i=""            # Exp I's loss weights (not published), e.g. "{feature: 1, mel: 10, stft: 5}"
base=lucadellalib/focalcodec_50hz_2k_causal   # the published causal checkpoint (hub id or folder)
whisper=openai/whisper-small    # the ASR loss's model and its pseudo-labeller
test_per_lang=2000      # test utterances per language (the first rows of each test list)
debug=false             # true: tiny random FocalCodec / Whisper / CTC, seconds of training (CI)
device=cpu              # torch device (training, labelling, coding)
nproc=1                 # training processes (torchrun --nproc_per_node; gloo on cpu, nccl on cuda)
label_batch=16          # chunks per Whisper batch in stage 2
asrs="whisper:openai/whisper-large-v3 ctc:facebook/wav2vec2-base-960h whisper:openai/whisper-small"  # evaluation ASRs
metrics="pesq,stoi,dnsmos"      # evaluation metrics (MOS: DNSMOS; UTMOS with a local checkpoint)
freeze_refiner=false    # true: freeze the decompressor's refiner in stages 2-3, as the original's optimiser groups did
train_args=""           # extra trainer overrides for every training, shell-quoted

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"
. "$root/tools/codec_stages.sh"

s_prepare=1; s_labels=2; s_train=3; s_encode=4; s_decode=4; s_evaluate=5; s_report=6
[ "$stop_stage" -ge "$stage" ] || { echo "$0: --stop_stage $stop_stage is before --stage $stage" >&2; exit 1; }
for l in $langs; do case $l in zh|en) ;; *) echo "$0: --langs takes zh and/or en, not $l" >&2; exit 1 ;; esac; done
mkdir -p "$exp"
lock_exp
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"

# -------- the experiments (focalcodec_s.md §1.1, §2.3, §3, §4): stage (token rate), how it
# starts (base: the published model; grow: the parent's export + one layer pair; continue: all
# of the parent's weights), its data mix, its parent, what trains, the ASR-loss weight
declare -A STAGE=([E1]=1 [F1]=1 [E2]=2 [F2]=2 [E3]=3 [G]=2 [H]=2 [I]=2 [J]=2 [K]=3)
declare -A START=([E1]=base [F1]=base [E2]=grow [F2]=grow [E3]=grow [G]=grow [H]=continue [I]=continue [J]=continue [K]=grow)
declare -A MIX=([E1]=mono25 [F1]=mono25 [E2]=mono25 [F2]=mono25 [E3]=mono25 [G]=bi50 [H]=bi100 [I]=bi100 [J]=bi100 [K]=bi100)
declare -A PARENT=([E1]="" [F1]="" [E2]=E1 [F2]=F1 [E3]=E2 [G]=E1 [H]=G [I]=G [J]=H [K]=J)
declare -A MODE=([E1]=decompressor_only [F1]=both_ste)   # stage 1 only; later stages: both_ste
declare -A ASR_WEIGHT=([J]=30 [K]=20)
# hours of training data per language (~; the authors published no file lists)
declare -A HOURS=([mono25]="zh=25,en=25" [bi50]="zh=25,en=25" [bi100]="zh=50,en=50")
valid_hours=1; hours_scale=1
if [ "$debug" = true ]; then hours_scale=0.0004; valid_hours=0.01; fi   # 25 h -> 36 s

order=()   # the experiments asked for, parents first
add_exp() {
  local x=$1
  [ -n "${STAGE[$x]:-}" ] || { echo "$0: unknown experiment $x (E1 F1 E2 F2 E3 G H I J K)" >&2; exit 1; }
  [ -n "${PARENT[$x]}" ] && add_exp "${PARENT[$x]}"
  [[ " ${order[*]} " == *" $x "* ]] || order+=("$x")
}
for x in $experiments; do add_exp "$x"; done
if [[ " ${order[*]} " == *" I "* ]] && [ -z "$weights_i" ]; then
  echo "$0: Exp I's 'adjusted' loss weights are not published (focalcodec_s.md §3): give them with --weights_i \"{feature: 1, mel: ..., stft: ...}\"" >&2
  exit 1
fi
mixes=$(for x in "${order[@]}"; do echo "${MIX[$x]}"; done | sort -u)

data=$exp/data
test_csv=$data/test.csv
overrides=""   # the trainer's overrides files (comma-separated; later ones win)
if [ "$debug" = true ]; then
  tiny=$exp/tiny_models
  python -m speechbrain_codec.bin.tiny_models "$tiny" > /dev/null
  base=$tiny/focalcodec_50hz_2k_causal; whisper=$tiny/whisper
  asrs="whisper:$tiny/whisper ctc:$tiny/ctc pocketsphinx"; metrics="pesq,stoi"
fi

# ---------------------------------------------------------------- 1. prepare
# mono25 (Exp E, F): 25 h of one language, AISHELL-1 (zh) unless --langs en; bi50 / bi100: every
# language of --langs. Validation: 1 h per language of the mix; the test list (mix "test"): every
# language of --langs. Every mix gets every corpus as a source, so all share one {data_root}.
primary=zh; [[ " $langs " == *" zh "* ]] || primary=en
mix_langs() { case $1 in mono25) echo "$primary" ;; *) echo "$langs" ;; esac; }
hours_of() {  # hours_of MIX zh=25,en=25 SCALE -> the mix's languages, hours x SCALE
  local out="" kv ml; ml=" $(mix_langs "$1") "
  for kv in ${2//,/ }; do
    [[ $ml == *" ${kv%%=*} "* ]] || continue
    out+="${out:+,}${kv%%=*}=$(awk -v h="${kv#*=}" -v s="$3" 'BEGIN { print h * s }')"
  done
  echo "$out"
}
join() { local IFS=,; echo "$*"; }
splits_of() {  # splits_of SPLIT... -> --split SPLIT=lang:corpus_split,... for the mix's languages
  local mix=$1; shift
  local split l parts
  for split in "$@"; do
    parts=()
    for l in $(mix_langs "$mix"); do
      case $l:$split in
        zh:train) parts+=(zh:train) ;; zh:valid) parts+=(zh:dev) ;; zh:test) parts+=(zh:test) ;;
        en:train) parts+=(en:train-clean-100) ;; en:valid) parts+=(en:dev-clean) ;; en:test) parts+=(en:test-clean) ;;
      esac
    done
    printf -- '--split\n%s=%s\n' "$split" "$(join "${parts[@]}")"
  done
}
sources=()
for l in $langs; do
  if [ "$l" = zh ]; then sources+=(--source "zh=$data/AISHELL-1"); else sources+=(--source "en=$data/LibriSpeech"); fi
done
k_prepare=$(stage_key prepare "$aishell" "$librispeech" "$langs" "$mixes" "$hours_scale" "$valid_hours" "$test_per_lang" \
  "$(hash_files "$root/recipes/AISHELL-1/aishell_prepare.py" "$root/recipes/LibriSpeech/librispeech_prepare.py" "$root/recipes/Bilingual/bilingual_prepare.py")")
if run_stage $s_prepare "prepare AISHELL-1 / LibriSpeech and the data mixes ($(echo $mixes))"; then
  if ! stage_done $s_prepare "$data/.done" "$k_prepare"; then
    [[ " $langs " == *" zh "* ]] && python "$root/recipes/AISHELL-1/aishell_prepare.py" --data_folder "$aishell" --save_folder "$data/AISHELL-1"
    [[ " $langs " == *" en "* ]] && python "$root/recipes/LibriSpeech/librispeech_prepare.py" --data_folder "$librispeech" --save_folder "$data/LibriSpeech"
    for mix in $mixes; do
      mapfile -t mix_splits < <(splits_of "$mix" train valid)
      python "$root/recipes/Bilingual/bilingual_prepare.py" --save_folder "$data/$mix" "${sources[@]}" "${mix_splits[@]}" \
        --hours "train:$(hours_of "$mix" "${HOURS[$mix]}" "$hours_scale")" --hours "valid:$(hours_of "$mix" "zh=$valid_hours,en=$valid_hours" 1)"
    done
    # the test list: the first rows of each language's test split (the seed: 2000 each, §1.1)
    mapfile -t test_splits < <(splits_of test test)
    python "$root/recipes/Bilingual/bilingual_prepare.py" --save_folder "$data/test_all" "${sources[@]}" "${test_splits[@]}"
    python -m speechbrain_codec.bin.manifest_subset "$data/test_all/test.csv" "$test_csv" --first "$test_per_lang" > /dev/null
    mark_done "$data/.done" "$k_prepare"
  fi
fi
# every mix has the same {data_root}: the deepest folder holding every corpus
data_folder=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['options']['data_root'])" \
  "$data/test_all/bilingual_prepare.json" 2>/dev/null || echo "")

# ---------------------------------------------------------------- 2. pseudo-labels
# Whisper's greedy transcript of every clean 3-s chunk (language per row), for the data mixes of
# the experiments trained with the ASR loss
k_labels=$(stage_key labels "$k_prepare" "$whisper" "$debug")
label_mixes=$(for x in "${order[@]}"; do if [ -n "${ASR_WEIGHT[$x]:-}" ]; then echo "${MIX[$x]}"; fi; done | sort -u)
label_args=(--dtype bfloat16)   # decoded under bf16 autocast, as the loss runs Whisper (§3.3)
[ "$debug" = true ] && label_args=(--max_new_tokens 8)
for mix in $label_mixes; do
  if run_stage $s_labels "Whisper pseudo-labels of the $mix chunks ($whisper)"; then
    require "$data/$mix/train.csv" $s_prepare prepare
    if ! stage_done $s_labels "$exp/labels/$mix/.done" "$k_labels"; then
      for split in train valid; do
        hop=2.5; [ "$split" = valid ] && hop=3.0
        python -m speechbrain_codec.bin.pseudo_labels --manifest "$data/$mix/$split.csv" --data_folder "$data_folder" \
          --whisper "$whisper" --output "$exp/labels/$mix/$split" --chunk_seconds 3.0 --hop_seconds "$hop" \
          --batch_size "$label_batch" --device "$device" "${label_args[@]}"
      done
      mark_done "$exp/labels/$mix/.done" "$k_labels"
    fi
  fi
done

# ---------------------------------------------------------------- 3. train the experiments
declare -A K_TRAIN=()
for x in "${order[@]}"; do
  st=${STAGE[$x]}; parent=${PARENT[$x]}; mix=${MIX[$x]}
  train_dir=$exp/train/$x; train_csv=$data/$mix/train.csv
  kind=(); files=()
  case ${START[$x]} in
    base) kind=(--train_modules "$( [ "${MODE[$x]}" = decompressor_only ] && echo '[decompressor]' || echo '[compressor, decompressor]')") ;;
    grow) files=("$here/hparams/stage$st.yaml"); kind=(--init_from "$exp/train/$parent/codec") ;;
    continue) files=("$here/hparams/continue.yaml"); kind=(--init_weights "[{module: codec, source: $exp/train/$parent/codec}]") ;;
  esac
  [ "$freeze_refiner" = true ] && [ "$st" -gt 1 ] && kind+=(--freeze_modules "[decompressor.refiner]")
  [ "$debug" = true ] && files+=("$here/hparams/debug.yaml")
  [ ${#files[@]} -gt 0 ] && kind+=(--overrides_file "$(join "${files[@]}")")
  loss=(); weights="{feature: 1.0, mel: 5.0, stft: 2.0}"
  if [ -n "${ASR_WEIGHT[$x]:-}" ]; then
    weights="{feature: 1.0, mel: 5.0, stft: 2.0, asr: ${ASR_WEIGHT[$x]}.0}"
    loss=(--variant asr --whisper_source "$whisper" --label_cache "$exp/labels/$mix/train"
          --valid_label_cache "$exp/labels/$mix/valid")
  fi
  [ "$x" = I ] && weights=$weights_i
  if run_stage $s_train "check the inputs of $x" > /dev/null; then
    require "$data/$mix/train.csv" $s_prepare prepare
    [ -n "${ASR_WEIGHT[$x]:-}" ] && require "$exp/labels/$mix/.done" $s_labels "pseudo-labels"
    [ -n "$parent" ] && require "$exp/train/$parent/codec/codec.ckpt" $s_train "train $parent"
  fi
  # the parent's export fingerprint (config + weights): a retrained parent retrains its children
  parent_hash=""
  if [ -n "$parent" ] && [ -f "$exp/train/$parent/codec/codec.json" ]; then parent_hash=$(hash_files "$exp/train/$parent/codec/codec.json"); fi
  key=$(stage_key "train_$x" "$k_prepare" "${parent:+${K_TRAIN[$parent]}}" "$parent_hash" "${ASR_WEIGHT[$x]:+$k_labels}" "$base" "$freeze_refiner" \
    "$(hash_files "$here/hparams/train.yaml" "$here/hparams/stage2.yaml" "$here/hparams/stage3.yaml" "$here/hparams/continue.yaml" "$here/hparams/codec/focalcodec_s.yaml")" \
    "$debug" "$weights" "$train_args")
  # --stage 3 retrains the experiments named in --experiments, not the parents added for them
  force=${given_stage:-false}; [[ " $experiments " == *" $x "* ]] || force=false
  given_stage=$force stage_train "train Exp $x (stage $st, ${START[$x]}${parent:+ from $parent}, $mix)" "$key" \
    "$here/hparams/train.yaml" --data_folder "$data_folder" --manifest_folder "$data/$mix" \
    --codec_hparams "$here/hparams/codec/focalcodec_s.yaml" \
    --codec_overrides "{base: $base, extra_layers: $((st - 1))}" --device "$device" \
    "${kind[@]}" "${loss[@]}" --loss_weights "$weights"
  K_TRAIN[$x]=$k_train
done

# ---------------------------------------------------------------- 4. encode and decode
# the pretrained row (no fine-tuning), then each experiment: offline .sbc + decode, and the same
# test list streamed (80-ms chunks) in and out: its tokens must be the offline ones
systems=(pretrained "${order[@]}")
for x in "${systems[@]}"; do
  sys_dir=$exp/systems/$x
  if [ "$x" = pretrained ]; then
    codec_dir=$sys_dir/codec; k_sys=$(stage_key pretrained "$base")
    if run_stage $s_encode "export the pretrained model ($base)" > /dev/null; then
      python -m speechbrain_codec.bin.export_codec "$here/hparams/codec/focalcodec_s.yaml" \
        --codec_overrides "{base: $base, extra_layers: 0}" --out "$codec_dir" > /dev/null
    fi
    stage_no=0
  else
    codec_dir=$exp/train/$x/codec; k_sys=${K_TRAIN[$x]}; stage_no=${STAGE[$x]}
  fi
  # the shared stages, in this system's folder
  ( exp=$sys_dir; k_train=$k_sys; mkdir -p "$exp"
    stage_encode; stage_decode
    k_stream=$(stage_key stream "$k_decode")
    if run_stage $s_encode "$x: streaming encode / decode, tokens checked against offline"; then
      if ! stage_done $s_encode "$exp/streaming/.done" "$k_stream"; then
        speechbrain-codec encode --manifest "$test_csv" --data-root "$data_folder" "$exp/streaming/bitstreams" \
          --checkpoint "$codec_dir" --device "$device" --streaming
        speechbrain-codec decode "$exp/streaming/bitstreams" "$exp/streaming/decoded" --checkpoint "$codec_dir" \
          --device "$device" --streaming
        python -m speechbrain_codec.bin.compare_bitstreams "$exp/bitstreams" "$exp/streaming/bitstreams" \
          --decoded "$exp/decoded" "$exp/streaming/decoded" --out "$exp/streaming/check.json"
        mark_done "$exp/streaming/.done" "$k_stream"
      fi
    fi
    if [ -d "$exp/decoded" ]; then  # facts the report shows
      printf '{"stage": %s}\n' "$stage_no" > "$exp/decoded/system.json.tmp" && mv "$exp/decoded/system.json.tmp" "$exp/decoded/system.json"
    fi )
done

# ---------------------------------------------------------------- 5. evaluate, once per ASR
# under the seed's protocol (focalcodec_s.md §5: its normaliser, dCER / dWER per utterance) with this
# run's ASRs and metrics; Exp J / K train against $whisper: it is marked, the other ASRs are independent
sys_args=(); for x in "${systems[@]}"; do sys_args+=(--system "$x=$exp/systems/$x/decoded"); done
results=()
protocol_args=(--protocol focalcodec_s --training-asr "whisper:$whisper" --test-set "$(echo $langs) test lists, first $test_per_lang each")
for a in $asrs; do
  name=$(echo "$a" | tr -c 'A-Za-z0-9._-' '_'); out=$exp/results/results_$name.json; results+=("$out")
  k_eval=$(stage_key evaluate "${K_TRAIN[*]}" "$k_prepare" "$metrics" "$a" "${systems[*]}" "${protocol_args[*]}")
  if run_stage $s_evaluate "evaluate with $a"; then
    for x in "${systems[@]}"; do require "$exp/systems/$x/decoded/.done" $s_decode "decode $x"; done
    if ! stage_done $s_evaluate "$exp/results/$name.done" "$k_eval"; then
      speechbrain-codec evaluate --manifest "$test_csv" --data-root "$data_folder" "${sys_args[@]}" \
        "${protocol_args[@]}" --metrics "$metrics" --asr "$a" --out "$out"
      mark_done "$exp/results/$name.done" "$k_eval"
    fi
  fi
done

# ---------------------------------------------------------------- 6. report (the seed's table format)
# one table per ASR, and results.md with every ASR's dCER / dWER side by side († the training ASR)
if run_stage $s_report "report"; then
  for out in "${results[@]}"; do
    require "$out" $s_evaluate evaluate
    speechbrain-codec report "$out" --format focalcodec_s --out "${out%.json}.md"
  done
  speechbrain-codec report "${results[@]}" --format focalcodec_s --out "$exp/results/results.md"
  log "results: $exp/results/results.md (every ASR), $exp/results/results_*.md"
fi
