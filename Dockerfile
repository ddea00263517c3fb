# The pico image: the static pico-apiserver (entrypoint) and the static pico-agent that the
# sandbox pods' init container copies into any image (`pico-agent install /pico`).
# Nothing to pull and nothing to run at build time: `make image` (buildah) or
# `make docker-build` first run `make image-bins`, which builds static glibc binaries
# (`make static`, see crates/pico-agent/README.md) and strips them into target/image/.
FROM scratch
ARG BIN_DIR=target/image
COPY ${BIN_DIR}/pico-apiserver ${BIN_DIR}/pico-agent /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pico-apiserver"]
