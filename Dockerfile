# Builds the operator and copies the one binary into a slim runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
# The workspace needs every member's manifest to load, not its sources: only the operator
# is built (the simulator in sim/ is for tests, the demo and benchmarks).
COPY Cargo.toml Cargo.lock ./
COPY sim/Cargo.toml sim/Cargo.toml
COPY src src
RUN cargo build --release --locked -p vigil --bin vigil && strip target/release/vigil

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
USER 65532
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["run"]
