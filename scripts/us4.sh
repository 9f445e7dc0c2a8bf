#!/usr/bin/env bash
# make us4: rebuild a store for every manifest in dataset_manifests/ whose corpus is present
# under RAW/<name>/. (The US-4 corpus of the paper was never released; its manifest will join
# the others here, and this target will rebuild it the same way.)
set -uo pipefail
RAW=${1:-../shared/datasets}
STORE=${2:-store}
status=0
for m in dataset_manifests/*.toml; do
  name=$(basename "$m" .toml)
  if [ ! -d "$RAW/$name" ]; then
    echo "us4: skipping $name: no $RAW/$name"
    continue
  fi
  target/release/usctl ingest --manifest "$m" --raw "$RAW/$name" --store "$STORE" || { rc=$?; [ $rc -gt $status ] && status=$rc; }
done
exit $status
