//! Bench-only: the floor for the y-websocket dialect. A bare relay on the
//! same stack as Tandem (tokio, axum WebSocket): `/ws/<room>`, a client's
//! sync step 1 answered with an empty step 2, every other message copied to
//! the room's other connections. No document, no checks, no log — what any
//! y-websocket server must at least spend per delivery on this machine.
//! `scripts/bench-dialects.sh` runs it as `floor-ywebsocket`.
//!
//! Usage: `cargo run --release --example ywebsocket_floor -- 127.0.0.1:3500`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::UnboundedSender<Bytes>)>>>>;

/// y-protocols sync step 2 carrying an empty Yjs update.
const EMPTY_STEP_2: &[u8] = &[0, 1, 2, 0, 0];

#[tokio::main]
async fn main() {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3500".into());
    let rooms: Rooms = Arc::default();
    let app = Router::new()
        .route("/ws/{*room}", get(upgrade))
        .with_state(rooms);
    let listener = tokio::net::TcpListener::bind(&bind).await.unwrap();
    println!("listening on {bind}");
    axum::serve(listener, app).await.unwrap();
}

async fn upgrade(
    ws: WebSocketUpgrade,
    Path(room): Path<String>,
    State(rooms): State<Rooms>,
) -> impl IntoResponse {
    ws.on_upgrade(move |socket| serve(socket, room, rooms))
}

async fn serve(socket: WebSocket, room: String, rooms: Rooms) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    rooms
        .lock()
        .unwrap()
        .entry(room.clone())
        .or_default()
        .push((id, tx.clone()));
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if b.starts_with(&[0, 0]) {
                        let _ = tx.send(Bytes::from_static(EMPTY_STEP_2));
                    } else {
                        for (peer, ptx) in rooms.lock().unwrap().get(&room).into_iter().flatten() {
                            if *peer != id {
                                let _ = ptx.send(b.clone());
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            Some(out) = rx.recv() => {
                if sink.send(Message::Binary(out)).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(members) = rooms.lock().unwrap().get_mut(&room) {
        members.retain(|(p, _)| *p != id);
    }
}
