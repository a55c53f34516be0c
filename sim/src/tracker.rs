//! The simulated tracker: a registry of announced nodes answering HTTP (BEP 3, compact
//! peers) and UDP (BEP 15) announces with the core's own codecs. Peers in a reply are a
//! uniform random sample (without the asker) from the tracker's seeded RNG.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use hive_core::bencode::OwnedValue;
use hive_core::rng::Rng;
use hive_core::time::Instant;
use hive_core::tracker::udp::{self, ConnectResponse, Request};
use hive_core::tracker::{AddressFamily, Event, write_compact_peers};

/// The tracker's address (never a node's: node addresses count up from 10.0.0.1).
pub const TRACKER_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 254);
/// The UDP tracker's port.
pub const UDP_PORT: u16 = 6969;

#[derive(Clone, Copy, Debug)]
struct Entry {
    addr: SocketAddr,
    seeder: bool,
    last: Instant,
    /// Position in `order`.
    slot: usize,
}

/// The registry.
#[derive(Debug)]
pub struct Tracker {
    entries: BTreeMap<u32, Entry>,
    /// Registered nodes in a dense vector for O(1) random sampling.
    order: Vec<u32>,
    seeders: u32,
    interval_secs: u32,
    numwant: u32,
    /// Entries not refreshed for this long are dropped (crashed nodes never say `stopped`).
    expiry_us: u64,
    rng: Rng,
    /// Announces answered.
    pub announces: u64,
    scratch: Vec<SocketAddr>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new(interval_us: u64, numwant: u32, rng: Rng) -> Tracker {
        let interval_secs = u32::try_from((interval_us / 1_000_000).max(1)).unwrap_or(u32::MAX);
        Tracker {
            entries: BTreeMap::new(),
            order: Vec::new(),
            seeders: 0,
            interval_secs,
            numwant,
            expiry_us: interval_us.saturating_mul(2).max(60_000_000),
            rng,
            announces: 0,
            scratch: Vec::new(),
        }
    }

    fn remove(&mut self, node: u32) {
        if let Some(e) = self.entries.remove(&node) {
            if e.seeder {
                self.seeders -= 1;
            }
            self.order.swap_remove(e.slot);
            if let Some(&moved) = self.order.get(e.slot) {
                if let Some(m) = self.entries.get_mut(&moved) {
                    m.slot = e.slot;
                }
            }
        }
    }

    /// Forgets a node at once (a departing node's `stopped` that is taken as delivered).
    pub fn forget(&mut self, node: u32) {
        self.remove(node);
    }

    /// Registers (or refreshes, or removes on `stopped`) a node and samples peers for it.
    fn announce(
        &mut self,
        now: Instant,
        node: u32,
        addr: SocketAddr,
        left: u64,
        event: Event,
        numwant: u32,
    ) {
        self.announces += 1;
        self.scratch.clear();
        if event == Event::Stopped {
            self.remove(node);
            return;
        }
        let seeder = left == 0;
        match self.entries.get_mut(&node) {
            Some(e) => {
                if e.seeder != seeder {
                    if seeder {
                        self.seeders += 1;
                    } else {
                        self.seeders -= 1;
                    }
                }
                e.seeder = seeder;
                e.addr = addr;
                e.last = now;
            }
            None => {
                self.entries.insert(
                    node,
                    Entry {
                        addr,
                        seeder,
                        last: now,
                        slot: self.order.len(),
                    },
                );
                self.order.push(node);
                if seeder {
                    self.seeders += 1;
                }
            }
        }
        let want = numwant.min(self.numwant) as usize;
        let others = self.order.len() - 1;
        if want >= others {
            // Everyone (in registration order, then shuffled).
            let mut stale = Vec::new();
            for n in &self.order {
                if *n == node {
                    continue;
                }
                match self.entries.get(n) {
                    Some(e)
                        if now.as_micros().saturating_sub(e.last.as_micros()) <= self.expiry_us =>
                    {
                        // A seed does not need other seeds.
                        if !(seeder && e.seeder) {
                            self.scratch.push(e.addr);
                        }
                    }
                    _ => stale.push(*n),
                }
            }
            for n in stale {
                self.remove(n);
            }
            self.rng.shuffle(&mut self.scratch);
            return;
        }
        // Random distinct picks; a few rejections at most (want < others).
        let mut picked: Vec<u32> = Vec::with_capacity(want);
        let mut tries = 0;
        while picked.len() < want && tries < want * 8 {
            tries += 1;
            let i = self.rng.index(self.order.len());
            let n = self.order[i];
            if n == node || picked.contains(&n) {
                continue;
            }
            let Some(e) = self.entries.get(&n).copied() else {
                continue;
            };
            if now.as_micros().saturating_sub(e.last.as_micros()) > self.expiry_us {
                self.remove(n);
                continue;
            }
            if seeder && e.seeder {
                continue;
            }
            picked.push(n);
            self.scratch.push(e.addr);
        }
    }

