# Build: a full Rust toolchain, then a slim runtime image with just the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/chat

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin chat \
    && mkdir -p /data /etc/chat && chown chat /data
COPY --from=build /src/target/release/chat /usr/local/bin/chat
COPY config/ /etc/chat/
USER chat
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
ENV CHAT_SERVER__LISTEN=0.0.0.0:8080 \
    CHAT_DATABASE__URL=sqlite:///data/chat.db
ENTRYPOINT ["/usr/local/bin/chat"]
CMD ["serve"]
