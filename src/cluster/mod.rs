//! Cluster mode (`--redis-url`): several Tandem nodes behind a load balancer
//! serve the same sessions, sharing one PostgreSQL database and one Redis.
//!
//! # What is the truth, and what is a hint
//!
//! **PostgreSQL is the source of truth.** An edit is acknowledged only once
//! its log row is committed, exactly as on one node. Each document's rows
//! carry a per-document sequence (`doc_seq` 1, 2, 3, … handed out from the
//! document's `files.log_head` inside the appending transaction, under that
//! row's lock, so numbers are gap-free and in commit order whichever node
//! commits). A loaded copy knows which rows it holds (`through`, plus rows
//! heard of out of order).
//!
//! **Redis carries notifications, never the guarantee.** After a group
//! commit the node publishes its rows (`{doc, seq}` + the update each, one
//! message per commit); a node holding the document
//! applies what it lacks and relays it to its sockets. Whenever the copy
//! may have missed something it reads the log back (`doc_seq > through`):
//! - a gap (row `n + 2` heard of while `n + 1` was not) still open after
//!   [`GAP_GRACE`];
//! - a (re)connect to Redis: every loaded document catches up;
//! - a periodic check (`--cluster-check-ms`): the log heads of every loaded
//!   document's session, one query per session, catch-up when behind. This
//!   alone keeps nodes converging while Redis is down.
//!
//! Applying a row twice changes nothing (Yjs), so at-least-once delivery
//! plus catch-up converges; an update that arrives before its causal
//! predecessors waits in the document, as on one node.
//!
//! # Why plain pub/sub on one channel
//!
//! Streams per document would make Redis hold a second copy of the log
//! that PostgreSQL already holds durably, with trimming to tune and a
//! consumer position per node per document; the gap check above already
//! recovers anything pub/sub drops, so pub/sub's at-most-once delivery is
//! enough. One channel (`tandem:cluster`) for everything: nodes subscribe
//! once, whatever documents they load, and drop what they do not hold (a
//! channel per document would cost a SUBSCRIBE per load, and per-document
//! ordering is not needed: sequence numbers order updates). Room events
//! (chat, typing, file and per-user events) go the same way instead of
//! through socketioxide-redis: its stock driver holds a plain multiplexed
//! connection that does not survive a Redis restart (redis-rs #1190) and
//! its adapter would make every room query of this code asynchronous and
//! remote. Here the publisher is a [`redis::aio::ConnectionManager`]
//! (reconnects by itself) fed by a bounded queue, so a slow or absent Redis
//! never blocks an edit; the subscriber is a loop that re-subscribes with
//! backoff, checks its connection with PINGs, and resynchronises after
//! every reconnect.
//!
//! # Presence, awareness and node failure
//!
//! Each node tells the others, per main document, the full list of users
//! connected through it (on every local join, leave or role change, and in
//! answer to a node that just loaded the document); receivers hold them as
//! pseudo-connections, so `user-joined`/`user-left` and the participant list
//! work as on one node. Awareness states are relayed with their owning
//! node; a node cannot change states another node's connections own.
//! Nodes publish a heartbeat every `--cluster-heartbeat-ms`; a node not
//! heard from for `--cluster-node-timeout-ms` (it died, or its link to
//! Redis did) is dropped everywhere: its users leave and their cursors go.
//! Its clients reconnect to any node and resync (the log has every
//! acknowledged edit). A node shutting down says so (`Bye`) at once. A node
//! that cannot hear (its own subscription is down) judges no one: a Redis
//! outage does not make every other node's users leave.
//!
//! # What stays per node
//!
//! Slow-consumer kicks (a socket's queue is on its own node), rate limits
//! (per connection), the LRU and snapshots: compaction merges stored state,
//! the node's live state and the log rows it read, under the document's row
//! lock, and deletes exactly the rows it folded (`store::sql`), so two
//! nodes compacting one document lose nothing. `GET /api/sessions/{id}`
//! lists as online the users the answering node knows of: those connected
//! to it, and those of other nodes if it has the session loaded.

mod fanout;
mod receive;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use fanout::ClusterFanout;
pub use receive::Receiver;
use wire::{Header, Msg};

/// The one Redis channel every node publishes to and subscribes to.
pub const CHANNEL: &str = "tandem:cluster";

