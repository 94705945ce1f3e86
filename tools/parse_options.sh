#!/usr/bin/env bash
# Kaldi/ESPnet-style option parsing, sourced by every run.sh after it has declared its options
# with defaults, one per line, each followed by a `# help` comment:
#     stage=0        # first stage to run
# Then `--stage 3`, `--stage=3` and `--data_folder /x` override them; `--help` prints them.
# For each option given on the command line, `given_<name>=true` is set (run.sh uses
# given_stage to force re-running from an explicitly requested stage).
# An unknown option is an error.

__script=${BASH_SOURCE[1]:-$0}
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "Usage: $__script [options]"
      echo "Options (default in brackets):"
      grep -E '^[a-z_][a-z0-9_]*=[^ ]*[[:space:]]+#' "$__script" |
        sed -E 's/^([a-z_0-9]+)=([^ ]*)[[:space:]]+#[[:space:]]?(.*)$/  --\1 \3 [\2]/'
      exit 0 ;;
    --*=*) __name=${1%%=*}; __name=${__name#--}; __value=${1#*=}; shift ;;
    --*)
      __name=${1#--}
      if [ $# -lt 2 ]; then echo "$__script: option --$__name needs a value" >&2; exit 1; fi
      __value=$2; shift 2 ;;
    *) echo "$__script: unexpected argument '$1' (options are --name value; see --help)" >&2; exit 1 ;;
  esac
  __name=${__name//-/_}
  if ! declare -p "$__name" >/dev/null 2>&1 || [[ ! $__name =~ ^[a-z_][a-z0-9_]*$ ]]; then
    echo "$__script: unknown option --$__name (see --help)" >&2; exit 1
  fi
  printf -v "$__name" '%s' "$__value"
  printf -v "given_$__name" '%s' true
done
unset __name __value __script
