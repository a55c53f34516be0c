//! Schema 1 of the swarm view's messages (README.md "Live view"): `hello`, `snapshot` and
//! `event`, as JSON values. A live download builds them from its Session ([`snapshot`]); a
//! simulator replay builds the same objects from a record ([`totals`], [`peer`], [`pieces`],
//! [`snapshot_of`]), so both feed the same page.

use std::time::Duration;

use hive_core::metainfo::Metainfo;
use hive_core::session::{
    Event, LeaveReason, PeerSnapshot, PieceView, Session, TorrentId, TorrentState, TorrentStats,
};
use hive_core::time::Instant;
use serde_json::{Value, json};

/// The version of the message schema; bumped on any incompatible change.
pub const SCHEMA: u32 = 1;

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Seconds, as the messages' `t`.
pub fn secs(t: Instant) -> f64 {
    t.as_micros() as f64 / 1e6
}

/// `{"type":"hello", ...}`: the schema version and what does not change. `source` is `live`
/// or `replay`; snapshots come about every `interval`.
pub fn hello(meta: &Metainfo, source: &str, interval: Duration) -> Value {
    hello_of(
        json!({
            "name": meta.name(),
            "info_hash": hex(meta.info_hash().as_bytes()),
            "size": meta.total_length(),
            "piece_length": meta.piece_length(),
            "pieces": meta.piece_count(),
            "files": meta.files().len(),
            "private": meta.is_private(),
        }),
        source,
        interval,
    )
}

/// [`hello`] with the `torrent` object given (a replay reads it from its record).
pub fn hello_of(torrent: Value, source: &str, interval: Duration) -> Value {
    json!({
        "type": "hello",
        "schema": SCHEMA,
        "source": source,
        "snapshot_interval_ms": interval.as_millis() as u64,
        "torrent": torrent,
    })
}

/// One entry of a snapshot's `peers`; `pieces` is the torrent's piece count.
pub fn peer(p: &PeerSnapshot, pieces: u32) -> Value {
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

/// A snapshot's `torrent`: the totals, from a torrent's statistics.
pub fn totals(s: &TorrentStats, total_length: u64) -> Value {
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
        "ratio": s.uploaded as f64 / total_length.max(1) as f64,
        "peers_connected": s.peers_connected,
        "peers_known": s.peers_known,
        "hash_failures": s.hash_failures,
    })
}

/// A snapshot's `pieces`: one state and one availability per piece.
pub fn pieces(p: &[(PieceView, u32)]) -> Value {
    let states: String = p
        .iter()
        .map(|(v, _)| match v {
            PieceView::Have => 'h',
            PieceView::Downloading => 'd',
            PieceView::Missing => 'm',
        })
        .collect();
    let avail: Vec<u32> = p.iter().map(|(_, a)| *a).collect();
    json!({"state": states, "availability": avail})
}

/// `{"type":"snapshot", ...}` from its parts ([`totals`], [`peer`]s, [`pieces`]).
pub fn snapshot_of(
    now: Instant,
    totals: Option<Value>,
    peers: Vec<Value>,
    pieces: Value,
    tracker: &Value,
) -> Value {
    json!({
        "type": "snapshot",
        "t": secs(now),
        "torrent": totals,
        "peers": peers,
        "pieces": pieces,
        "tracker": tracker,
    })
}

/// `{"type":"snapshot", ...}` of a live Session: totals, every joined peer, every piece.
pub fn snapshot(
    now: Instant,
    session: &Session,
    torrent: TorrentId,
    meta: &Metainfo,
    tracker: &Value,
) -> Value {
    let n = meta.piece_count();
    let t = session
        .stats(torrent)
        .map(|s| totals(&s, meta.total_length()));
    let peers: Vec<Value> = session
        .peer_snapshots(torrent)
        .unwrap_or_default()
        .iter()
        .map(|p| peer(p, n))
        .collect();
    let p = pieces(&session.piece_snapshots(torrent).unwrap_or_default());
    snapshot_of(now, t, peers, p, tracker)
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
        insta::assert_snapshot!(pretty(&hello(&meta(), "live", Duration::from_millis(250))));
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
