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
        Ok(()) => match eeg_ingest::Health::ready_note(&app.stats) {
            Some(note) => (StatusCode::OK, format!("ready; {note}\n")),
            None => (StatusCode::OK, "ready\n".to_string()),
        },
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

/// The live page as served: `assets/live.html` with the pages' shared style and script
/// (`assets/page.css`, `assets/page.js`) put in place of its markers, once, as the report's
/// are ([`eeg_offline::pages`]). One self-contained document: no asset is fetched, no other
/// address is asked anything.
fn live_page() -> &'static str {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| eeg_offline::pages::splice(include_str!("../assets/live.html")))
}

/// The live view of the sessions for a person.
async fn ui() -> impl IntoResponse {
    axum::response::Html(live_page())
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

// The browser helpers the integration tests use too (they need nothing but std).
#[cfg(test)]
#[path = "../tests/common/browser.rs"]
mod browser;

#[cfg(test)]
mod tests {
    use super::browser::{self, attribute};
    use super::*;

    #[test]
    fn the_live_page_is_one_document_with_nothing_to_fetch() {
        let template = include_str!("../assets/live.html");
        for marker in ["/*PAGE_CSS*/", "/*PAGE_JS*/"] {
            assert_eq!(template.matches(marker).count(), 1, "{marker}");
        }
        let page = live_page();
        assert!(!page.contains("/*PAGE_"), "a marker is left");
        // The shared style and script are in, whole.
        assert!(page.contains(include_str!("../assets/page.css")));
        assert!(page.contains(include_str!("../assets/page.js")));
        assert!(page.contains("--band-0: #4e79a7;") && page.contains("const Page = "));
        // Nothing is loaded from anywhere: no source, link, import or address.
        let lower = page.to_ascii_lowercase();
        for word in [
            "src=", "href=", "url(", "@import", "://", "<link", "<iframe",
        ] {
            assert!(!lower.contains(word), "the page has {word}");
        }
        // And the browser is told so: no request but to the service.
        assert!(page.contains("default-src 'none'") && page.contains("connect-src 'self'"));
        assert_eq!(page.matches("<html").count(), 1);
    }

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

    /// A record of session `id`'s window `w`: `channels` channels with `bands` in this
    /// order, powers that fall with frequency and wander with time, some channels not good.
    fn record(id: &str, w: u64, channels: usize, bands: &[&str]) -> Vec<u8> {
        use eeg_schema::{
            ChannelFeatures, Indices, ProcessedRecord, Quality, SessionMeta, WindowFeatures,
        };
        let meta = SessionMeta {
            session_id: id.into(),
            device_id: format!("{id}-device"),
            user_id: None,
            sample_rate_hz: 256.0,
            channels: (0..channels).map(|c| format!("E{c}")).collect(),
        };
        let t = w as f64;
        let power: Vec<Vec<f64>> = (0..channels)
            .map(|c| {
                (0..bands.len())
                    .map(|b| {
                        let wander = 1.0 + 0.5 * (t / 20.0 + c as f64 + b as f64).sin();
                        40.0 / (1.0 + 2.0 * b as f64).powi(2) * wander
                    })
                    .collect()
            })
            .collect();
        let total: Vec<f64> = power.iter().map(|p| p.iter().sum()).collect();
        let relative: Vec<Vec<f64>> = power
            .iter()
            .zip(&total)
            .map(|(p, s)| p.iter().map(|v| v / s).collect())
            .collect();
        let features: Vec<ChannelFeatures> = (0..channels)
            .map(|c| ChannelFeatures {
                band_power: &power[c],
                relative_power: &relative[c],
                total_power: total[c],
                quality: Quality {
                    rms_uv: 12.0,
                    ptp_uv: 80.0,
                    line_noise_ratio: 0.1,
                    flatline: c == 3,
                    railed: false,
                    artifact: c == 5 && w % 40 < 6,
                    good: c != 3 && !(c == 5 && w % 40 < 6),
                },
            })
            .collect();
        let window = WindowFeatures {
            window_index: w,
            start_ms: 1_732_270_000_000 + 1000 * w as i64,
            end_ms: 1_732_270_004_000 + 1000 * w as i64,
            settling: w < 4,
            band_names: bands,
            channels: &features,
            indices: Indices {
                engagement: Some(0.4 + 0.2 * (t / 30.0).sin()),
                theta_beta: Some(2.0 + (t / 45.0).cos()),
                alpha_theta: Some(1.2),
            },
        };
        let mut out = Vec::new();
        eeg_schema::encode_processed(
            &ProcessedRecord {
                meta: &meta,
                window: &window,
            },
            &mut out,
        );
        out
    }

    /// The real page, served by the real endpoints from a real registry, in a real browser:
    /// twelve sessions of 64 channels with five minutes of windows each, more windows
    /// arriving while it runs, a thirteenth session on the next page and a trigger event.
    #[test]
    fn the_page_draws_twelve_sessions_of_64_channels() {
        let stats = Arc::new(Stats::default());
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Health::default()),
            Arc::clone(&stats),
        )
        .unwrap();
        // Not alphabetical: the config's order, which the page must keep.
        let bands = ["theta", "alpha", "beta", "delta", "gamma"];
        let ids: Vec<String> = (0..13).map(|i| format!("s-{i:02}")).collect();
        let live = &stats.live;
        for w in 0..300 {
            for id in &ids {
                live.record(0, id.as_bytes(), &record(id, w, 64, &bands));
            }
        }
        let event = |id: &str| {
            format!(
                "{{\"schema\":\"analytics.trigger/1\",\"rule_id\":\"focus\",\"session_id\":\"{id}\",\
                 \"device_id\":\"d\",\"state\":\"fired\",\"metric\":\"indices.engagement\",\
                 \"value\":0.81,\"threshold\":0.8,\"window_index\":290,\"start_ms\":1732270290000,\
                 \"end_ms\":1732270294000}}"
            )
        };
        // The last session written is the most recent: first on the page.
        live.trigger(ids[12].as_bytes(), event(&ids[12]).as_bytes());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder = {
            let (stats, stop, ids) = (Arc::clone(&stats), Arc::clone(&stop), ids.clone());
            std::thread::spawn(move || {
                let mut w = 300;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for id in ids.iter().skip(1) {
                        stats
                            .live
                            .record(0, id.as_bytes(), &record(id, w, 64, &bands));
                    }
                    w += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
        };
        // A window tall enough for every card: all are drawn.
        let dom = browser::dom(&format!("http://{addr}/ui"), 6000, 30_000);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        feeder.join().unwrap();

        let body = dom.find("<body").unwrap();
        assert_eq!(attribute(&dom, body, "data-errors"), "", "{dom}");
        assert_eq!(attribute(&dom, body, "data-rendered"), "true");
        assert_eq!(attribute(&dom, body, "data-sessions"), "12");
        // s-00 was not updated since: it is on the second page.
        assert!(!dom.contains("data-session=\"s-00\""));
        assert!(dom.contains("13 active sessions, showing 1–12 by most recent"));
        for id in &ids[1..] {
            let card = dom.find(&format!("data-session=\"{id}\"")).unwrap();
            let card = dom[..card].rfind('<').unwrap();
            assert_eq!(attribute(&dom, card, "data-trend"), "true", "{id}");
            let end = card + dom[card..].find("</section>").unwrap();
            let html = &dom[card..end];
            // Five minutes of windows in each chart, every channel drawn.
            let points: Vec<&str> = html
                .match_indices("data-points=")
                .map(|(i, _)| attribute(html, html[..i].rfind('<').unwrap(), "data-points"))
                .collect();
            assert_eq!(points.len(), 2 + 64, "{id}");
            assert!(points.iter().all(|p| *p == "300"), "{id}: {points:?}");
            assert_eq!(html.matches("class=\"channel\"").count(), 64, "{id}");
            // Channel 3 is flat, the others good.
            assert_eq!(html.matches(">flatline</span>").count(), 1, "{id}");
        }
        // The bands in the config's order, in the legend and in every bar.
        let legend = &dom[dom.find("id=\"bands-legend\"").unwrap()..];
        let legend = &legend[..legend.find("</div>").unwrap()];
        let order: Vec<usize> = bands
            .iter()
            .map(|b| legend.find(&format!(">{b}<")).unwrap())
            .collect();
        assert!(order.is_sorted(), "{legend}");
        let bar = &dom[dom.find("class=\"stack\"").unwrap()..];
        let bar = &bar[..bar.find("</div>").unwrap()];
        let order: Vec<usize> = bands
            .iter()
            .map(|b| bar.find(&format!("title=\"{b} ")).unwrap())
            .collect();
        assert!(order.is_sorted(), "{bar}");
        // The trigger event, in UTC; the other sessions have none.
        assert_eq!(dom.matches("data-events=\"1\"").count(), 1);
        assert_eq!(dom.matches("data-events=\"0\"").count(), 11);
        assert!(dom.contains("<time>10:11:34 UTC</time>"), "{dom}");
        let clock = &dom[dom.find("id=\"clock\">").unwrap() + 11..];
        assert!(clock[..clock.find('<').unwrap()].ends_with(" UTC"));
    }

    /// Serves a registry whose sessions have records of `channels` channels; its address.
    fn serve_sessions(ids: &[String], channels: usize) -> (SocketAddr, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Health::default()),
            Arc::clone(&stats),
        )
        .unwrap();
        let bands = ["delta", "theta", "alpha", "beta", "gamma"];
        for w in 0..20 {
            for id in ids {
                stats
                    .live
                    .record(0, id.as_bytes(), &record(id, w, channels, &bands));
            }
        }
        (addr, stats)
    }

    /// Past the sessions that have a trend, a session is shown with the bars of its latest
    /// record and says it has no trend; the cards near the screen only are drawn.
    #[test]
    fn a_session_without_a_trend_shows_its_latest_window() {
        let mut ids: Vec<String> = (0..eeg_ingest::LiveSessions::TREND_SESSIONS)
            .map(|i| format!("t-{i:02}"))
            .collect();
        ids.push("no-trend".into());
        let (addr, _stats) = serve_sessions(&ids, 4);
        let dom = browser::dom(&format!("http://{addr}/ui"), 3000, 1000);
        let body = dom.find("<body").unwrap();
        assert_eq!(attribute(&dom, body, "data-errors"), "", "{dom}");
        assert_eq!(attribute(&dom, body, "data-sessions"), "12");
        // The last session started is first; it came when every trend was taken.
        let first = dom.find("<section").unwrap();
        assert_eq!(attribute(&dom, first, "data-session"), "no-trend");
        assert_eq!(attribute(&dom, first, "data-trend"), "false");
        let card = &dom[first..first + dom[first..].find("</section>").unwrap()];
        assert!(card.contains("No trend kept for this session"), "{card}");
        assert!(!card.contains("<canvas"));
        assert_eq!(card.matches("class=\"channel\"").count(), 4);
        assert_eq!(card.matches("<span title=\"delta ").count(), 4, "{card}");
        assert_eq!(card.matches(">flatline</span>").count(), 1);
        // The others have trends; in a window 1000 pixels tall, the cards far below are
        // left undrawn until scrolled to.
        assert_eq!(dom.matches("data-trend=\"true\"").count(), 11);
        let drawn = dom
            .match_indices("<canvas data-chart=\"indices\"")
            .filter(|(i, _)| dom[*i..*i + dom[*i..].find('>').unwrap()].contains("data-points="))
            .count();
        assert_eq!(dom.matches("<canvas data-chart=\"indices\"").count(), 11);
        assert!((1..11).contains(&drawn), "{drawn} drawn");
    }

    #[test]
    fn with_no_session_the_page_says_so() {
        let (addr, _stats) = serve_sessions(&[], 4);
        let dom = browser::dom(&format!("http://{addr}/ui"), 2000, 1000);
        let body = dom.find("<body").unwrap();
        assert_eq!(attribute(&dom, body, "data-errors"), "", "{dom}");
        assert_eq!(attribute(&dom, body, "data-rendered"), "true");
        assert_eq!(attribute(&dom, body, "data-sessions"), "0");
        assert!(dom.contains(
            "<div id=\"empty\">No active session: no record published in the last 5 min.</div>"
        ));
        assert!(dom.contains("0 active sessions · updated <span id=\"clock\">"));
        assert!(!dom.contains("<section"));
    }
}
