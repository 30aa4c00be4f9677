//! The writer thread: connects (and reconnects), takes the queue in batches and sends each
//! batch as pipelines, one per cluster slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{ConnectionInfo, Pipeline, RedisError};
use serde::Deserialize;

use crate::cause::{Cause, Problem};
use crate::config::RedisConfig;
use crate::keys::slot;
use crate::shared::{Shared, State, Update};

/// Most updates sent in one round of pipelines.
const BATCH: usize = 512;
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Sets the session's latest record and publishes it, only when its window ends later than
/// the one the key holds (`end_ms` is read from the stored JSON, whose head the service
/// writes). A window ending at the same time renews the key's TTL only: it is the same
/// window, processed again after a restart.
/// KEYS[1] latest key; ARGV: record, end_ms, ttl s, channel.
const LATEST: &str = r#"
local cur = redis.call('GET', KEYS[1])
local e = tonumber(ARGV[2])
if cur then
  local c = tonumber(string.match(cur, '"end_ms":(%-?%d+)'))
  if c and c > e then return 0 end
  if c and c == e then redis.call('EXPIRE', KEYS[1], ARGV[3]); return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"#;

/// Appends a trigger event to the session's stream under the ID `<end_ms>-<n>`, unless the
/// stream already holds it or a later window's event (then it was processed again).
/// KEYS[1] stream; ARGV: event JSON, end_ms, max length, ttl s.
const EVENT: &str = r#"
local e = tonumber(ARGV[2])
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if top[1] then
  local ms = tonumber(string.match(top[1][1], '^(%d+)'))
  if ms > e then return 0 end
  if ms == e then
    for _, entry in ipairs(redis.call('XRANGE', KEYS[1], e, e)) do
      if entry[2][2] == ARGV[1] then return 0 end
    end
  end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], ARGV[2] .. '-*', 'event', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// Appends an epoch record to the session's stream (ID chosen by Redis: epochs of late
/// events come after those of earlier onsets), unless one of the stream's last entries holds
/// the same bytes: an epoch published again after a restart comes within the few seconds the
/// service reads again, never hundreds of epochs later.
/// KEYS[1] stream; ARGV: epoch JSON, max length, ttl s.
const EPOCH: &str = r#"
for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 256)) do
  if entry[2][2] == ARGV[1] then return 0 end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'epoch', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// One node or a cluster, with the timeouts of the config.
pub(crate) struct Client {
    kind: Kind,
    /// Host and port of the URL, resolved before each connection so that a DNS failure is
    /// named as one even when the resolver only times out.
    host: Option<(String, u16)>,
    timeout: Duration,
}

enum Kind {
    Single(redis::Client, redis::AsyncConnectionConfig),
    Cluster(redis::cluster::ClusterClient),
}

impl Client {
    /// `ca`: the CA to trust instead of the system's, for `rediss://`.
    pub(crate) fn new(
        info: ConnectionInfo,
        config: &RedisConfig,
        ca: Option<redis::TlsCertificates>,
    ) -> Result<Client, RedisError> {
        let host = match info.addr() {
            redis::ConnectionAddr::Tcp(h, p) => Some((h.clone(), *p)),
            redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
            _ => None,
        };
        Ok(Client {
            kind: Client::kind(info, config, ca)?,
            host,
            timeout: config.timeout,
        })
    }