    /// Answers an HTTP announce URL from `node` (whose IP is `ip`): the bencoded body.
    pub fn http(&mut self, now: Instant, node: u32, ip: Ipv4Addr, url: &str) -> Vec<u8> {
        let mut port = 0u16;
        let mut left = 0u64;
        let mut event = Event::None;
        let mut numwant = 50u32;
        let query = url.split_once('?').map_or("", |(_, q)| q);
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "port" => port = v.parse().unwrap_or(0),
                "left" => left = v.parse().unwrap_or(0),
                "numwant" => numwant = v.parse().unwrap_or(50),
                "event" => {
                    event = match v {
                        "started" => Event::Started,
                        "completed" => Event::Completed,
                        "stopped" => Event::Stopped,
                        _ => Event::None,
                    }
                }
                _ => {}
            }
        }
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
        self.announce(now, node, addr, left, event, numwant);
        let mut compact = Vec::with_capacity(self.scratch.len() * 6);
        write_compact_peers(
            &mut compact,
            self.scratch.iter().copied(),
            AddressFamily::V4,
        );
        let total = self.entries.len() as i64;
        let seeders = i64::from(self.seeders);
        let mut d = BTreeMap::new();
        d.insert(
            b"interval".to_vec(),
            OwnedValue::Int(i64::from(self.interval_secs)),
        );
        d.insert(b"complete".to_vec(), OwnedValue::Int(seeders));
        d.insert(b"incomplete".to_vec(), OwnedValue::Int(total - seeders));
        d.insert(b"peers".to_vec(), OwnedValue::Bytes(compact));
        OwnedValue::Dict(d).to_bytes()
    }

    /// Answers a UDP datagram from `node`; `None` for garbage (a real tracker stays silent).
    pub fn udp(&mut self, now: Instant, node: u32, ip: Ipv4Addr, packet: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match Request::decode(packet).ok()? {
            Request::Connect(c) => {
                // A connection id the tracker could check; the simulation trusts its nodes.
                let connection_id = 0x5157_0000_0000_0000 | u64::from(node);
                ConnectResponse {
                    transaction_id: c.transaction_id,
                    connection_id,
                }
                .encode(&mut out);
            }
            Request::Announce(a) => {
                let numwant = u32::try_from(a.num_want).unwrap_or(self.numwant);
                let addr = SocketAddr::V4(SocketAddrV4::new(ip, a.port));
                self.announce(now, node, addr, a.left, a.event, numwant);
                let total = self.entries.len() as u32;
                udp::encode_announce_response(
                    &mut out,
                    a.transaction_id,
                    self.interval_secs,
                    total - self.seeders,
                    self.seeders,
                    self.scratch.iter().copied(),
                    AddressFamily::V4,
                );
            }
            Request::Scrape(_) => return None,
        }
        Some(out)
    }
}
