//! Tandem: a self-hosted real-time collaborative code-editing server.
//!
//! Browser editors (Monaco + Yjs) and y-socket.io clients connect over
//! Socket.IO; Tandem holds each session's document as a `yrs` CRDT, relays
//! edits, presence, chat and typing, enforces roles and limits, and persists
//! every accepted update durably.
//!
//! Module map (data flows adapter → core → store / fan-out):
//! - [`config`]: the CLI and `TANDEM_*` environment.
//! - [`server`]: wiring; `run(listener, config, shutdown)`; [`net`]: closing a client's connection from the server.
//! - [`protocol`]: Socket.IO adapters, native (`/`) and y-socket.io (`/yjs|<id>`).
//! - [`http`]: health, metrics and the session API.
//! - [`core`]: documents, presence, limits, the update log and snapshots. No sockets, no SQL.
//! - [`store`]: the `Store` trait over SQLite and PostgreSQL.
//! - [`auth`]: JWTs and the role rule; [`model`], [`error`]: shared types.
//! - [`trace`]: real editing traces as Yjs updates (benches, tests, load generator).
//! - [`client`]: a minimal Socket.IO client for tests and the load generator.
//! - [`telemetry`]: the described Prometheus series and the log format.

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod core;
pub mod error;
pub mod http;
pub mod model;
pub mod net;
pub mod protocol;
pub mod server;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod trace;