    fn kind(
        info: ConnectionInfo,
        config: &RedisConfig,
        ca: Option<redis::TlsCertificates>,
    ) -> Result<Kind, RedisError> {
        if config.cluster {
            let mut builder = redis::cluster::ClusterClientBuilder::new(vec![info])
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                // The writer retries itself, with the queue bounded meanwhile.
                .retries(1);
            if let Some(ca) = ca {
                builder = builder.certs(ca);
            }
            Ok(Kind::Cluster(builder.build()?))
        } else {
            let settings = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout));
            let client = match ca {
                Some(ca) => redis::Client::build_with_tls(info, ca)?,
                None => redis::Client::open(info)?,
            };
            Ok(Kind::Single(client, settings))
        }
    }

    /// `Err` with the cause when the host name does not resolve in time.
    async fn resolve(&self) -> Result<(), Cause> {
        let Some((host, port)) = &self.host else {
            return Ok(());
        };
        let dns = |detail: String| Cause::new(Problem::Dns, detail);
        match tokio::time::timeout(
            self.timeout,
            tokio::net::lookup_host((host.as_str(), *port)),
        )
        .await
        {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(_) => Ok(()),
                None => Err(dns(format!("{host} has no address"))),
            },
            Ok(Err(e)) => Err(dns(e.to_string())),
            Err(_) => Err(dns(format!(
                "no answer for {host} within {} s",
                self.timeout.as_secs_f64()
            ))),
        }
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        match &self.kind {
            Kind::Single(c, settings) => Ok(Conn::Single(
                c.get_multiplexed_async_connection_with_config(settings)
                    .await?,
            )),
            Kind::Cluster(c) => Ok(Conn::Cluster(c.get_async_connection().await?)),
        }
    }
}

#[derive(Clone)]
enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn send(&self, pipe: &Pipeline) -> Result<(), RedisError> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async::<()>(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async::<()>(&mut c).await,
        }
    }

    async fn ping(&self) -> Result<(), RedisError> {
        async fn ping(c: &mut impl ConnectionLike) -> Result<(), RedisError> {
            redis::cmd("PING").query_async::<()>(c).await
        }
        match self.clone() {
            Conn::Single(mut c) => ping(&mut c).await,
            Conn::Cluster(mut c) => ping(&mut c).await,
        }
    }
}

pub(crate) fn run(shared: Arc<Shared>, client: Client) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            shared.failed(Cause::new(Problem::Runtime, e.to_string()));
            return;
        }
    };
    rt.block_on(write_loop(&shared, &client));
}

