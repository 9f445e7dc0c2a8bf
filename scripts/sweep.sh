#!/usr/bin/env bash
# make sweep TABLE=…: one of the paper's pretraining tables, resumable, as one Markdown table plus
# JSON (docs/experiments.md). Pretrains each variant on PRETRAIN_DATASET (default covid-blues),
# evaluates every backbone and random weights on POCUS (frozen backbone, linear classifier, 5 folds
# by patient × 3 seeds, the same folds for all), and writes OUT/TABLE.md and OUT/TABLE.json with
# `usctl report` (paired differences against random init).
#   scripts/sweep.sh TABLE RAW STORE OUT
# TABLE: labels (Tab. 2: λ and label rate of the semi-supervised loss), batch (batch size),
#        variety (Tab. 4: growing unions of the pretraining store's sub-datasets),
#        pairs (Fig. 6 / Tab. 5: the pretraining methods of scripts/experiment.sh).
# SCALE=cpu (default; each table within about an hour on 2 cores: 20 epochs at 64 px) or
# SCALE=paper (the training defaults, which are the paper's: 300 epochs at 224 px; for a GPU).
# EPOCHS overrides the pretraining epochs; SUBDATASETS the order of the variety table's unions.
set -euo pipefail
TABLE=${1:?usage: scripts/sweep.sh labels|batch|variety|pairs RAW STORE OUT}
RAW=${2:-../shared/datasets}
STORE=${3:-store}
DEST=${4:-runs/sweep}
OUT=$DEST/$TABLE
BIN=${USCTL_BIN:-target/release/usctl}
SCALE=${SCALE:-cpu}
PRETRAIN_DATASET=${PRETRAIN_DATASET:-covid-blues}
LOG="$OUT/commands.tsv"
# shellcheck source=scripts/runs.sh
. "$(dirname "$0")/runs.sh"

case $SCALE in
  cpu)
    SIZE=64
    PRETRAIN_FLAGS="--epochs ${EPOCHS:-20} --image-size $SIZE --warmup-epochs 2 --seed 0"
    EVAL_FLAGS="--image-size $SIZE"
    ;;
  paper)
    SIZE=224
    PRETRAIN_FLAGS="--seed 0${EPOCHS:+ --epochs $EPOCHS}"
    EVAL_FLAGS="--image-size $SIZE"
    ;;
  *)
    echo "sweep: SCALE must be cpu or paper, not $SCALE" >&2
    exit 2
    ;;
esac

for name in "$PRETRAIN_DATASET" pocus; do
  if [ ! -d "$RAW/$name" ]; then
    echo "sweep: needs $RAW/$name (see dataset_manifests/$name.toml); pass RAW=/path/to/datasets" >&2
    exit 2
  fi
  # Exit code 1 means some listed files were skipped (POCUS lacks four); more is an error.
  "$BIN" ingest --manifest "dataset_manifests/$name.toml" --raw "$RAW/$name" --store "$STORE" --quiet || [ $? -eq 1 ]
done
mkdir -p "$OUT/pretrain" "$OUT/eval"

# name, then the flags that make the variant (after PRETRAIN_FLAGS).
VARIANTS_OF_TABLE=()
case $TABLE in
  labels)
    VARIANTS_OF_TABLE=("lambda-0 --lambda 0")
    for lambda in 0.2 1; do
      for rate in 0.1 0.5 1; do
        VARIANTS_OF_TABLE+=("lambda-$lambda-rate-$rate --lambda $lambda --label-rate $rate")
      done
    done
    ;;
  batch)
    for b in 8 16 32 64; do VARIANTS_OF_TABLE+=("batch-$b --batch-size $b --lambda 0"); done
    ;;
  variety)
    # Sub-datasets in the order `usctl info` lists them (or SUBDATASETS), each union one run.
    read -r -a subs <<<"${SUBDATASETS:-$("$BIN" info --store "$STORE" --dataset "$PRETRAIN_DATASET" | awk 'NR > 2 {print $1}' | uniq | tr '\n' ' ')}"
    union="" k=0
    for s in "${subs[@]}"; do
      union=${union:+$union,}$s k=$((k + 1))
      VARIANTS_OF_TABLE+=("first-$k --subdatasets $union --lambda 0")
    done
    ;;
  pairs)
    eval "$(sed -n '/^VARIANTS=(/,/^)/p' "$(dirname "$0")/experiment.sh")"
    VARIANTS_OF_TABLE=("${VARIANTS[@]}")
    ;;
  *)
    echo "sweep: unknown table $TABLE: use labels, batch, variety or pairs" >&2
    exit 2
    ;;
esac

for v in "${VARIANTS_OF_TABLE[@]}"; do
  # shellcheck disable=SC2086
  pretrain $v
done
evaluate random random --dataset pocus --label random --protocol linear --epochs 50 $EVAL_FLAGS --augment off --seeds 3
runs=("$OUT/eval/random")
for v in "${VARIANTS_OF_TABLE[@]}"; do
  name=${v%% *}
  # shellcheck disable=SC2086
  evaluate "$name" "$(init_of "$name")" --dataset pocus --label "$name" --protocol linear --epochs 50 $EVAL_FLAGS --augment off --seeds 3
  runs+=("$OUT/eval/$name")
done

{
  echo "# Sweep \`$TABLE\` ($SCALE scale)"
  echo
  echo "Pretraining on $PRETRAIN_DATASET with \`$PRETRAIN_FLAGS\` and per variant:"
  echo
  for v in "${VARIANTS_OF_TABLE[@]}"; do echo "- ${v%% *}: \`${v#* }\`"; done
  echo
  echo "Evaluation: POCUS, frozen backbone and linear classifier, 50 epochs, no augmentation, 5 folds"
  echo "by patient × 3 seeds, the same folds for every row; written by scripts/sweep.sh at usctl"
  echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d)."
  echo
  "$BIN" report "${runs[@]}" --json "$DEST/$TABLE.json"
  echo
  echo "| step | seconds | command |"
  echo "|---|---:|---|"
  awk -F'\t' '{printf "| %s | %s | `%s` |\n", $1, $2, $3}' "$LOG"
} >"$DEST/$TABLE.md.tmp"
mv "$DEST/$TABLE.md.tmp" "$DEST/$TABLE.md"
echo "wrote $DEST/$TABLE.md and $DEST/$TABLE.json"
