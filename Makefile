# pico — build, test and deploy. `make test` is the one command that runs everything.
CARGO ?= cargo
IMAGE ?= pico:latest
KIND_CLUSTER ?= kind
STATIC_TARGET := x86_64-unknown-linux-gnu
VENV := .venv
PYTEST := $(VENV)/bin/pytest

.PHONY: all build release run test test-deps lint spec bench clean \
	static image-bins image docker-build kind-load k8s-deploy k8s-logs test-kube

all: build

build:
	$(CARGO) build --workspace --bins

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

# The whole suite: tools, lints, Rust unit and black-box tests (the black-box API suite a
# second time on the Kubernetes runtime, against the emulator; the image test needs the
# static binaries), Python tests.
test: test-deps lint build image-bins
	$(CARGO) test --workspace
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
	scripts/build-image.sh $(IMAGE)

docker-build: image-bins
	docker build -t $(IMAGE) .

kind-load:
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

k8s-deploy:
	kubectl apply -f k8s/
	kubectl -n pico rollout status deployment/pico-apiserver

k8s-logs:
	kubectl -n pico logs -l app.kubernetes.io/name=pico-apiserver --all-containers --prefix --tail=200

# The runtime-independent black-box API tests again, on the Kubernetes runtime (emulator).
# The skipped ones exercise the local runtime's own processes and files.
KUBE_SKIP := sandbox_that_cannot_start sandbox_that_never_gets_ready a_dead_agent_is_restarted \
	exec_works_again_after_a_server_restart
test-kube: build
	PICO_TEST_RUNTIME=kubernetes $(CARGO) test -p pico-apiserver \
		--test api --test tunnel --test hostile --test openapi --test exec_http -- $(addprefix --skip ,$(KUBE_SKIP))
