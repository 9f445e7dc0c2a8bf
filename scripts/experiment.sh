#!/usr/bin/env bash
# make experiment: USCL's pretraining comparison (paper Tab. 5 / Fig. 6) at a scale two CPU cores
# can afford. Pretrains on COVID-BLUES with each pair strategy, evaluates every backbone on POCUS
# with 5-fold cross-validation by patient, and writes docs/RESULTS.md from the reports.
# Finished steps are kept (a run with summary.json, an evaluation with report.json), an
# interrupted pretraining is resumed, so running it again only does what is missing.
#   scripts/experiment.sh RAW STORE OUT [pretrain|eval|all]
set -euo pipefail
RAW=${1:-../shared/datasets}
STORE=${2:-store}
OUT=${3:-runs/experiment}
PHASE=${4:-all}
BIN=${USCTL_BIN:-target/release/usctl}
EPOCHS=${EXP_EPOCHS:-40}
SIZE=${EXP_SIZE:-64}
mkdir -p "$OUT/pretrain" "$OUT/eval"
LOG="$OUT/commands.tsv"

# Runs a command, appending "name<TAB>seconds<TAB>command" to the log.
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

for name in covid-blues pocus; do
  if [ ! -d "$RAW/$name" ]; then
    echo "experiment: needs $RAW/$name (see dataset_manifests/$name.toml); pass RAW=/path/to/datasets" >&2
    exit 2
  fi
  # Exit code 1 means some listed files were skipped (POCUS lacks four); more is an error.
  "$BIN" ingest --manifest "dataset_manifests/$name.toml" --raw "$RAW/$name" --store "$STORE" --quiet || [ $? -eq 1 ]
done

# name, then the flags that make the variant. Every run: 64 px, 40 epochs, batch 32, seed 0.
VARIANTS=(
  "supervised --contrastive off --lambda 1 --label-rate 1"
  "rs --pairs rs --lambda 0"
  "rsofv --pairs rsofv --lambda 0"
  "rstfv --pairs rstfv --lambda 0"
  "spg --pairs spg --lambda 0"
  "spg-ce --pairs spg --lambda 0.2 --label-rate 0.1"
)

pretrain() {
  local name=$1
  shift
  local run="$OUT/pretrain/$name"
  if [ -f "$run/summary.json" ] && [ -f "$run/last.safetensors" ] && grep -q "\"epochs_done\": $EPOCHS" "$run/summary.json"; then
    echo "== $name: done ($run)"
    return
  fi
  if [ -f "$run/config.toml" ]; then
    # A resumed run continues from its own config.toml; flags that would change it are refused.
    timed "pretrain $name (resumed)" "$BIN" train --store "$STORE" --dataset covid-blues --out "$run" --resume --quiet
  else
    timed "pretrain $name" "$BIN" train --store "$STORE" --dataset covid-blues --out "$run" \
      --epochs "$EPOCHS" --image-size "$SIZE" --warmup-epochs 2 --seed 0 --quiet "$@"
  fi
}

if [ "$PHASE" = pretrain ] || [ "$PHASE" = all ]; then
  for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    pretrain $v
  done
fi

# Evaluation on POCUS: 5 folds by patient, 3 classes (COVID-19, bacterial pneumonia, healthy).
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

INITS=(random)
for v in "${VARIANTS[@]}"; do INITS+=("${v%% *}"); done
init_of() { if [ "$1" = random ]; then echo random; else echo "$OUT/pretrain/$1/last.safetensors"; fi; }

if [ "$PHASE" = eval ] || [ "$PHASE" = all ]; then
  # Fig. 6 shape: every initialisation, frozen backbone + linear classifier. Without training
  # augmentation the frozen features are computed once, so 3 seeds × 5 folds stay cheap.
  for i in "${INITS[@]}"; do
    evaluate "linear-$i" "$(init_of "$i")" --dataset pocus --label "$i" --protocol linear --epochs 50 \
      --image-size "$SIZE" --augment off --seeds 3
  done
  # Tab. 5 shape: deeper fine-tuning (augmented, at most 8 frames per video per epoch, 1 seed).
  for i in random spg-ce; do
    for p in last3 all; do
      evaluate "$p-$i" "$(init_of "$i")" --dataset pocus --label "$i" --protocol "$p" --epochs 15 \
        --image-size "$SIZE" --frames-per-video 8 --seeds 1
    done
  done
  # BUSI (still images: one-frame videos, no patient ids), with the same command.
  if [ -d "$RAW/busi" ]; then
    "$BIN" ingest --manifest dataset_manifests/busi.toml --raw "$RAW/busi" --store "$STORE" --quiet || [ $? -eq 1 ]
    for i in random spg-ce; do
      evaluate "busi-linear-$i" "$(init_of "$i")" --dataset busi --label "$i" --protocol linear --epochs 50 \
        --image-size "$SIZE" --augment off --seeds 3
    done
  fi
