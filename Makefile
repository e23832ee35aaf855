# Plugboard's task runner: the README and .ci/run call these targets instead
# of repeating their steps.

CARGO ?= cargo
# Example plugins the tests and benchmarks use (a user's plugins.d stays untouched).
TEST_PLUGINS := target/plugins

.PHONY: demo tour plugins test lint fmt check-tools api-tools build bench clean

## Build the example plugins into plugins.d and serve them with a demo API
## and a demo integration (prints the admin token and a curl to try).
demo: plugins
	@echo "building the host (the first build compiles wasmtime: about 7 minutes on two cores; cargo shows its progress)"
	$(CARGO) run --release -p plugboard -- serve --demo

## The guided walk-through: the example plugins run step by step, no server.
tour: plugins
	$(CARGO) run --release -p plugboard -- demo

## Build the example plugins into plugins.d.
plugins:
	bash scripts/build-plugins.sh plugins.d

## The whole test suite, as CI runs it, on a fresh machine.
test: check-tools api-tools lint build
	bash scripts/build-plugins.sh $(TEST_PLUGINS)
	$(CARGO) test --release --workspace

## Formatting and lints.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Installs what the build needs when it is missing (the wasm target).
check-tools:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

## The API conformance tool the suite runs (schemathesis, pinned in
## tests/schemathesis/requirements.txt), into .tools/api-venv.
api-tools:
	bash scripts/api-tools.sh

build:
	$(CARGO) build --release --workspace

## Benchmarks (figures in README.md).
bench: build
	bash scripts/build-plugins.sh $(TEST_PLUGINS)
	bash scripts/bench-tools.sh
	$(CARGO) bench -p plugboard-tests --bench runtime
	$(CARGO) bench -p plugboard-tests --bench load
	$(CARGO) bench -p plugboard-tests --bench queue

clean:
	$(CARGO) clean
	rm -rf plugins/target plugins.d .plugboard .tools plugins/js/node_modules
