# syntax=docker/dockerfile:1
#
# chargegrid: one binary for every role (serve, worker billing|notifications,
# sync-ocm, migrate). SQL migrations are embedded in the binary at build time,
# so the runtime image holds the binary and the CA bundle only.
#
#   docker build -t chargegrid .
#   docker run --rm -p 8080:8080 --env-file .env chargegrid            # serve
#   docker run --rm --env-file .env chargegrid worker billing

# ---- chef: toolchain + cargo-chef -------------------------------------------
FROM lukemathwalker/cargo-chef:latest-rust-1 AS chef
WORKDIR /app
# sqlx compile-time checked queries (if any) use the committed .sqlx/ data
# instead of a live database.
ENV SQLX_OFFLINE=true

# ---- planner: dependency recipe (changes only when manifests change) ---------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- builder: cached dependency layer, then the application -----------------
FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin chargegrid

# ---- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates is deliberately unpinned: it must follow Debian's security
# updates of the trust store on every rebuild, and pinning an exact Debian
# revision breaks the build as soon as that revision leaves the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 chargegrid \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin chargegrid
COPY --from=builder /app/target/release/chargegrid /usr/local/bin/chargegrid
# 8080: HTTP_BIND of `serve` (OCPP, GraphQL, /healthz, /ready, /metrics)
# 9090: WORKER_HTTP_BIND of the workers (/healthz, /metrics)
EXPOSE 8080 9090
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/chargegrid"]
CMD ["serve"]
