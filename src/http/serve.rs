//! The accept loop: hyper's HTTP/1 server with the settings `axum::serve`
//! does not expose. Every TCP connection takes a connection permit before a
//! byte is read (refused ones get their 429/503 and close), has
//! `server.request_head_timeout` for each request line and headers (a
//! silent or dripping peer is dropped), and no Nagle delay. On shutdown the
//! loop stops accepting and each connection finishes its request in hand.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::App;
use super::conns::{PermitSlot, Refused};
use super::error::error_response;
use crate::protocol::ErrorCode;

/// How long a refused connection is given to send its request and read the
/// refusal.
const REFUSAL_WAIT: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown`, then waits for the
/// connections' requests in hand (WebSockets have left hyper by then: the
/// app tracks them).
pub(crate) async fn serve(app: Arc<App>, listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(app.config.server.request_head_timeout);
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some
                    // to close rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small frames must leave at once: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let ip = peer.ip().to_canonical();
        let permit = if app.trusted_proxies.contains(ip) { app.conns.acquire_total() } else { app.conns.acquire(ip) };
        match permit {
            Ok(permit) => {
                let slot = PermitSlot::new(permit);
                connections.spawn(serve_one(builder.clone(), tcp, peer, router.clone(), slot, shutdown.clone()));
            }
            Err(refused) => {
                tracing::warn!(%peer, ?refused, "connection refused: cap reached");
                connections.spawn(refuse(builder.clone(), tcp, refused));
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One connection that holds a permit, until it closes or is upgraded.
async fn serve_one(
    builder: http1::Builder,
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: PermitSlot,
    shutdown: CancellationToken,
) {
    let request_slot = slot.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(request_slot.clone());
        router.clone().oneshot(req)
    });
    let conn = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    // An upgrade took the permit with it; otherwise it ends here.
    drop(slot);
}

/// Answers every request on a connection over a cap with the refusal.
async fn refuse(builder: http1::Builder, tcp: TcpStream, refused: Refused) {
    let (status, message) = match refused {
        Refused::Total => (StatusCode::SERVICE_UNAVAILABLE, "too many connections"),
        Refused::PerIp => (StatusCode::TOO_MANY_REQUESTS, "too many connections from this address"),
    };
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
        Ok::<_, Infallible>(error_response(status, ErrorCode::TooManyConnections, message))
    });
    let mut builder = builder;
    builder.keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(tcp), service);
    let _ = tokio::time::timeout(REFUSAL_WAIT, conn).await;
}
