//! What nodes say to each other over the Redis channel: one message per
//! Redis message, a JSON header line (who sent it, when, what it is) and,
//! for updates and awareness, the Yjs bytes after the newline as they are
//! (no base64).

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::Participant;

/// A message's header: the sending node, its clock, the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub node: String,
    /// Unix milliseconds when it was sent (the cross-node lag metric).
    pub at: u64,
    #[serde(flatten)]
    pub msg: Msg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub enum Msg {
    /// A group commit's rows: `(doc, seq, length)` each, the updates
    /// concatenated in the payload in that order. A hint: the receiver
    /// fills any gap from the log.
    Updates { rows: Vec<(String, i64, usize)> },
    /// Awareness states of the sender's connections; the payload is the
    /// awareness update.
    Awareness { doc: String },
    /// A native-namespace event for the sockets of `rooms` (chat, typing,
    /// file events, per-user events), but socket `except`.
    Emit {
        rooms: Vec<String>,
        except: Option<String>,
        event: String,
        data: serde_json::Value,
    },
    /// Every user connected to `doc` through the sender, replacing what it
    /// said before.
    Presence {
        doc: String,
        users: Vec<Participant>,
    },
    /// The sender loaded `doc`: nodes holding it answer with their
    /// presence and awareness.
    Hello { doc: String },
    /// The sender is alive.
    Heartbeat,
    /// The sender is shutting down: drop its presence now.
    Bye,
    /// Roles in `session` changed (of user `only`, or of everyone):
    /// recompute those of local connections, removing who lost access.
    Roles {
        session: String,
        only: Option<String>,
    },
    /// `doc` was deleted: close it for local connections with `error`
    /// and drop it from memory.
    Close { doc: String, error: Error },
}

/// Encodes a message: the header, `\n`, the payload.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Decodes a message; `None` for anything that is not one.
pub fn decode(bytes: &[u8]) -> Option<(Header, &[u8])> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let header = serde_json::from_slice(&bytes[..nl]).ok()?;
    Some((header, &bytes[nl + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn messages_round_trip_with_binary_payloads() {
        let cases = [
            Msg::Updates {
                rows: vec![("s~f".into(), 7, 2), ("s".into(), 3, 2)],
            },
            Msg::Emit {
                rooms: vec!["session:s".into()],
                except: Some("sid".into()),
                event: "chat-message".into(),
                data: serde_json::json!({"content": "line\nbreak"}),
            },
            Msg::Close {
                doc: "s".into(),
                error: Error::new(ErrorCode::SessionNotFound, "gone").with_session("s"),
            },
            Msg::Heartbeat,
        ];
        for msg in cases {
            let h = Header {
                node: "a".into(),
                at: 1,
                msg,
            };
            let payload = [0u8, b'\n', 255, 1];
            let bytes = encode(&h, &payload);
            let (back, p) = decode(&bytes).unwrap();
            assert_eq!(back, h);
            assert_eq!(p, payload);
        }
        assert!(decode(b"no newline").is_none());
        assert!(decode(b"{\"node\":1}\n").is_none());
    }
}
