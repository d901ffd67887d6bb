# Build: a full Rust toolchain, then a slim runtime image with just the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/chat

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin chat \
    && mkdir -p /data /etc/chat && chown chat /data
COPY --from=build /src/target/release/chat /usr/local/bin/chat
# The server reads this file (see CMD); mount your own over it, or override
# single settings with CHAT_SECTION__KEY variables (`docker run -e ...`).
# Every default is compiled in (config/default.toml), so the file holds only
# what differs: listen on all interfaces, the database in the volume.
COPY config/chat.toml /etc/chat/chat.toml
# glibc's malloc (SQLite's allocations; the server's own use jemalloc): two
# arenas and an early trim give freed memory back (docs/operations.md, Limits).
ENV MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=131072
USER chat
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/chat"]
CMD ["serve", "--config", "/etc/chat/chat.toml"]
