# Sourced by scripts/experiment.sh and scripts/sweep.sh: resumable pretraining and evaluation
# steps, each timed into a log. The caller sets BIN (usctl), STORE, OUT, LOG (commands.tsv),
# PRETRAIN_DATASET and PRETRAIN_FLAGS (flags every pretraining gets, e.g. epochs and size).
# Finished steps are kept (a run with summary.json at its epochs, an evaluation with report.json);
# an interrupted pretraining is resumed, an interrupted evaluation started over.

# Runs a command, appending "name<TAB>seconds<TAB>command" to $LOG.
timed() {
  local name=$1
  shift
  echo "== $name: $*"
  local t0 dt
  t0=$(date +%s%N)
  "$@"
  dt=$(( ($(date +%s%N) - t0) / 100000000 ))
  local cmd="$*"
  printf '%s\t%d.%d\t%s\n' "$name" $((dt / 10)) $((dt % 10)) "usctl${cmd#"$BIN"}" >>"$LOG"
}

# pretrain NAME FLAGS...: $OUT/pretrain/NAME with PRETRAIN_FLAGS and FLAGS (which must not repeat
# a flag of PRETRAIN_FLAGS: usctl refuses a flag given twice).
pretrain() {
  local name=$1
  shift
  local run="$OUT/pretrain/$name"
  # Done: a summary whose epochs are all the epochs of the run's own config.
  if [ -f "$run/summary.json" ] && [ -f "$run/last.safetensors" ] \
    && grep -q "\"epochs_done\": $(sed -n 's/^epochs = //p' "$run/config.toml")," "$run/summary.json"; then
    echo "== pretrain $name: done ($run)"
    return
  fi
  if [ -f "$run/config.toml" ]; then
    # A resumed run continues from its own config.toml; flags that would change it are refused.
    timed "pretrain $name (resumed)" "$BIN" train --store "$STORE" --dataset "$PRETRAIN_DATASET" --out "$run" --resume --quiet
  else
    # shellcheck disable=SC2086
    timed "pretrain $name" "$BIN" train --store "$STORE" --dataset "$PRETRAIN_DATASET" --out "$run" --quiet $PRETRAIN_FLAGS "$@"
  fi
}

# evaluate NAME INIT FLAGS...: $OUT/eval/NAME.
evaluate() {
  local name=$1 init=$2
  shift 2
  local dir="$OUT/eval/$name"
  if [ -f "$dir/report.json" ]; then
    echo "== eval $name: done ($dir)"
    return
  fi
  rm -rf "$dir" # an interrupted evaluation starts over (its folds come from the seed)
  timed "eval $name" "$BIN" eval --store "$STORE" --init "$init" --out "$dir" --quiet "$@"
}

# The backbone of a pretraining variant, or random weights.
init_of() {
  if [ "$1" = random ]; then echo random; else echo "$OUT/pretrain/$1/last.safetensors"; fi
}
