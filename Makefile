# patchflow: `make run` shows the main job on the embedded default, `make test` runs every test.
# Each target installs what it needs (crates come from crates.io through cargo).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
DEMO_DIR := target/demo
DEMO_CYCLE := 2026-12
DEMO_ENDPOINTS := 200
DEMO_CLIENTS := 5
DEMO_SEED := 42
BENCH_DIR := target/bench
BENCH_ENDPOINTS := 100000
BENCH_CLIENTS := 500

.PHONY: help run test lint fmt check bench build toolchain

help: ## List the targets
	@echo "patchflow make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo is required: install Rust from https://rustup.rs" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

build: toolchain ## Build every crate (release)
	$(CARGO) build --workspace --release

run: toolchain ## Plan the bundled demo fleet (200 endpoints, 5 clients) for the 2026-12 cycle
	$(CARGO) build --release -p patchflow-cli
	target/release/patchflow fleet generate --endpoints $(DEMO_ENDPOINTS) --clients $(DEMO_CLIENTS) \
		--seed $(DEMO_SEED) --out $(DEMO_DIR)/inventory.json
	target/release/patchflow plan --inventory $(DEMO_DIR)/inventory.json \
		--catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json --cycle $(DEMO_CYCLE) --format table
	@echo
	@echo "One endpoint's reasons:  target/release/patchflow plan --inventory $(DEMO_DIR)/inventory.json --catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json --cycle $(DEMO_CYCLE) --endpoint <id>"

test: toolchain ## Run every test (unit, property, CLI, cross-crate; the bench as a smoke test)
	@mkdir -p target
	$(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

lint: toolchain ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: toolchain ## Format the code
	$(CARGO) fmt --all

check: lint test ## What CI runs

bench: toolchain ## Plan a generated 100,000-endpoint fleet: bench vs the I/O floor, then the real binary's wall time and peak memory
	$(CARGO) bench -p patchflow-cli --bench plan
	$(CARGO) build --release -p patchflow-cli
	target/release/patchflow fleet generate --endpoints $(BENCH_ENDPOINTS) --clients $(BENCH_CLIENTS) \
		--seed 1 --compact --out $(BENCH_DIR)/fleet.json
	@if [ -x /usr/bin/time ]; then \
		/usr/bin/time -f "patchflow plan, $(BENCH_ENDPOINTS) endpoints: %e s wall, %M KB peak RSS" \
			target/release/patchflow plan --inventory $(BENCH_DIR)/fleet.json \
			--catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json --cycle $(DEMO_CYCLE) --format json \
			> $(BENCH_DIR)/plan.json; \
	else \
		echo "(/usr/bin/time not found: apt-get install time, for peak memory)"; \
		time target/release/patchflow plan --inventory $(BENCH_DIR)/fleet.json \
			--catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json --cycle $(DEMO_CYCLE) --format json \
			> $(BENCH_DIR)/plan.json; \
	fi
