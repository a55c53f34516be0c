//! The live view (`--ui`): a page and a WebSocket that show the swarm as it is.
//!
//! The driver owns a [`Live`]: while at least one page is connected it builds a snapshot of
//! the Session at most every [`SNAPSHOT_EVERY`] (never otherwise, so an unwatched download
//! pays nothing) and forwards a few Session events as they happen. Each client has a bounded
//! queue; a slow client loses its oldest messages, never slows the driver. Messages are JSON
//! (schema 1, documented in README.md "Live view"); a simulator replay can produce the same
//! messages and feed the same page.

pub mod server;

use std::sync::Arc;
use std::time::Duration;

use hive_core::metainfo::Metainfo;
use hive_core::session::{
    Event, LeaveReason, PeerSnapshot, PieceView, Session, TorrentId, TorrentState,
};
use hive_core::time::Instant;
use serde_json::{Value, json};
use smol::channel::Sender;

/// The version of the message schema; bumped on any incompatible change.
pub const SCHEMA: u32 = 1;
/// Snapshots are sent at most this often.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// Events forwarded between two snapshots at most (a fast download verifies thousands of
/// pieces a second): fewer than a client's queue holds, so a burst cannot push a snapshot out.
const EVENTS_PER_SNAPSHOT: usize = server::CLIENT_QUEUE / 2;

/// The connected pages and what the snapshots need besides the Session.
pub struct Live {
    clients: Vec<Sender<Arc<str>>>,
    next: Instant,
    hello: Arc<str>,
    /// The last tracker error or warning (the Session reports no successes).
    tracker: Value,
    /// Events that may still be forwarded before the next snapshot.
    events_left: usize,
}

impl Live {
    /// A view of this torrent with no page connected yet.
    pub fn new(meta: &Metainfo) -> Live {
        Live {
            clients: Vec::new(),
            next: Instant::ZERO,
            hello: hello(meta).to_string().into(),
            tracker: Value::Null,
            events_left: EVENTS_PER_SNAPSHOT,
        }
    }

    /// A page connected: greet it and send a snapshot at the next turn.
    pub fn add(&mut self, client: Sender<Arc<str>>, now: Instant) {
        let _ = client.force_send(self.hello.clone());
        self.clients.push(client);
        self.next = now;
    }

    /// When the driver must wake for the next snapshot, if a page is connected.
    pub fn wake_at(&self) -> Option<Instant> {
        (!self.clients.is_empty()).then_some(self.next)
    }

    /// Sends a snapshot if a page is connected and one is due.
    pub fn tick(&mut self, now: Instant, session: &Session, torrent: TorrentId, meta: &Metainfo) {
        self.clients.retain(|c| !c.is_closed());
        if self.clients.is_empty() || now < self.next {
            return;
        }
        self.next = now + SNAPSHOT_EVERY;
        self.events_left = EVENTS_PER_SNAPSHOT;
        let msg = snapshot(now, session, torrent, meta, &self.tracker);
        self.broadcast(msg.to_string().into());
    }

    /// Forwards an event pages show (peers, pieces, trackers); remembers tracker status.
    pub fn event(&mut self, now: Instant, e: &Event) {
        match e {
            Event::TrackerError { url, message, .. } => {
                self.tracker = json!({"url": url, "status": "error", "message": message});
            }
            Event::TrackerWarning { url, message, .. } => {
                self.tracker = json!({"url": url, "status": "warning", "message": message});
            }
            _ => {}
        }
        if self.clients.is_empty() || self.events_left == 0 {
            return;
        }
        if let Some(v) = event(now, e) {
            self.events_left -= 1;
            self.broadcast(v.to_string().into());
        }
    }

