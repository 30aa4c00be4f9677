//! What the cache is told: where Redis is, how to reach it, what to keep there; and the
//! settings that cannot work, each named in one line.

use std::time::Duration;

/// How the service reaches Redis, and what it keeps there.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// Overrides the URL's user (an ElastiCache RBAC user).
    pub username: Option<String>,
    /// Overrides the URL's password (the AUTH token, e.g. from Secrets Manager).
    pub password: Option<String>,
    /// A cluster (an ElastiCache configuration endpoint): keys are routed by slot.
    pub cluster: bool,
    pub key_prefix: String,
    /// Lifetime of every key, renewed by each write: an ended session disappears by itself.
    pub ttl: Duration,
    /// Readiness depends on Redis accepting writes.
    pub required: bool,
    /// Updates kept while Redis is slow or down; beyond it the oldest are dropped.
    pub queue: usize,
    /// Trigger events kept per session stream (approximately: `MAXLEN ~`).
    pub events_max: usize,
    /// Bound on connecting and on each round trip.
    pub timeout: Duration,
    /// PEM file of the CA(s) to trust for `rediss://` instead of the system's (a self-hosted
    /// Redis with a private CA; ElastiCache's certificates chain to a public root the
    /// system store holds).
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            username: None,
            password: None,
            cluster: false,
            key_prefix: "eeg:".into(),
            ttl: Duration::from_secs(300),
            required: false,
            queue: 10_000,
            events_max: 1_000,
            timeout: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }
}

/// A setting that cannot work; one line naming it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("REDIS_URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "REDIS_KEY_PREFIX {prefix:?} has a brace, which would make it the cluster hash tag of every key"
    )]
    Prefix { prefix: String },
    #[error("{name} must be at least 1")]
    Zero { name: &'static str },
    #[error("REDIS_TLS_CA_FILE {path}: {reason}")]
    CaFile { path: String, reason: String },
}

/// The URL with its password replaced, for logs and `/health`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_string(),
    }
}

/// The CA file's PEM, checked to hold at least one certificate, for a `rediss://` URL only.
pub(crate) fn read_ca(
    path: &std::path::Path,
    info: &redis::ConnectionInfo,
) -> Result<redis::TlsCertificates, ConfigError> {
    let error = |reason: String| ConfigError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return Err(error(
            "set, but REDIS_URL is redis:// (no TLS); use rediss://".into(),
        ));
    }
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(error(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    })
}
