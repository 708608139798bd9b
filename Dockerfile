# webhookd: one container beside a managed PostgreSQL (set DATABASE_URL).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY sql sql
COPY migrations migrations
COPY bench bench
RUN cargo build --release --locked --bin webhookd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/webhookd --create-home webhookd
COPY --from=build /src/target/release/webhookd /usr/local/bin/webhookd
USER webhookd
WORKDIR /var/lib/webhookd
ENV WEBHOOKD_LISTEN=0.0.0.0:8000 \
    WEBHOOKD_DATA_DIR=/var/lib/webhookd \
    WEBHOOKD_LOG_FORMAT=json
EXPOSE 8000
# DATABASE_URL must be set: the image carries no PostgreSQL of its own.
ENTRYPOINT ["webhookd"]
CMD ["serve"]
