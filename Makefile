# pico — build, test and deploy. `make test` is the one command that runs everything.
CARGO ?= cargo
VENV := .venv
PYTEST := $(VENV)/bin/pytest

.PHONY: all build release run test test-deps lint spec bench clean

all: build

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --workspace --bins

run:
	$(CARGO) run --release --bin pico-apiserver

test-deps:
	scripts/test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The whole suite: tools, lints, Rust unit and black-box tests, Python tests.
test: test-deps lint build
	$(CARGO) test --workspace
	@if ls tests/*/test_*.py sdk/tests/test_*.py >/dev/null 2>&1; then \
		PICO_BIN_DIR=$(CURDIR)/target/debug $(PYTEST) -q tests sdk/tests; \
	fi

# Regenerate the committed OpenAPI document from the server's own.
spec: build
	./target/debug/pico-apiserver openapi > api-spec/sandbox-api-spec.yaml

bench:
	bench/run.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)
