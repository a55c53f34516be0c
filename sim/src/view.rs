//! `hive-sim view FILE`: a record played back in the swarm view (the `hive_live` page and
//! server, `source: "replay"`).
//!
//! Each connected page has its own player: a virtual time, a speed, playing or paused, and
//! the node in the centre. Every 250 ms of wall time a playing page advances by 250 ms times
//! its speed and is sent the node's events in between and a snapshot. A page's messages
//! (`seek`, `play`, `pause`, `speed`, `node`) change only what that page sees: nothing a page
//! sends can change the record or another page.

use std::sync::Arc;
use std::time::Duration;

use async_net::TcpListener;
use hive_live::server::{self, Client};
use serde_json::Value;

use crate::replay::Replay;

/// Wall time between two steps of a playing page.
const STEP: Duration = Duration::from_millis(250);
/// After a seek or a change of node, the events of this much virtual time before are sent.
const RECENT: u64 = 60_000_000;
/// Play speeds a page may ask for.
const SPEEDS: (f64, f64) = (0.25, 256.0);

/// How a page starts.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    /// The node in the centre.
    pub node: u32,
    /// Virtual time (µs).
    pub at: u64,
    /// Play speed (virtual seconds per wall second).
    pub speed: f64,
    /// Playing (else paused).
    pub playing: bool,
}

/// Serves the replay on `listener` until the process is stopped; `token` as for the live view.
pub async fn serve(
    replay: Arc<Replay>,
    listener: TcpListener,
    token: Option<String>,
    start: Start,
) {
    let (tx, rx) = smol::channel::bounded::<Client>(4);
    let _server = smol::spawn(server::serve(listener, token, tx));
    while let Ok(client) = rx.recv().await {
        smol::spawn(page(replay.clone(), client, start)).detach();
    }
}

/// One page's player.
struct Player {
    node: u32,
    t: u64,
    speed: f64,
    playing: bool,
}

impl Player {
    /// Applies a page's request; `false` if it was not one.
    fn apply(&mut self, replay: &Replay, msg: &str) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(msg) else {
            return false;
        };
        match v["type"].as_str() {
            Some("seek") => match v["t"].as_f64() {
                Some(s) if s.is_finite() => {
                    self.t = ((s.max(0.0) * 1e6) as u64).min(replay.end);
                }
                _ => return false,
            },
            Some("play") => {
                if self.t >= replay.end {
                    self.t = 0;
                }
                self.playing = true;
            }
            Some("pause") => self.playing = false,
            Some("speed") => match v["speed"].as_f64() {
                Some(x) if x.is_finite() => self.speed = x.clamp(SPEEDS.0, SPEEDS.1),
                _ => return false,
            },
            Some("node") => match v["node"].as_u64() {
                Some(n) if n < u64::from(replay.nodes) => self.node = n as u32,
                _ => return false,
            },
            _ => return false,
        }
        true
    }

    fn snapshot(&self, replay: &Replay) -> Arc<str> {
        let mut s = replay.snapshot(self.node, self.t);
        s["replay"]["playing"] = self.playing.into();
        s["replay"]["speed"] = self.speed.into();
        s.to_string().into()
    }
}

async fn page(replay: Arc<Replay>, client: Client, start: Start) {
    let mut p = Player {
        node: start.node.min(replay.nodes.saturating_sub(1)),
        t: start.at.min(replay.end),
        speed: start.speed.clamp(SPEEDS.0, SPEEDS.1),
        playing: start.playing,
    };
    let send = |msg: Arc<str>| client.out.force_send(msg).is_ok();
    if !send(replay.hello().to_string().into()) || !send(p.snapshot(&replay)) {
        return;
    }
    let mut next = std::time::Instant::now() + STEP;
    loop {
        enum Wake {
            Tick,
            Msg(Option<String>),
        }
        let wake = smol::future::or(
            async {
                smol::Timer::at(next).await;
                Wake::Tick
            },
            async { Wake::Msg(client.inbox.recv().await.ok()) },
        )
        .await;
        let mut jumped = false;
        let changed = match wake {
            Wake::Msg(None) => return, // the page left
            Wake::Msg(Some(m)) => {
                let before = (p.node, p.t);
                let ok = p.apply(&replay, &m);
                jumped = ok && (p.node, p.t) != before;
                ok
            }
            Wake::Tick => {
                next += STEP;
                if !p.playing {
                    continue;
                }
                let to = (p.t + (STEP.as_micros() as f64 * p.speed) as u64).min(replay.end);
                for e in replay.events(p.node, p.t, to) {
                    if !send(e.to_string().into()) {
                        return;
                    }
                }
                p.t = to;
                if p.t >= replay.end {
                    p.playing = false;
                }
                true
            }
        };
        if changed && !send(p.snapshot(&replay)) {
            return;
        }
        if jumped {
            // The page starts a new event log: give it the last minute's events.
            for e in replay.events(p.node, p.t.saturating_sub(RECENT), p.t) {
                if !send(e.to_string().into()) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay() -> Replay {
        let text = concat!(
            r#"{"format":"hive-sim-record","version":1,"scenario":"x","seed":1,"nodes":2,"sample_every_us":1000000,"#,
            r#""torrent":{"name":"a","info_hash":"00","size":32768,"piece_length":16384,"pieces":2,"files":1,"private":false},"#,
            r#""groups":[{"name":"seed","count":1,"seed":true,"first":0},{"name":"l","count":1,"seed":false,"first":1}]}"#,
            "\n",
            r#"{"t":0,"n":0,"k":"arrive","seed":true}"#,
            "\n",
            r#"{"t":0,"n":1,"k":"arrive","seed":false}"#,
            "\n",
            r#"{"t":10000000,"k":"end","finished":false}"#,
            "\n"
        );
        Replay::parse(text).unwrap()
    }

    #[test]
    fn page_requests_only_move_the_page_and_are_bounded() {
        let r = replay();
        let mut p = Player {
            node: 1,
            t: 0,
            speed: 1.0,
            playing: true,
        };
        assert!(p.apply(&r, r#"{"type":"seek","t":4.5}"#));
        assert_eq!(p.t, 4_500_000);
        assert!(p.apply(&r, r#"{"type":"seek","t":1e300}"#));
        assert_eq!(p.t, r.end, "clamped to the end");
        assert!(p.apply(&r, r#"{"type":"seek","t":-3}"#));
        assert_eq!(p.t, 0);
        assert!(p.apply(&r, r#"{"type":"speed","speed":1000}"#));
        assert_eq!(p.speed, 256.0);
        assert!(p.apply(&r, r#"{"type":"pause"}"#) && !p.playing);
        p.t = r.end;
        assert!(p.apply(&r, r#"{"type":"play"}"#) && p.playing);
        assert_eq!(p.t, 0, "play at the end starts over");
        assert!(p.apply(&r, r#"{"type":"node","node":0}"#));
        assert_eq!(p.node, 0);
        // Not requests: a node that does not exist, junk, anything else.
        for junk in [
            r#"{"type":"node","node":2}"#,
            r#"{"type":"seek","t":"soon"}"#,
            r#"{"type":"shutdown"}"#,
            "not json",
        ] {
            assert!(!p.apply(&r, junk), "{junk}");
        }
        assert_eq!((p.node, p.t), (0, 0));
    }
}
