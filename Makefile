# patchflow: `make run` shows the main job on the embedded default, `make test` runs every test.
# Each target installs what it needs: crates through cargo; for `make test`, a Python venv in
# .venv with moto's AWS API server (tests/with-moto.sh starts and stops it on a free port); for
# `make lint`, a venv in .venv-lint with the template's linters; for `make package` and
# `make deploy`, a venv in .venv-infra with cargo-lambda, zig and the SAM CLI.

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
LAMBDA_BENCH_RUNS := 20

.PHONY: help run test lint lint-infra fmt check bench build toolchain docs package deploy bench-aws

INFRA_VENV := .venv-infra
LINT_VENV := .venv-lint
FUNCTIONS := inventory-sync approval-eval ring-promotion reboot-scheduler failure-escalation evidence-archiver

help: ## List the targets
	@echo "patchflow make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo is required: install Rust from https://rustup.rs" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

build: toolchain ## Build every crate (release)
	$(CARGO) build --workspace --release

run: toolchain ## Simulate a whole 2026-12 cycle of the bundled demo fleet (200 endpoints, 5 clients) on the embedded default, then verify its evidence
	$(CARGO) build --release -p patchflow-cli
	@# Each endpoint with its OS and an RMM patch scan against the month's catalog.
	target/release/patchflow fleet generate --endpoints $(DEMO_ENDPOINTS) --clients $(DEMO_CLIENTS) \
		--seed $(DEMO_SEED) --catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json \
		--out $(DEMO_DIR)/inventory.json
	@# A simulation starts from a fresh state; evidence files are read-only by design.
	@if [ -d $(DEMO_DIR)/cycle ]; then chmod -R u+w $(DEMO_DIR)/cycle && rm -rf $(DEMO_DIR)/cycle; fi
	target/release/patchflow simulate --inventory $(DEMO_DIR)/inventory.json \
		--catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json --cycle $(DEMO_CYCLE) --out $(DEMO_DIR)/cycle
	@echo
	@# The evidence, verified as an auditor would (the whole report in audit-verify.txt).
	@target/release/patchflow audit verify $(DEMO_DIR)/cycle/evidence > $(DEMO_DIR)/audit-verify.txt; \
		status=$$?; grep -E '^(chains|problems|verified)' $(DEMO_DIR)/audit-verify.txt; exit $$status
	@echo
	@echo "Look around:  target/release/patchflow status --state $(DEMO_DIR)/cycle --cycle $(DEMO_CYCLE)"
	@echo "              target/release/patchflow failure list --state $(DEMO_DIR)/cycle --cycle $(DEMO_CYCLE)"
	@echo "              target/release/patchflow audit list --state $(DEMO_DIR)/cycle"
	@echo "              a compliance report: $(DEMO_DIR)/cycle/evidence/$(DEMO_CYCLE)/<client>/cycle/report.html"
	@echo "The plan alone: target/release/patchflow plan --inventory $(DEMO_DIR)/inventory.json --catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json --cycle $(DEMO_CYCLE) --format table"

