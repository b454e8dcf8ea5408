# syntax=docker/dockerfile:1
#
# One image for every role of `ork`: its entrypoint is the `ork` binary, so
#
#   docker run IMAGE                             # ork serve on 0.0.0.0:4000 (the default command)
#   docker run IMAGE worker -- python job.py     # a task under the worker contract
#   docker run IMAGE run workflows/simple.yaml   # any other subcommand
#
# Build from the repository root: `docker build -t ork .`. The final stage
# is debian:bookworm-slim with the binary and CA certificates only (no
# toolchain), running as an unprivileged user (uid 10001).

FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole workspace: cargo loads every member's manifest even to build
# one package; sqlx::migrate! embeds migrations/.
COPY Cargo.toml Cargo.lock ./
COPY shared shared
COPY tests tests
COPY api api
COPY cli cli
COPY functions functions
COPY migrations migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ork-cli --bin ork \
 && cp target/release/ork /usr/local/bin/ork

FROM debian:bookworm-slim
# ca-certificates unpinned on purpose: it should be the newest the image gets.
# python3 for `python` tasks and the example workflows' scripts.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/ork --uid 10001 ork
COPY --from=builder /usr/local/bin/ork /usr/local/bin/ork
COPY --chown=10001:10001 workflows /home/ork/workflows
USER 10001
WORKDIR /home/ork
ENV RUST_LOG=info \
    ORK_ADDR=0.0.0.0:4000
EXPOSE 4000
ENTRYPOINT ["ork"]
CMD ["serve"]
