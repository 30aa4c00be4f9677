//! The service's HTTP endpoints: `/health/live`, `/health/ready`, `/health`, `/metrics`,
//! and (unless `HTTP_UI=off`) `/sessions`, `/sessions/trend` and the `/ui` page that reads
//! them.
//! They listen before any Kafka connection is tried, so an orchestrator always gets an
//! answer, and the answer says why the service is not ready.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use eeg_ingest::{Health, Stats};

#[derive(Clone)]
struct App {
    health: Arc<Health>,
    stats: Arc<Stats>,
}

/// Binds `addr` now (so a taken port is an immediate, clear error) and serves on a thread
/// of its own. A failure of the server later is logged and shown by readiness.
pub fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    stats: Arc<Stats>,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("HTTP_ADDR {addr}: cannot listen: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let app = App {
        health: Arc::clone(&health),
        stats,
    };
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let mut router = Router::new()
                            .route("/health/live", get(live))
                            .route("/health/ready", get(ready))
                            .route("/health", get(detail))
                            .route("/metrics", get(metrics));
                        if app.stats.live.enabled() {
                            router = router
                                .route("/sessions", get(sessions))
                                .route("/sessions/trend", get(trend))
                                .route("/ui", get(ui));
                        }
                        let router = router.with_state(app);
                        axum::serve(listener, router).await?;
                        Ok(())
                    })
                });
            let e = match result {
                Ok(()) => "the HTTP server stopped".to_string(),
                Err(e) => format!("the HTTP server failed: {e}"),
            };
            tracing::error!("{e}");
            health.set_error(e);
        })?;
    Ok(bound)
}

async fn live() -> &'static str {
    "live\n"
}

async fn ready(State(app): State<App>) -> impl IntoResponse {
    match app.health.ready_with(&app.stats) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn detail(State(app): State<App>) -> impl IntoResponse {
    let body = app.health.detail(&app.stats, env!("CARGO_PKG_VERSION"));
    let code = if app.health.ready_with(&app.stats).is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        eeg_ingest::metrics::render(&app.stats, &app.health),
    )
}

/// Most sessions one `/sessions` page or `/sessions/trend` answer holds.
const MAX_PAGE: usize = 200;

/// `/sessions?offset=N&limit=M[&latest=false]`: the active sessions, most recently updated
/// first, each with its latest record as published (left out with `latest=false`).
async fn sessions(State(app): State<App>, RawQuery(query): RawQuery) -> impl IntoResponse {
    let mut offset = 0;
    let mut limit = 20;
    let mut latest = true;
    for (k, v) in query_pairs(query.as_deref().unwrap_or("")) {
        match (k.as_str(), v.parse::<usize>()) {
            ("offset", Ok(n)) => offset = n,
            ("limit", Ok(n)) => limit = n.min(MAX_PAGE),
            ("latest", _) => latest = !matches!(v.as_str(), "false" | "0"),
            _ => {}
        }
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.stats.live.page(offset, limit, latest),
    )
}

/// `/sessions/trend?session=ID&since=N[&session=ID2&since=N2...]`: for each session, its
/// trend's windows and trigger events numbered above its `since` (default 0: all kept).
async fn trend(State(app): State<App>, RawQuery(query): RawQuery) -> impl IntoResponse {
    let mut asks: Vec<(String, u64)> = Vec::new();
    for (k, v) in query_pairs(query.as_deref().unwrap_or("")) {
        match k.as_str() {
            "session" if asks.len() < MAX_PAGE => asks.push((v, 0)),
            "since" => {
                if let (Some(last), Ok(n)) = (asks.last_mut(), v.parse()) {
                    last.1 = n;
                }
            }
            _ => {}
        }
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.stats.live.trend(&asks),
    )
}

/// The `key=value` pairs of a query string, percent-decoded (`+` is a space), in order.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A live view of the sessions for a person: one self-contained page, no external assets.
async fn ui() -> impl IntoResponse {
    axum::response::Html(include_str!("ui.html"))
}

/// `eeg-pipeline healthcheck`: 0 when the local `/health/ready` answers 200 within 2 s,
/// 1 otherwise. A plain HTTP/1.0 request, so the container image needs no curl or wget.
pub fn healthcheck(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    use std::time::Duration;
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let limit = Duration::from_secs(2);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&target, limit) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    if s.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded_in_order() {
        let pairs = query_pairs("session=a%20b&since=12&session=c%2Bd+e&since=&x&%zz=%4");
        let want = [
            ("session", "a b"),
            ("since", "12"),
            ("session", "c+d e"),
            ("since", ""),
            ("x", ""),
            ("%zz", "%4"),
        ];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(query_pairs(""), []);
        // Bytes that are not UTF-8 do not fail the request.
        assert_eq!(query_pairs("s=%ff")[0].1, "\u{fffd}");
    }
}