/// How long a gap in a document's rows may stay open before the node reads
/// the missing rows from the log (notifications usually fill it sooner:
/// two nodes committing at once publish in either order).
pub const GAP_GRACE: Duration = Duration::from_millis(300);

/// Messages waiting for Redis; beyond this the newest are dropped (and
/// counted): updates come back through the log, and ephemeral events are
/// worth nothing late.
const QUEUE: usize = 16_384;

/// This node's link to the others.
pub struct Cluster {
    node: String,
    client: redis::Client,
    publisher: ConnectionManager,
    queue: mpsc::Sender<Vec<u8>>,
    subscribed: AtomicBool,
    heartbeat: Duration,
    node_timeout: Duration,
    check: Duration,
    /// Other nodes, when each was last heard from.
    nodes: Mutex<HashMap<String, Instant>>,
}

/// The refusal for a configuration cluster mode cannot work with.
pub fn check_config(c: &crate::config::Config) -> anyhow::Result<()> {
    if c.redis_url.is_none() {
        return Ok(());
    }
    if !c.database_url.starts_with("postgres://") && !c.database_url.starts_with("postgresql://") {
        anyhow::bail!(
            "--redis-url (cluster mode) needs PostgreSQL: every node must share one database, \
             and {} is an embedded SQLite file; set --database-url postgres://…",
            c.database_url.split('?').next().unwrap_or_default()
        );
    }
    if !c.update_log {
        anyhow::bail!(
            "--redis-url (cluster mode) needs the update log: nodes catch up from its rows; \
             drop --update-log false"
        );
    }
    Ok(())
}

/// `<host name>-<random>`: unique per start, readable in logs.
fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

