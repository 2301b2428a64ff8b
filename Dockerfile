# Builds the operator and copies the one binary into a slim runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked && strip target/release/vigil

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
USER 65532
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["run"]
