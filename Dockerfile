# Build: docker build -t tanyi-relay .
# Run:   docker run -p 8080:8080 -v relay-data:/data tanyi-relay
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY config config
RUN cargo build --release --locked --bin tanyi-relay \
    && mkdir -p /out/data \
    && cp target/release/tanyi-relay /out/tanyi-relay

# distroless: glibc and CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tanyi-relay /usr/local/bin/tanyi-relay
COPY --from=build --chown=65532:65532 /out/data /data
ENV TANYI_RELAY__SERVER__LISTEN=0.0.0.0:8080 \
    TANYI_RELAY__DATABASE__URL=sqlite:///data/tanyi-relay.db
VOLUME /data
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/tanyi-relay"]
CMD ["serve"]
