//! The live view (`--ui`): a page and a WebSocket that show the swarm as it is.
//!
//! The driver owns a [`Live`]: while at least one page is connected it builds a snapshot of
//! the Session at most every [`SNAPSHOT_EVERY`] (never otherwise, so an unwatched download
//! pays nothing) and forwards a few Session events as they happen. Each client has a bounded
//! queue; a slow client loses its oldest messages, never slows the driver. Messages are JSON
//! (schema 1, documented in README.md "Live view"), built by `hive_live::schema`; the page and
//! its server are `hive_live`'s, shared with `hive-sim view`.

use std::sync::Arc;
use std::time::Duration;

use hive_core::metainfo::Metainfo;
use hive_core::session::{Event, Session, TorrentId};
use hive_core::time::Instant;
use hive_live::schema::{event, hello, snapshot};
use hive_live::server;
use serde_json::{Value, json};
use smol::channel::Sender;

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
            hello: hello(meta, "live", SNAPSHOT_EVERY).to_string().into(),
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
