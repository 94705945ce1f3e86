#!/usr/bin/env bash
# Kaldi/ESPnet-style option parsing, sourced by every run.sh after it has declared its options
# with defaults, one per line, each followed by a `# help` comment:
#     stage=0        # first stage to run
# Then `--stage 3`, `--stage=3` and `--data_folder /x` override them; `--help` prints them.
# Only the options declared that way exist: any other `--name` (including run.sh's own
# variables, e.g. `--here`) is an error, and so is a value that does not fit its default's
# type: an option whose default is an integer takes integers only, one whose default is
# true/false takes true or false only.
# For each option given on the command line, `given_<name>=true` is set (run.sh uses
# given_stage to force re-running from an explicitly requested stage).
# `command_line` holds the invocation, shell-quoted and replayable from any folder:
#     cd <where it was run> && bash <run.sh> <options as given>
# (one line, whatever the options contain; run.sh appends it to <exp>/commands.log).
# Every error is one line on stderr and exit status 1.

__script=${BASH_SOURCE[1]:-$0}
# an option declaration: name=value (value unquoted, "double-" or 'single-quoted') then # help
__decl='^([a-z_][a-z0-9_]*)=("[^"]*"|'"'[^']*'"'|[^ ]*)[[:space:]]+#[[:space:]]?(.*)$'
__options=$(grep -E "$__decl" "$__script" | sed -E 's/=.*//')
__script_abs=$(cd "$(dirname "$__script")" && pwd)/$(basename "$__script")
printf -v command_line 'cd %q && bash %q' "$PWD" "$__script_abs"
[ $# -gt 0 ] && printf -v command_line '%s%s' "$command_line" "$(printf ' %q' "$@")"

__fail() { echo "$__script: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "Usage: $__script [options]"
      echo "Options (default in brackets):"
      grep -E "$__decl" "$__script" | sed -E "s/$__decl/  --\\1 \\3 [\\2]/"
      exit 0 ;;
    --*=*) __name=${1%%=*}; __name=${__name#--}; __value=${1#*=}; shift ;;
    --*)
      __name=${1#--}
      [ $# -ge 2 ] || __fail "option --$__name needs a value"
      __value=$2; shift 2 ;;
    *) __fail "unexpected argument '$1' (options are --name value; see --help)" ;;
  esac
  __name=${__name//-/_}
  if [[ ! $__name =~ ^[a-z_][a-z0-9_]*$ ]] || ! grep -qx -- "$__name" <<<"$__options"; then
    __fail "unknown option --$__name (see --help)"
  fi
  __default=${!__name}
  if [[ $__default =~ ^-?[0-9]+$ ]] && [[ ! $__value =~ ^-?[0-9]+$ ]]; then
    __fail "--$__name takes an integer, not '$__value'"
  fi
  if [[ $__default == true || $__default == false ]] && [[ $__value != true && $__value != false ]]; then
    __fail "--$__name takes true or false, not '$__value'"
  fi
  printf -v "$__name" '%s' "$__value"
  printf -v "given_$__name" '%s' true
done
unset __name __value __default __script __script_abs __options __decl
unset -f __fail
