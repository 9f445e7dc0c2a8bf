#!/usr/bin/env bash
# make experiment: USCL's pretraining comparison (paper Tab. 5 / Fig. 6) with the methods that came
# after it, at a scale two CPU cores can afford. Pretrains on COVID-BLUES with each variant below,
# evaluates every backbone on POCUS with 5-fold cross-validation by patient × 3 seeds (frozen
# backbone for all; the last three layers fine-tuned too for the main methods), and writes
# docs/RESULTS.md from the reports, with paired differences against random init. Finished steps
# are kept and an interrupted pretraining resumed (scripts/runs.sh), so running it again only does
# what is missing.
#   scripts/experiment.sh RAW STORE OUT [pretrain|eval|all]
# ONLY="name ..." restricts the pretraining phase to those variants.
set -euo pipefail
RAW=${1:-../shared/datasets}
STORE=${2:-store}
OUT=${3:-runs/experiment}
PHASE=${4:-all}
BIN=${USCTL_BIN:-target/release/usctl}
EPOCHS=${EXP_EPOCHS:-40}
SIZE=${EXP_SIZE:-64}
PRETRAIN_DATASET=covid-blues
PRETRAIN_FLAGS="--epochs $EPOCHS --image-size $SIZE --warmup-epochs 2 --seed 0"
mkdir -p "$OUT/pretrain" "$OUT/eval"
LOG="$OUT/commands.tsv"
# shellcheck source=scripts/runs.sh
. "$(dirname "$0")/runs.sh"

for name in covid-blues pocus; do
  if [ ! -d "$RAW/$name" ]; then
    echo "experiment: needs $RAW/$name (see dataset_manifests/$name.toml); pass RAW=/path/to/datasets" >&2
    exit 2
  fi
  # Exit code 1 means some listed files were skipped (POCUS lacks four); more is an error.
  "$BIN" ingest --manifest "dataset_manifests/$name.toml" --raw "$RAW/$name" --store "$STORE" --quiet || [ $? -eq 1 ]
done

# name, then the flags that make the variant (docs/training.md "Methods"); every run also gets
# PRETRAIN_FLAGS and batch 32. rs is SimCLR as the paper ran it, moco MoCo v2 on the same frames,
# ivpp in-video positive pairs, ucl in-video hard negatives.
VARIANTS=(
  "supervised --contrastive off --lambda 1 --label-rate 1"
  "rs --pairs rs --lambda 0"
  "rsofv --pairs rsofv --lambda 0"
  "rstfv --pairs rstfv --lambda 0"
  "spg --pairs spg --lambda 0"
  "spg-ce --pairs spg --lambda 0.2 --label-rate 0.1"
  "moco --method moco --pairs rs --lambda 0"
  "ivpp --pairs ivpp --lambda 0"
  "ucl --pairs rsofv --hard-negatives 3 --lambda 0"
)
# Also fine-tuned through the last three layers (3 seeds each; about 4½ minutes each on 2 cores
# when nothing else runs).
DEEP=(random rs spg-ce moco ivpp ucl)

if [ "$PHASE" = pretrain ] || [ "$PHASE" = all ]; then
  for v in "${VARIANTS[@]}"; do
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" ${v%% *} "* ]]; then continue; fi
    # shellcheck disable=SC2086
    pretrain $v
  done
fi

# Evaluation on POCUS: 5 folds by patient, 3 classes (COVID-19, bacterial pneumonia, healthy).
INITS=(random)
for v in "${VARIANTS[@]}"; do INITS+=("${v%% *}"); done