impl Cluster {
    /// Connects to Redis (it must be reachable at start-up) and starts the
    /// publisher. `None` without `--redis-url`. The caller has run
    /// [`check_config`] (before it opened the store).
    pub async fn connect(c: &crate::config::Config) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(url) = &c.redis_url else {
            return Ok(None);
        };
        let client = redis::Client::open(url.as_str()).context("--redis-url")?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let publisher = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), cfg),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(Into::into))
        .with_context(|| format!("cannot reach Redis at {}", redacted(url)))?;
        // A node restarted under the same --node-id is another node to the
        // others: what its previous run held must expire, not stay listed
        // under a name that lives on.
        let node = match &c.node_id {
            Some(id) => format!("{id}#{:04x}", rand::random::<u16>()),
            None => default_node_id(),
        };
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(publish_loop(publisher.clone(), rx));
        tracing::info!(node_id = %node, redis = %redacted(url), "cluster mode");
        Ok(Some(Arc::new(Self {
            node,
            client,
            publisher,
            queue,
            subscribed: AtomicBool::new(false),
            heartbeat: Duration::from_millis(c.cluster_heartbeat_ms.max(50)),
            node_timeout: Duration::from_millis(c.cluster_node_timeout_ms.max(200)),
            check: Duration::from_millis(c.cluster_check_ms.max(100)),
            nodes: Mutex::new(HashMap::new()),
        })))
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Queues a message for the other nodes (never waits).
    pub fn publish(&self, msg: Msg, payload: &[u8]) {
        let header = Header {
            node: self.node.clone(),
            at: crate::model::now_ms() as u64,
            msg,
        };
        if self.queue.try_send(wire::encode(&header, payload)).is_err() {
            metrics::counter!("tandem_cluster_dropped_total").increment(1);
        }
    }

    /// Readiness: subscribed, and Redis answers a PING within a second.
    pub async fn ready(&self) -> Result<(), &'static str> {
        if !self.subscribed.load(Ordering::Acquire) {
            return Err("redis subscription down");
        }
        let mut conn = self.publisher.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(Duration::from_secs(1), ping).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err("redis unreachable"),
        }
    }

    /// Starts subscribing and the watch loop (heartbeats, node expiry, gap
    /// and log-head checks); both end when `token` is cancelled.
    pub fn start(self: &Arc<Self>, receiver: Arc<Receiver>, token: CancellationToken) {
        tokio::spawn(self.clone().subscribe_loop(receiver.clone(), token.clone()));
        tokio::spawn(self.clone().watch_loop(receiver, token));
    }

    /// Tells the other nodes this one is going (they drop its presence at
    /// once instead of after the node timeout).
    pub async fn say_goodbye(&self) {
        let header = Header {
            node: self.node.clone(),
            at: crate::model::now_ms() as u64,
            msg: Msg::Bye,
        };
        let mut conn = self.publisher.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(CHANNEL).arg(wire::encode(&header, &[]));
        let bye = cmd.query_async::<i64>(&mut conn);
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    }

    /// Records that `node` spoke; `true` if it was not known (new, or
    /// dropped after a silence).
    fn heard(&self, node: &str) -> bool {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.insert(node.to_owned(), Instant::now()).is_none()
    }

    /// Restarts every node's silence count (after this node was deaf).
    fn hear_all_again(&self) {
        let now = Instant::now();
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        for t in nodes.values_mut() {
            *t = now;
        }
    }

    fn forget(&self, node: &str) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
    }

    fn expired(&self, now: Instant) -> Vec<String> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = nodes
            .iter()
            .filter(|(_, t)| now.duration_since(**t) > self.node_timeout)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            nodes.remove(n);
        }
        gone
    }

    async fn subscribe_loop(self: Arc<Self>, rx: Arc<Receiver>, token: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut connected_before = false;
        loop {
            let attempt = async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.subscribe(CHANNEL).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            let ps = tokio::select! {
                _ = token.cancelled() => return,
                r = tokio::time::timeout(Duration::from_secs(3), attempt) => r,
            };
            let ps = match ps {
                Ok(Ok(ps)) => ps,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to Redis");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(_) => {
                    tracing::warn!("subscribing to Redis timed out");
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            if connected_before {
                metrics::counter!("tandem_cluster_redis_reconnects_total").increment(1);
                tracing::info!(node_id = %self.node, "Redis subscription restored; catching up");
            }
            connected_before = true;
            self.hear_all_again();
            self.subscribed.store(true, Ordering::Release);
            metrics::gauge!("tandem_cluster_redis_up").set(1.0);
            // Anything published while this node was not listening is in
            // the log, and the others' presence is asked for again.
            tokio::spawn(rx.clone().resync());
            let (mut sink, mut stream) = ps.split();
            let mut ping = tokio::time::interval(self.heartbeat.max(Duration::from_millis(500)));
            ping.tick().await;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    m = stream.next() => match m {
                        Some(m) => rx.handle(m.get_payload_bytes()).await,
                        None => break,
                    },
                    _ = ping.tick() => {
                        let alive = tokio::time::timeout(Duration::from_secs(2), sink.ping::<redis::Value>()).await;
                        if !matches!(alive, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            self.subscribed.store(false, Ordering::Release);
            metrics::gauge!("tandem_cluster_redis_up").set(0.0);
            tracing::warn!(node_id = %self.node, "lost the Redis subscription; reconnecting");
        }
    }

    async fn watch_loop(self: Arc<Self>, rx: Arc<Receiver>, token: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = Instant::now() - self.heartbeat;
        let mut last_check = Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            if now.duration_since(last_beat) >= self.heartbeat {
                last_beat = now;
                self.publish(Msg::Heartbeat, &[]);
            }
            // While this node hears nothing it cannot tell who died: it
            // judges silences only while subscribed (a Redis outage does
            // not make every other node's users leave).
            if self.subscribed.load(Ordering::Acquire) {
                for node in self.expired(now) {
                    tracing::warn!(node_id = %node, "node not heard from; dropping its presence");
                    rx.drop_node(&node);
                }
            }
            let manager = rx.manager();
            manager.catch_up_gaps(GAP_GRACE).await;
            if now.duration_since(last_check) >= self.check {
                last_check = now;
                manager.check_heads().await;
            }
        }
    }
}

/// Publishes queued messages, pipelining whatever is queued at once.
async fn publish_loop(mut conn: ConnectionManager, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(64);
    let mut failing = false;
    while rx.recv_many(&mut batch, 64).await > 0 {
        let mut pipe = redis::pipe();
        for m in &batch {
            pipe.cmd("PUBLISH").arg(CHANNEL).arg(m).ignore();
        }
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                metrics::counter!("tandem_cluster_published_total").increment(batch.len() as u64);
                if failing {
                    tracing::info!("publishing to Redis again");
                    failing = false;
                }
            }
            Err(e) => {
                metrics::counter!("tandem_cluster_publish_failures_total")
                    .increment(batch.len() as u64);
                if !failing {
                    tracing::warn!(error = %e, "publishing to Redis failed; other nodes catch up from the log");
                    failing = true;
                }
            }
        }
        batch.clear();
    }
}

/// A Redis URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
