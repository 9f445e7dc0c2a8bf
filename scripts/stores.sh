#!/usr/bin/env bash
# make stores: rebuild a store for every single-corpus manifest in dataset_manifests/ whose corpus
# is present under RAW/<name>/ (covid-blues, pocus, busi), each with RAW/<name> as --raw. The
# multi-corpus manifests us4 and us4-open read RAW itself and are built by `make us4`.
set -uo pipefail
RAW=${1:-../shared/datasets}
STORE=${2:-store}
status=0
for m in dataset_manifests/*.toml; do
  name=$(basename "$m" .toml)
  case "$name" in us4|us4-open) continue ;; esac
  if [ ! -d "$RAW/$name" ]; then
    echo "stores: skipping $name: no $RAW/$name"
    continue
  fi
  target/release/usctl ingest --manifest "$m" --raw "$RAW/$name" --store "$STORE" || { rc=$?; [ $rc -gt $status ] && status=$rc; }
done
exit $status