    fn broadcast(&mut self, msg: Arc<str>) {
        // force_send drops the oldest queued message of a slow client.
        self.clients.retain(|c| c.force_send(msg.clone()).is_ok());
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn secs(t: Instant) -> f64 {
    t.as_micros() as f64 / 1e6
}

/// `{"type":"hello", ...}`: the schema version and what does not change.
pub fn hello(meta: &Metainfo) -> Value {
    json!({
        "type": "hello",
        "schema": SCHEMA,
        "source": "live",
        "snapshot_interval_ms": SNAPSHOT_EVERY.as_millis() as u64,
        "torrent": {
            "name": meta.name(),
            "info_hash": hex(meta.info_hash().as_bytes()),
            "size": meta.total_length(),
            "piece_length": meta.piece_length(),
            "pieces": meta.piece_count(),
            "files": meta.files().len(),
            "private": meta.is_private(),
        },
    })
}

fn peer(p: &PeerSnapshot, pieces: u32) -> Value {
    json!({
        "id": p.conn.0,
        "addr": p.addr.to_string(),
        "client": p.client,
        "outgoing": p.outgoing,
        "am_choking": p.am_choking,
        "am_interested": p.am_interested,
        "peer_choking": p.peer_choking,
        "peer_interested": p.peer_interested,
        "snubbed": p.snubbed,
        "download_rate": p.download_rate,
        "upload_rate": p.upload_rate,
        "progress": if pieces == 0 { 1.0 } else { f64::from(p.pieces) / f64::from(pieces) },
    })
}

/// `{"type":"snapshot", ...}`: totals, every joined peer, every piece.
pub fn snapshot(
    now: Instant,
    session: &Session,
    torrent: TorrentId,
    meta: &Metainfo,
    tracker: &Value,
) -> Value {
    let n = meta.piece_count();
    let totals = session.stats(torrent).map(|s| {
        let eta = (s.left > 0 && s.download_rate > 0).then(|| s.left.div_ceil(s.download_rate));
        json!({
            "state": match s.state {
                TorrentState::Running if s.left == 0 => "seeding",
                TorrentState::Running => "downloading",
                TorrentState::Paused => "paused",
                TorrentState::Errored => "error",
                TorrentState::Removing => "stopped",
            },
            "progress": if s.pieces_total == 0 { 1.0 } else {
                f64::from(s.pieces_have) / f64::from(s.pieces_total)
            },
            "pieces_have": s.pieces_have,
            "pieces_total": s.pieces_total,
            "left": s.left,
            "downloaded": s.downloaded,
            "uploaded": s.uploaded,
            "wasted": s.wasted,
            "download_rate": s.download_rate,
            "upload_rate": s.upload_rate,
            "eta": eta,
            "ratio": s.uploaded as f64 / meta.total_length().max(1) as f64,
            "peers_connected": s.peers_connected,
            "peers_known": s.peers_known,
            "hash_failures": s.hash_failures,
        })
    });
    let peers: Vec<Value> = session
        .peer_snapshots(torrent)
        .unwrap_or_default()
        .iter()
        .map(|p| peer(p, n))
        .collect();
    let pieces = session.piece_snapshots(torrent).unwrap_or_default();
    let states: String = pieces
        .iter()
        .map(|(v, _)| match v {
            PieceView::Have => 'h',
            PieceView::Downloading => 'd',
            PieceView::Missing => 'm',
        })
        .collect();
    let avail: Vec<u32> = pieces.iter().map(|(_, a)| *a).collect();
    json!({
        "type": "snapshot",
        "t": secs(now),
        "torrent": totals,
        "peers": peers,
        "pieces": {"state": states, "availability": avail},
        "tracker": tracker,
    })
}

/// `{"type":"event", "event": ...}` for the events a page shows; `None` for the others.
pub fn event(now: Instant, e: &Event) -> Option<Value> {
    let mut v = match e {
        Event::PeerJoined {
            conn, addr, client, ..
        } => {
            json!({"event": "peer_joined", "id": conn.0, "addr": addr.to_string(), "client": client})
        }
        Event::PeerLeft {
            conn, addr, reason, ..
        } => {
            json!({"event": "peer_left", "id": conn.0, "addr": addr.to_string(), "reason": match reason {
                LeaveReason::Closed(why) => why.as_str(),
                LeaveReason::Remote => "closed by the peer",
                LeaveReason::ConnectFailed => "connect failed",
            }})
        }
        Event::PeerBanned { addr, .. } => json!({"event": "peer_banned", "addr": addr.to_string()}),
        Event::PieceDone { piece, .. } => json!({"event": "piece_done", "piece": piece}),
        Event::HashFailed { piece, .. } => json!({"event": "hash_failed", "piece": piece}),
        Event::TorrentComplete { .. } => json!({"event": "complete"}),
        Event::TrackerError { url, message, .. } => {
            json!({"event": "tracker_error", "url": url, "message": message})
        }
        Event::TrackerWarning { url, message, .. } => {
            json!({"event": "tracker_warning", "url": url, "message": message})
        }
        Event::TorrentError { message, .. } => {
            json!({"event": "torrent_error", "message": message})
        }
        _ => return None,
    };
    if let Value::Object(m) = &mut v {
        m.insert("type".into(), "event".into());
        m.insert("t".into(), secs(now).into());
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    //! The schema, pinned by insta snapshots: a change here is a change for every consumer
    //! (bump [`SCHEMA`] if it is not a pure addition).

    use super::*;
    use hive_core::bitfield::Bitfield;
    use hive_core::create::{Content, TorrentBuilder};
    use hive_core::session::{ConnId, SessionConfig};

    fn meta() -> Metainfo {
        // 5 pieces of 16 KiB, the last one short; hashes do not matter here.
        let built = TorrentBuilder::new(
            "schema.bin",
            Content::SingleFile { length: 70_000 },
            Some(16 * 1024),
        )
        .unwrap()
        .creation_date(Some(0))
        .build(&[7u8; 5 * 20])
        .unwrap();
        Metainfo::from_bytes(&built.bytes).unwrap()
    }

    fn pretty(v: &Value) -> String {
        serde_json::to_string_pretty(v).unwrap()
    }

    #[test]
    fn hello_schema() {
        insta::assert_snapshot!(pretty(&hello(&meta())));
    }

    #[test]
    fn snapshot_schema_without_peers() {
        let meta = meta();
        let now = Instant::from_micros(1_500_000);
        let mut session = Session::new(SessionConfig::default(), 1, now);
        let mut have = Bitfield::new(5);
        have.set(0);
        have.set(3);
        let t = session.add_torrent(now, meta.clone(), Some(&have)).unwrap();
        let tracker =
            json!({"url": "udp://t.example:1", "status": "error", "message": "timed out"});
        insta::assert_snapshot!(pretty(&snapshot(now, &session, t, &meta, &tracker)));
    }

    #[test]
    fn event_schema() {
        let now = Instant::from_micros(2_250_000);
        let t = TorrentId(0);
        let addr = "127.0.0.1:6881".parse().unwrap();
        let events = [
            Event::PeerJoined {
                torrent: t,
                conn: ConnId(3),
                addr,
                client: Some("Transmission 4.0.5".into()),
            },
            Event::PeerLeft {
                torrent: t,
                conn: ConnId(3),
                addr,
                reason: LeaveReason::Remote,
            },
            Event::PieceDone {
                torrent: t,
                piece: 4,
            },
            Event::TorrentComplete { torrent: t },
        ];
        let all: Vec<Value> = events.iter().filter_map(|e| event(now, e)).collect();
        assert_eq!(all.len(), events.len());
        insta::assert_snapshot!(pretty(&Value::Array(all)));
        assert!(event(now, &Event::ShutdownComplete).is_none());
    }
}
