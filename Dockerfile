# The pico image: the static pico-apiserver (entrypoint) and the static pico-agent that the
# sandbox pods' init container copies into any image (`pico-agent install /pico`).
# Nothing to pull and nothing to run at build time: build the binaries first with
# `make static` (static glibc, see crates/pico-agent/README.md), then `make image`
# (buildah) or `make docker-build`.
FROM scratch
ARG BIN_DIR=target/x86_64-unknown-linux-gnu/release
COPY ${BIN_DIR}/pico-apiserver ${BIN_DIR}/pico-agent /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pico-apiserver"]
