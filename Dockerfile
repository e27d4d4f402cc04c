# syntax=docker/dockerfile:1
# The operator image: built in a Rust image, run from distroless (glibc,
# libgcc, CA certificates, no shell, no package manager) as a non-root user.
#
#   docker build -t secgroup-operator:0.1.0 .
#
# The chart runs it as 65532 with a read-only root filesystem; the binary
# writes nothing to disk. Provider endpoints are verified against the image's
# CA certificates, the API server against the cluster's CA.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY tests ./tests
# Cache mounts keep the registry and the build between builds; the binary is
# copied out because the cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin secgroup-operator \
 && install -D -m 0755 target/release/secgroup-operator /out/secgroup-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/secgroup-operator /usr/local/bin/secgroup-operator
# Numeric, so that runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/secgroup-operator"]
CMD ["run", "--help"]
