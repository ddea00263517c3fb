# pico — build, test and deploy. `make test` is the one command that runs everything.
CARGO ?= cargo
# Tagged with the crate version, which the server's --agent-image defaults to: with
# imagePullPolicy IfNotPresent a kind node uses what `make kind-load` loaded.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= pico:$(VERSION)
# `make image` and `make docker-build` both leave the image here; `make kind-load` loads it.
IMAGE_ARCHIVE := target/image/pico.tar
KIND_CLUSTER ?= kind
# The host's architecture (x86_64 or aarch64): `make image` on an arm64 machine builds an
# arm64 image; the Dockerfile is FROM scratch and has no architecture of its own.
STATIC_TARGET ?= $(shell rustc -vV | sed -n 's/^host: //p')
VENV := .venv
PYTEST := $(VENV)/bin/pytest

.PHONY: all build release run test test-deps lint lint-python spec bench clean \
	static image-bins image image-multiarch docker-build kind-load k8s-deploy k8s-logs test-kube

all: build

# Debug binaries in target/debug/, linked into bin/ where the original project's README
# has them (`./bin/pico-apiserver --port=8080`).
BINS := pico-apiserver pico-agent pico
build:
	$(CARGO) build --workspace --bins
	@mkdir -p bin && for b in $(BINS); do ln -sfn ../target/debug/$$b bin/$$b; done
	@echo "binaries: ./bin/ ($(BINS))"

release:
	$(CARGO) build --release --workspace --bins

# The server on its embedded default (local runtime); it starts the pico-agent built beside it.
run:
	$(CARGO) build --release --bins
	./target/release/pico-apiserver $(ARGS)

test-deps:
	scripts/test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The Python SDK: ruff over it and its tests, mypy --strict over the package (the config is in
# sdk/pyproject.toml; the tools come with `make test-deps`).
lint-python:
	$(VENV)/bin/ruff check sdk
	cd sdk && ../$(VENV)/bin/mypy

# The whole suite: tools, lints, Rust unit and black-box tests (the black-box API suite a
# second time on the Kubernetes runtime, against the emulator; the image test needs the
# static binaries), Python tests.
# Tests that need root (namespaces, cgroups, mounts) or the static build are #[ignore]d with
# the reason; as root (CI) they run too, and fail rather than skip when something is missing.
test: test-deps lint lint-python build image-bins
	PICO_AGENT_STATIC_BIN=$(CURDIR)/target/$(STATIC_TARGET)/release/pico-agent \
		$(CARGO) test --workspace --no-fail-fast $(if $(filter 0,$(shell id -u)),-- --include-ignored)
	$(MAKE) test-kube
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

# Deployment (k8s/README.md). Static glibc binaries for the FROM-scratch image.
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release \
		--target $(STATIC_TARGET) --bin pico-apiserver --bin pico-agent

# The image's binaries, stripped, in target/image/ (the Dockerfile's BIN_DIR).
image-bins: static
	mkdir -p target/image
	strip -o target/image/pico-apiserver target/$(STATIC_TARGET)/release/pico-apiserver
	strip -o target/image/pico-agent target/$(STATIC_TARGET)/release/pico-agent

# The image with Debian's buildah (no Docker engine needed, nothing pulled).
image: image-bins
	PICO_IMAGE_ARCHIVE=$(IMAGE_ARCHIVE) scripts/build-image.sh $(IMAGE)

# amd64 + arm64 in one manifest list (OCI archive target/image/pico-multiarch.tar); needs the
# Rust targets and a cross gcc/binutils, listed in the script.
image-multiarch:
	scripts/build-image-multiarch.sh $(IMAGE)

docker-build: image-bins
	docker build -t $(IMAGE) .
	docker save -o $(IMAGE_ARCHIVE) $(IMAGE)

kind-load:
	@command -v kind >/dev/null || { echo "kind-load: kind is missing (https://kind.sigs.k8s.io)" >&2; exit 1; }
	@test -f $(IMAGE_ARCHIVE) || { echo "kind-load: no $(IMAGE_ARCHIVE): run make image (or make docker-build) first" >&2; exit 1; }
	kind load image-archive $(IMAGE_ARCHIVE) --name $(KIND_CLUSTER)

k8s-deploy:
	scripts/k8s-deploy.sh

k8s-logs:
	kubectl -n pico-apiserver logs -l app.kubernetes.io/name=pico-apiserver --all-containers --prefix --tail=200

# The runtime-independent black-box API tests again, on the Kubernetes runtime (emulator).
# The skipped ones exercise the local runtime's own processes and files.
KUBE_SKIP := sandbox_that_cannot_start sandbox_that_never_gets_ready a_dead_agent_is_restarted \
	exec_works_again_after_a_server_restart output_survives_disconnect_and_a_server_restart \
	a_paused_sandbox_stops_and_continues_where_it_was a_paused_session_stays_paused_across_a_restart
test-kube: build
	PICO_TEST_RUNTIME=kubernetes $(CARGO) test -p pico-apiserver \
		--test api --test tunnel --test hostile --test openapi --test exec_http --test processes \
		--test pause -- $(addprefix --skip ,$(KUBE_SKIP))
