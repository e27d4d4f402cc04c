# syntax=docker/dockerfile:1
# The operator image and the fake cloud image: the binaries on a base of
# Debian packages (C library, libgcc, CA certificates; no shell, no package
# manager), run as a non-root user.
#
#   docker build -t secgroup-operator:0.1.0 .
#   docker build --target secgroup-fakecloud -t secgroup-fakecloud:0.1.0 .
#
# `make image` builds the same images without a container engine: it reads
# the `FROM scratch` stages below, and image/build.sh fails on an instruction
# it does not know. Keep those stages to COPY --from=base|build, USER, ENV,
# EXPOSE, ENTRYPOINT, CMD and WORKDIR, one line each.
#
# The chart runs the operator as 65532 with a read-only root filesystem; the
# binary writes nothing to disk. Provider endpoints are verified against the
# image's CA certificates (and any CA a ProviderConfig adds in spec.tls), the
# API server against the cluster's CA.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY tests ./tests
# Cache mounts keep the registry and the build between builds; the binaries
# are copied out because the cache mount is not part of the layer. Their line
# tables stay behind (a sixth of the size; symbols, and so function names in
# backtraces, stay); image/build.sh strips the same way.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin secgroup-operator --bin secgroup-fakecloud \
 && install -D -m 0755 -t /out target/release/secgroup-operator target/release/secgroup-fakecloud \
 && objcopy --strip-debug /out/secgroup-operator /out/secgroup-fakecloud

# The base file system, assembled from the Debian release the binaries were
# built on.
FROM docker.io/library/debian:bookworm-slim AS base
COPY image/base.sh /usr/local/bin/base.sh
RUN apt-get update && base.sh /rootfs

FROM scratch AS secgroup-fakecloud
COPY --from=base /rootfs /
COPY --from=build /out/secgroup-fakecloud /usr/local/bin/secgroup-fakecloud
USER 65532:65532
ENV FAKECLOUD_LISTEN=0.0.0.0:8787
EXPOSE 8787
ENTRYPOINT ["/usr/local/bin/secgroup-fakecloud"]

# The operator; last, so that a plain `docker build` makes it.
FROM scratch AS secgroup-operator
COPY --from=base /rootfs /
COPY --from=build /out/secgroup-operator /usr/local/bin/secgroup-operator
# Numeric, so that runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/secgroup-operator"]
CMD ["run", "--help"]
