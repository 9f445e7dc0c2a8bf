#!/usr/bin/env bash
# make us4 RAW=dir STORE=dir: build US-4 (dataset_manifests/us4.toml, USCL's Table 1) from the
# sub-datasets present under RAW (RAW/butterfly, RAW/clust, RAW/liver-fibrosis, RAW/covid19-lusms),
# then its open stand-in us4-open (RAW/covid-blues, RAW/butterfly), each with RAW as --raw and
# --skip-absent-sources: every sub-dataset built is printed against the table's counts (videos,
# frames, and per class), every absent one as "absent (not an error)". A manifest none of whose
# folders exists is not ingested (the ingest would stop: every source absent); when that is so of
# both, nothing is built and this fails (exit 2). Otherwise the exit code is the worst ingest's.
# docs/us4.md. The per-corpus stores of before: `make stores`.
set -uo pipefail
RAW=${1:-../shared/datasets}
STORE=${2:-store}
BIN=${USCTL_BIN:-target/release/usctl}
if [ ! -d "$RAW" ]; then
  echo "us4: no folder $RAW; pass the folder that holds the corpora: make us4 RAW=/path/to/datasets" >&2
  exit 2
fi
built=0
status=0
for name in us4 us4-open; do
  m="dataset_manifests/$name.toml"
  # The manifest's sub-dataset folders (its `dir` keys).
  dirs=$(sed -n 's/^dir *= *"\([^"]*\)".*/\1/p' "$m")
  present=0
  for d in $dirs; do
    if [ -d "$RAW/$d" ]; then present=1; fi
  done
  echo "== $name: usctl ingest --manifest $m --raw $RAW --store $STORE --skip-absent-sources"
  if [ $present -eq 0 ]; then
    for d in $dirs; do
      printf '  absent  %-20s no folder %s: absent (not an error)\n' "$d" "$RAW/$d"
    done
    echo
    continue
  fi
  "$BIN" ingest --manifest "$m" --raw "$RAW" --store "$STORE" --skip-absent-sources
  rc=$?
  # 1: some files were skipped (each named above); the version was still published.
  if [ $rc -le 1 ]; then built=$((built + 1)); fi
  if [ $rc -gt $status ]; then status=$rc; fi
  echo
done
if [ $built -eq 0 ] && [ $status -eq 0 ]; then
  cat >&2 <<MSG
us4: nothing built: no sub-dataset folder of dataset_manifests/us4.toml or us4-open.toml is under $RAW.
Put the corpora there (butterfly/{regular,covid-19}/*.mp4, covid-blues/ as its repository, ...;
docs/us4.md has the layout), or point at them: make us4 RAW=/path/to/datasets
MSG
  exit 2
fi
exit $status