fi

if [ "$PHASE" = eval ] || [ "$PHASE" = all ]; then
  results=docs/RESULTS.md
  # Everything from "## Reading these numbers" on is written by people and kept.
  notes=$(sed -n '/^## Reading these numbers/,$p' "$results" 2>/dev/null || true)
  fig6=()
  for i in "${INITS[@]}"; do fig6+=("$OUT/eval/linear-$i"); done
  tab5=("$OUT/eval/linear-random" "$OUT/eval/last3-random" "$OUT/eval/all-random" "$OUT/eval/linear-spg-ce" "$OUT/eval/last3-spg-ce" "$OUT/eval/all-spg-ce")
  busi=()
  for i in random spg-ce; do [ -d "$OUT/eval/busi-linear-$i" ] && busi+=("$OUT/eval/busi-linear-$i"); done
  {
    echo "# Results: USCL pretraining strategies at CPU scale"
    echo
    echo "Written by \`make experiment\` (scripts/experiment.sh); every number below was measured by the"
    echo "commands listed at the end, on this machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')),"
    echo "$(free -g | awk '/^Mem:/ {print $2}') GB memory, no GPU; written at usctl $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d)."
    echo "The builds that ran (git commit recorded in each run's provenance.json and report.json):"
    grep -h -o '"git_commit": *"[^"]*"' "$OUT"/pretrain/*/provenance.json "$OUT"/eval/*/report.json | sed 's/.*: *"\(.*\)"/\1/' | sort | uniq -c | awk '{printf "%s%s (%d runs)", (NR > 1 ? ", " : ""), $2, $1} END {print "."}'
    echo
    echo "Pretraining: COVID-BLUES (362 lung videos, 63 patients; 20 % of patients held out for the"
    echo "validation NT-Xent), ResNet-18 from random weights, $EPOCHS epochs at $SIZE px, batch 32 videos, Adam 3e-4"
    echo "with 2 warm-up epochs then cosine, seed 0. Variants: supervised = classification of the severity"
    echo "labels only (all of them, contrastive loss off); RS, RSOFV, RSTFV, SPG = NT-Xent with that pair"
    echo "strategy (λ = 0); SPG + CE = SPG with λ = 0.2 on 10 % of the labelled videos (the semi-supervised"
    echo "setting). Evaluation: POCUS, 3 classes, 5-fold cross-validation by patient, stratified; the model"
    echo "after the last epoch is scored once per fold (no selection on the test fold)."
    echo
    echo "## Pair strategies (shape of the paper's Fig. 6): frozen backbone, linear classifier"
    echo
    echo "50 epochs, lr 0.01, no augmentation (frozen features computed once), $SIZE px, 3 seeds × 5 folds."
    echo
    "$BIN" report "${fig6[@]}"
    echo
    echo "## Fine-tuning depth (shape of the paper's Tab. 5)"
    echo
    echo "linear as above; last3 and all: 15 epochs, lr 0.01, random resized crop and flip, at most 8"
    echo "frames per video per epoch, 1 seed × 5 folds (what two cores allow)."
    echo
    "$BIN" report "${tab5[@]}"
    if [ ${#busi[@]} -gt 0 ]; then
      echo
      echo "## BUSI (breast, 3 classes, 780 still images), frozen backbone, linear classifier"
      echo
      echo "Pretrained on lung videos, evaluated on breast images: a transfer test. Images have no"
      echo "patient ids, so folds are by image. Same settings as the first table."
      echo
      "$BIN" report "${busi[@]}"
    fi
    echo
    echo "## Commands and wall time"
    echo
    echo "Seconds are wall time on this machine, measured while other work (builds, tests) sometimes"
    echo "shared the two cores."
    echo
    echo "| step | seconds | command |"
    echo "|---|---:|---|"
    awk -F'\t' '{printf "| %s | %s | `%s` |\n", $1, $2, $3}' "$LOG"
    if [ -n "$notes" ]; then
      echo
      echo "$notes"
    fi
  } >"$results.tmp"
  mv "$results.tmp" "$results"
  echo "wrote $results"
fi
