# syntax=docker/dockerfile:1
# Build: docker build -t tanyi-relay .
# Run:   docker run -p 8080:8080 -v relay-data:/data tanyi-relay
# The base images are build arguments, so that a machine without a registry can give local ones
# (scripts/container-check does: a build image with its own Rust toolchain and a runtime image
# made from Debian's packages). The build image needs cargo and a C linker; the runtime image
# needs glibc, libgcc_s and CA certificates, and nothing else.
ARG BUILD_IMAGE=docker.io/library/rust:1-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY config config
# Cargo.toml names these targets; cargo refuses a manifest whose named targets are missing.
COPY tests/soak.rs tests/soak.rs
COPY benches/relay.rs benches/relay.rs
# The registry and the target directory are cache mounts: a second build fetches nothing and
# recompiles only what changed. The binary is copied out because a cache mount is not in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tanyi-relay \
    && mkdir -p /out/data \
    && cp target/release/tanyi-relay /out/tanyi-relay

# distroless (or the local stand-in): glibc and CA certificates, no shell, no package manager.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/tanyi-relay /usr/local/bin/tanyi-relay
COPY --from=build --chown=65532:65532 /out/data /data
ENV TANYI_RELAY__SERVER__LISTEN=0.0.0.0:8080 \
    TANYI_RELAY__DATABASE__URL=sqlite:///data/tanyi-relay.db
VOLUME /data
EXPOSE 8080
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tanyi-relay"]
CMD ["serve"]