async fn write_loop(shared: &Shared, client: &Client) {
    let mut conn: Option<Conn> = None;
    let mut retry = RETRY_MIN;
    loop {
        let stopping = shared.stopping.load(Ordering::Acquire);
        if conn.is_none() {
            if stopping {
                return;
            }
            match connect(shared, client).await {
                Ok(c) => {
                    conn = Some(c);
                    retry = RETRY_MIN;
                    shared.up();
                }
                Err(cause) => {
                    shared.failed(cause);
                    // Meanwhile the queue keeps its newest updates only.
                    backoff(shared, retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            }
        }
        let batch: Vec<Update> = {
            let mut q = shared.queue.lock().expect("redis queue lock");
            let n = q.len().min(BATCH);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            if stopping {
                return;
            }
            wait(shared, Duration::from_secs(1)).await;
            continue;
        }
        let Some(c) = conn.clone() else { continue };
        let plan = plan(shared, &batch);
        let results = futures::future::join_all(plan.iter().map(|(p, _)| c.send(p))).await;
        let (mut broken, mut all_ok) = (false, true);
        for ((_, n), r) in plan.iter().zip(results) {
            match r {
                Ok(()) => {
                    shared.written.fetch_add(*n, Ordering::Relaxed);
                }
                Err(e) => {
                    all_ok = false;
                    shared.dropped.fetch_add(*n, Ordering::Relaxed);
                    broken |= e.is_io_error()
                        || e.is_timeout()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.is_unrecoverable_error();
                    shared.failed(Cause::of(&e, shared.config.cluster));
                }
            }
        }
        if broken {
            conn = None;
        } else if all_ok && shared.state() != State::Up {
            shared.up();
        }
    }
}

/// A connection that answered: the host name resolved first, so that a DNS failure is named
/// as one, then a round trip, so that a wrong password or a cluster-mode mismatch shows now,
/// not at the first write.
async fn connect(shared: &Shared, client: &Client) -> Result<Conn, Cause> {
    client.resolve().await?;
    let cause = |e: RedisError| Cause::of(&e, shared.config.cluster);
    let c = client.connect().await.map_err(cause)?;
    c.ping().await.map_err(cause)?;
    Ok(c)
}

/// Sleeps for `d`, or until records arrive (whichever comes first).
async fn wait(shared: &Shared, d: Duration) {
    let _ = tokio::time::timeout(d, shared.wake.notified()).await;
}

/// Sleeps for `d` before the next connection attempt; only a stop ends it early, not the
/// records that keep arriving meanwhile.
async fn backoff(shared: &Shared, d: Duration) {
    if !shared.stopping.load(Ordering::Acquire) {
        let _ = tokio::time::timeout(d, shared.stop.notified()).await;
    }
}

/// The head of a record or event: what the keys and the ordering need.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    session_id: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    user_id: Option<std::borrow::Cow<'a, str>>,
    end_ms: i64,
}

/// The batch's commands, one pipeline per cluster slot (one pipeline in all on a single
/// node), each with the number of updates it carries. Within a slot the order of the
/// batch is kept, so a session's windows reach its channel in order.
fn plan(shared: &Shared, batch: &[Update]) -> Vec<(Pipeline, u64)> {
    let c = &shared.config;
    let ttl = c.ttl.as_secs().max(1);
    let keys = &shared.keys;
    let mut by_slot: BTreeMap<u16, (Pipeline, u64)> = BTreeMap::new();
    fn at<'m>(
        by_slot: &'m mut BTreeMap<u16, (Pipeline, u64)>,
        cluster: bool,
        key: &str,
    ) -> &'m mut (Pipeline, u64) {
        let s = if cluster { slot(key) } else { 0 };
        by_slot.entry(s).or_insert_with(|| (Pipeline::new(), 0))
    }
    for u in batch {
        let (bytes, window) = match u {
            Update::Window(b) => (b, true),
            Update::Trigger(b) => (b, false),
            Update::Epoch { session_id, record } => {
                let stream = keys.epochs(session_id);
                let e = at(&mut by_slot, c.cluster, &stream);
                e.0.cmd("EVAL")
                    .arg(EPOCH)
                    .arg(1)
                    .arg(&stream)
                    .arg(record.as_slice())
                    .arg(c.events_max)
                    .arg(ttl)
                    .ignore();
                e.1 += 1;
                continue;
            }
        };
        let Ok(h) = serde_json::from_slice::<Head<'_>>(bytes) else {
            // The service's own encoder wrote it; never expected.
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            shared.failed(Cause::new(Problem::BadRecord, String::new()));
            continue;
        };
        if window {
            let latest = keys.latest(&h.session_id);
            let e = at(&mut by_slot, c.cluster, &latest);
            e.0.cmd("EVAL")
                .arg(LATEST)
                .arg(1)
                .arg(&latest)
                .arg(bytes.as_slice())
                .arg(h.end_ms)
                .arg(ttl)
                .arg(keys.live(&h.session_id))
                .ignore();
            e.1 += 1;
            if let Some(user) = &h.user_id {
                let index = keys.user(user);
                let e = at(&mut by_slot, c.cluster, &index);
                // GT: a session's score only moves forward; sessions older than the TTL
                // leave the index as their latest key expires.
                e.0.cmd("ZADD")
                    .arg(&index)
                    .arg("GT")
                    .arg(h.end_ms)
                    .arg(h.session_id.as_ref())
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&index)
                    .arg("-inf")
                    .arg(format!("({}", h.end_ms - (ttl as i64) * 1000))
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&index)
                    .arg(ttl)
                    .ignore();
            }
        } else {
            let stream = keys.events(&h.session_id);
            let e = at(&mut by_slot, c.cluster, &stream);
            e.0.cmd("EVAL")
                .arg(EVENT)
                .arg(1)
                .arg(&stream)
                .arg(bytes.as_slice())
                .arg(h.end_ms.max(0))
                .arg(c.events_max)
                .arg(ttl)
                .ignore();
            e.1 += 1;
        }
    }
    by_slot.into_values().collect()
}
