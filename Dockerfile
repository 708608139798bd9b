# webhookd: one container beside a managed PostgreSQL. Set DATABASE_URL (the image carries no
# PostgreSQL of its own) and WEBHOOKD_ADMIN_TOKEN (or mount a persistent volume at
# /var/lib/webhookd to keep a generated one; see WEBHOOKD_ADMIN_TOKEN_POLICY below).
#
# Stopping: SIGTERM, then in-flight deliveries get WEBHOOKD_SHUTDOWN_GRACE (30s by default) plus
# up to 5s to close HTTP connections. Give the container 40s before SIGKILL: `docker stop -t 40`,
# compose `stop_grace_period: 40s`, Kubernetes `terminationGracePeriodSeconds: 40` (raise all of
# them with WEBHOOKD_SHUTDOWN_GRACE).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Release binary without debug info or symbols (Cargo.toml keeps line tables for local profiling).
# Set before the first build: both builds below must use the same profile, or the dependency
# layer would be compiled again. SQLX_OFFLINE: the compile-time checked queries read .sqlx/, never a database.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=true \
    SQLX_OFFLINE=true

# 1. Dependencies only, against stub sources: this layer is reused until Cargo.toml or
#    Cargo.lock changes, so a change in src/ recompiles webhookd alone.
#    The test-support crate is a dev-dependency: never built here, but cargo reads its manifest.
COPY Cargo.toml Cargo.lock ./
COPY tests/support/Cargo.toml tests/support/
RUN mkdir -p src bench tests/support/src \
    && echo 'fn main() {}' > src/main.rs \
    && : > src/lib.rs \
    && echo 'fn main() {}' > bench/main.rs \
    && : > tests/support/src/lib.rs \
    && cargo build --release --locked --bin webhookd

# 2. The real sources: whatever .dockerignore lets through (src/, sql/ and migrations/, both
#    compiled in, and .sqlx/ when it exists). Touch the crate roots so cargo sees them as newer
#    than the stub build whatever mtimes COPY kept.
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin webhookd

FROM debian:bookworm-slim
# ca-certificates: TLS to managed PostgreSQL, Redis and webhook receivers (native roots).
# A fixed numeric UID, so that Kubernetes `runAsNonRoot` can verify it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 webhookd \
    && useradd --system --uid 10001 --gid webhookd --home-dir /var/lib/webhookd \
       --no-create-home --shell /usr/sbin/nologin webhookd \
    && install -d -o webhookd -g webhookd -m 0750 /var/lib/webhookd
COPY --from=build /src/target/release/webhookd /usr/local/bin/webhookd
USER 10001:10001
WORKDIR /var/lib/webhookd
# WEBHOOKD_ADMIN_TOKEN_POLICY=require-or-volume: without WEBHOOKD_ADMIN_TOKEN and without a
# persistent volume at the data directory, exit with a message instead of generating a token
# that would be lost with the container. No VOLUME here on purpose: an anonymous volume would
# satisfy that check and still lose the token.
ENV WEBHOOKD_LISTEN=0.0.0.0:8000 \
    WEBHOOKD_DATA_DIR=/var/lib/webhookd \
    WEBHOOKD_LOG_FORMAT=json \
    WEBHOOKD_ADMIN_TOKEN_POLICY=require-or-volume
EXPOSE 8000
STOPSIGNAL SIGTERM
# `webhookd healthcheck` exits 0 when http://$WEBHOOKD_LISTEN/health answers 200 (no curl needed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["webhookd", "healthcheck"]
ENTRYPOINT ["webhookd"]
CMD ["serve"]