test: toolchain ## Run every test (unit, property, CLI, adapters against moto's AWS API server, cross-crate)
	@command -v python3 >/dev/null || { echo "python3 is required for the AWS API server the adapter tests use (moto)" >&2; exit 1; }
	@mkdir -p target
	tests/with-moto.sh $(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

lint: toolchain lint-infra ## rustfmt, clippy (warnings are errors), and the SAM template's cfn-lint and checkov
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint-infra: ## cfn-lint (no error or warning) and checkov (no failed check) on infra/template.yaml
	@command -v python3 >/dev/null || { echo "python3 is required for cfn-lint and checkov" >&2; exit 1; }
	@[ "$$($(LINT_VENV)/bin/checkov --version 2>/dev/null)" = 3.3.30 ] || { \
		echo "installing cfn-lint and checkov into $(LINT_VENV)"; \
		python3 -m venv $(LINT_VENV) && $(LINT_VENV)/bin/pip install -q -r infra/lint-requirements.txt; }
	$(LINT_VENV)/bin/cfn-lint infra/template.yaml
	$(LINT_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f infra/template.yaml

package: toolchain ## Build the six functions as arm64 Lambda zips (target/lambda/NAME/bootstrap.zip) with cargo-lambda; SIMULATION=1 for a Connectors=simulation stack
	@[ -x $(INFRA_VENV)/bin/cargo-lambda ] && [ -x $(INFRA_VENV)/bin/sam ] || { \
		echo "installing cargo-lambda, zig and the SAM CLI into $(INFRA_VENV)"; \
		python3 -m venv $(INFRA_VENV) && $(INFRA_VENV)/bin/pip install -q -r infra/deploy-requirements.txt; }
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	@# One build per function, so that each links only its own features (built together, cargo
	@# would give every function the archiver's evidence rendering); the lambda-release profile
	@# strips symbols and optimises for size. SIMULATION=1 adds the simulated RMM, PSA and pager (and SQLite) that a
	@# stack deployed with Connectors=simulation needs; without it, such a stack fails at start.
	for f in $(FUNCTIONS); do \
		PATH="$(CURDIR)/$(INFRA_VENV)/bin:$$PATH" $(CARGO) lambda build --profile lambda-release --arm64 \
			--output-format zip $(if $(SIMULATION),--features simulation) --package patchflow-$$f || exit 1; \
	done
	@# Files packaged beside the bootstraps: the connectors file in every function
	@# (CONNECTORS_CONFIG=connectors.toml), and inventory-sync's inventory (simulation) and
	@# catalogs (third-party ones with connectwise): INVENTORY=fleet.json CATALOGS='catalog-2026-12.json ...'
	@if [ -n "$(CONNECTORS_CONFIG)" ]; then for f in $(FUNCTIONS); do \
		python3 infra/add-to-zip.py target/lambda/$$f/bootstrap.zip connectors.toml=$(CONNECTORS_CONFIG) || exit 1; done; fi
	@if [ -n "$(INVENTORY)$(CATALOGS)" ]; then \
		python3 infra/add-to-zip.py target/lambda/inventory-sync/bootstrap.zip \
			$(if $(INVENTORY),inventory.json=$(INVENTORY)) $(CATALOGS); fi
	@for f in $(FUNCTIONS); do ls -l target/lambda/$$f/bootstrap.zip; done

deploy: package ## Deploy with SAM (infra/samconfig.toml); extra arguments in SAM_ARGS
	cd infra && PATH="$(CURDIR)/$(INFRA_VENV)/bin:$$PATH" sam deploy --config-file samconfig.toml $(SAM_ARGS)

fmt: toolchain ## Format the code
	$(CARGO) fmt --all

check: lint test ## What CI runs

bench: toolchain ## Plan a generated 100,000-endpoint fleet (bench vs the I/O floor, the real binary's wall time and peak memory); render a 500-endpoint tier's evidence; the Lambda functions' sizes and init times
	$(CARGO) bench -p patchflow-evidence --bench render
	$(CARGO) bench -p patchflow-cli --bench plan
	$(CARGO) build --release -p patchflow-cli
	target/release/patchflow fleet generate --endpoints $(BENCH_ENDPOINTS) --clients $(BENCH_CLIENTS) \
		--seed 1 --compact --out $(BENCH_DIR)/fleet.json
	@command -v /usr/bin/time >/dev/null || { echo "installing GNU time for peak-memory figures"; \
		{ apt-get update -qq && apt-get install -y -qq time; } >/dev/null 2>&1; }
	@rm -f $(BENCH_DIR)/runs.txt
	@for i in 1 2 3 4 5; do \
		/usr/bin/time -a -o $(BENCH_DIR)/runs.txt -f "%e %M" target/release/patchflow plan \
			--inventory $(BENCH_DIR)/fleet.json --catalog functions/cli/demo/catalog-$(DEMO_CYCLE).json \
			--cycle $(DEMO_CYCLE) --format json > $(BENCH_DIR)/plan.json; \
	done
	@sort -n $(BENCH_DIR)/runs.txt | awk '{ w[NR] = $$1; if ($$2 > m) m = $$2 } END { \
		printf "patchflow plan binary, $(BENCH_ENDPOINTS) endpoints, plan written to a file: median %.2f s wall over %d runs (min %.2f, max %.2f), peak RSS %.0f MB\n", \
		w[int((NR + 1) / 2)], NR, w[1], w[NR], m / 1024 }'
	@# Each function as `make package` builds it (for this machine), started against a local
	@# Lambda Runtime API: binary and zipped size, and init (spawn to the first `next`).
	@for f in $(FUNCTIONS); do $(CARGO) build -q --profile lambda-release -p patchflow-$$f || exit 1; done
	python3 infra/lambda-bench.py --bin-dir target/lambda-release --runs $(LAMBDA_BENCH_RUNS) $(FUNCTIONS)

bench-aws: toolchain ## AWS requests, DynamoDB units and cost per endpoint per cycle: whole cycles of 200 and 2,000 endpoints on moto behind a counting proxy (docs/performance.md)
	@command -v python3 >/dev/null || { echo "python3 is required for moto and the counting proxy" >&2; exit 1; }
	@mkdir -p $(BENCH_DIR)
	@# Retries the build a few times: the workspace may be mid-edit.
	@for i in 1 2 3 4 5; do $(CARGO) bench -p patchflow-tests --bench aws_cost --no-run && break; \
		[ $$i = 5 ] && exit 1; echo "bench-aws: build failed; retrying in 60 s" >&2; sleep 60; done
	PATCHFLOW_COUNTING_PROXY=1 tests/with-moto.sh $(CARGO) bench -p patchflow-tests --bench aws_cost \
		2>&1 | tee $(BENCH_DIR)/aws-cost.txt

docs: toolchain ## Regenerate the generated sections of docs/ (node and reason tables, policy defaults)
	$(CARGO) build -q -p patchflow-cli
	@regen() { file=$$1; name=$$2; shift 2; \
		"$$@" > target/docs-section.tmp; \
		awk -v name="$$name" -v sect=target/docs-section.tmp ' \
			index($$0, "<!-- BEGIN " name " ") == 1 { print; while ((getline line < sect) > 0) print line; skip = 1; next } \
			index($$0, "<!-- END " name " -->") == 1 { skip = 0 } \
			!skip { print }' "$$file" > "$$file.tmp" && mv "$$file.tmp" "$$file"; }; \
	regen docs/flow.md nodes target/debug/patchflow explain nodes --markdown; \
	regen docs/flow.md reasons target/debug/patchflow explain reasons --markdown; \
	regen docs/policy.md policy sh -c 'echo "\`\`\`toml"; target/debug/patchflow policy show; echo "\`\`\`"'