if [ "$PHASE" = eval ] || [ "$PHASE" = all ]; then
  # Fig. 6 shape: every initialisation, frozen backbone + linear classifier. Without training
  # augmentation the frozen features are computed once, so 3 seeds × 5 folds stay cheap.
  for i in "${INITS[@]}"; do
    evaluate "linear-$i" "$(init_of "$i")" --dataset pocus --label "$i" --protocol linear --epochs 50 \
      --image-size "$SIZE" --augment off --seeds 3
  done
  # Tab. 5 shape: the last three layers fine-tuned as well (augmented, at most 4 frames per video
  # per epoch).
  for i in "${DEEP[@]}"; do
    evaluate "last3-$i" "$(init_of "$i")" --dataset pocus --label "$i" --protocol last3 --epochs 15 \
      --image-size "$SIZE" --frames-per-video 4 --seeds 3
  done
  # BUSI (still images: one-frame videos, no patient ids), with the same command.
  if [ -d "$RAW/busi" ]; then
    "$BIN" ingest --manifest dataset_manifests/busi.toml --raw "$RAW/busi" --store "$STORE" --quiet || [ $? -eq 1 ]
    for i in random spg-ce; do
      evaluate "busi-linear-$i" "$(init_of "$i")" --dataset busi --label "$i" --protocol linear --epochs 50 \
        --image-size "$SIZE" --augment off --seeds 3
    done
  fi

  results=docs/RESULTS.md
  # Everything from "## Reading these numbers" on is written by people and kept.
  notes=$(sed -n '/^## Reading these numbers/,$p' "$results" 2>/dev/null || true)
  fig6=() deep=() busi=() vs_simclr=("$OUT/eval/linear-rs")
  for i in "${INITS[@]}"; do fig6+=("$OUT/eval/linear-$i"); done
  for i in "${INITS[@]}"; do [[ $i = random || $i = rs ]] || vs_simclr+=("$OUT/eval/linear-$i"); done
  for i in "${DEEP[@]}"; do deep+=("$OUT/eval/last3-$i"); done
  for i in random spg-ce; do [ -d "$OUT/eval/busi-linear-$i" ] && busi+=("$OUT/eval/busi-linear-$i"); done
  {
    echo "# Results: pretraining methods at CPU scale"
    echo
    echo "Written by \`make experiment\` (scripts/experiment.sh); every number below was measured by the"
    echo "commands listed at the end, on this machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')),"
    echo "$(free -g | awk '/^Mem:/ {print $2}') GB memory, no GPU; written at usctl $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d)."
    echo "The builds that ran (git commit recorded in each run's provenance.json and report.json):"
    grep -h -o '"git_commit": *"[^"]*"' "$OUT"/pretrain/*/provenance.json "$OUT"/eval/*/report.json | sed 's/.*: *"\(.*\)"/\1/' | sort | uniq -c | awk '{printf "%s%s (%d runs)", (NR > 1 ? ", " : ""), $2, $1} END {print "."}'
    echo
    echo "Pretraining: COVID-BLUES (362 lung videos, 63 patients; 20 % of patients held out for the"
    echo "validation NT-Xent), ResNet-18 from random weights, $EPOCHS epochs at $SIZE px, batch 32 videos, Adam 3e-4"
    echo "with 2 warm-up epochs then cosine, seed 0. Variants (docs/training.md \"Methods\"):"
    echo "supervised = classification of the severity labels only (all of them, contrastive loss off);"
    echo "RS (SimCLR as the paper ran it), RSOFV, RSTFV, SPG = NT-Xent with that pair strategy (λ = 0);"
    echo "SPG + CE = SPG with λ = 0.2 on 10 % of the labelled videos (the semi-supervised setting);"
    echo "MoCo = MoCo v2 on RS frames (momentum 0.99, queue 256, τ 0.2); IVPP = positives within ±1 s,"
    echo "distance-weighted; UCL = RSOFV positives with 3 in-video hard negatives per video on the"
    echo "documented band schedule. Evaluation: POCUS, 3 classes, 5-fold cross-validation by patient,"
    echo "stratified, 3 seeds, the same folds for every row; the model after the last epoch is scored once"
    echo "per fold (no selection on the test fold). Each row is paired with random init over the 15"
    echo "(fold, seed) runs; a difference is one only when its bootstrap 95 % interval excludes zero."
    echo
    echo "## Pretraining methods (shape of the paper's Fig. 6): frozen backbone, linear classifier"
    echo
    echo "50 epochs, lr 0.01, no augmentation (frozen features computed once), $SIZE px, 3 seeds × 5 folds."
    echo
    "$BIN" report "${fig6[@]}" --json "$OUT/linear.json"
    echo
    echo "### The same evaluations paired against SimCLR (RS) instead of random init"
    echo
    echo "Which method beats the paper's SimCLR baseline, on the same 15 (fold, seed) runs:"
    echo
    "$BIN" report "${vs_simclr[@]}" | sed -n '/^Paired with/,$p'
    echo
    echo "## The last three layers fine-tuned too (shape of the paper's Tab. 5)"
    echo
    echo "15 epochs, lr 0.01, random resized crop and flip, at most 4 frames per video per epoch,"
    echo "3 seeds × 5 folds."
    echo
    "$BIN" report "${deep[@]}" --json "$OUT/last3.json"
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
