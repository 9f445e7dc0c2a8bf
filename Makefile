# The two commands a new user types: `make demo` and `make test`. Both run `setup` first.
SHELL := bash
export VIRTUAL_ENV := $(CURDIR)/.venv
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

RAW ?= ../shared/datasets
STORE ?= store
RUNS ?= runs
BIN := target/release/usctl

.PHONY: setup build test lint demo us4 stores bench experiment sweep clean

# `make setup TORCH=2.11` builds for GPU machines with PyTorch 2.11 instead, beside the default build
# (scripts/build-torch2.11.sh: .venv-torch2.11, target/torch2.11; docs/GPU.md).
setup:
	@scripts/setup.sh

build: setup

# One profile for everything: the tests reuse the release build that setup made.
test: setup
	cargo test --release --locked

# Formatting (rustfmt.toml) and every clippy warning, as errors; CI runs it after the tests.
lint: setup
	cargo fmt --check
	cargo clippy --release --locked --all-targets -- -D warnings

demo: setup
	@scripts/demo.sh "$(RAW)" "$(STORE)" "$(RUNS)"

# US-4 (dataset_manifests/us4.toml) from the sub-datasets under $(RAW), each printed against the
# paper's Table 1 and the absent ones reported, then the open stand-in us4-open (docs/us4.md).
us4: setup
	@scripts/us4.sh "$(RAW)" "$(STORE)"

# Rebuild the store of every single-corpus manifest whose corpus is under $(RAW)/<name>/.
stores: setup
	@scripts/stores.sh "$(RAW)" "$(STORE)"

bench: setup
	@scripts/bench.sh "$(RAW)"

# Pretraining strategies compared on POCUS at CPU scale; writes docs/RESULTS.md (about 2 hours on 2 cores).
experiment: setup
	@scripts/experiment.sh "$(RAW)" "$(STORE)" "$(RUNS)/experiment"

# One of the paper's tables, resumable: make sweep TABLE=labels|batch|variety|pairs [SCALE=paper]
# writes $(RUNS)/sweep/TABLE.md and TABLE.json (docs/experiments.md; about an hour each on 2 cores).
TABLE ?= pairs
sweep: setup
	@scripts/sweep.sh "$(TABLE)" "$(RAW)" "$(STORE)" "$(RUNS)/sweep"

clean:
	cargo clean
	rm -rf .venv .venv-torch2.11 build
