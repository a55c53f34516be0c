//! The Session's connections, with their timer deadlines indexed.
//!
//! Every input used to ask each connection for its deadline (keep-alive, idle, handshake and
//! request timeouts) to find the earliest: O(connections) per input, which dominated large
//! swarms (a node with 100 peers paid 100 calls for each `have` it received). Here the deadlines
//! sit in an ordered set keyed by (deadline, connection), so the earliest is the first entry.
//!
//! A connection's deadline changes only when its machine is called, and every such call goes
//! through [`ConnTable::get_mut`] (or `insert`), which notes the connection as dirty; the index is
//! brought up to date from the dirty list before it is read ([`ConnTable::refresh`]). A
//! connection's deadline depends only on its own state, never on the clock, so an entry that
//! nobody touched stays right.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;

use super::Conn;
use super::types::ConnId;

/// Connections by id, plus an index of their deadlines.
#[derive(Debug, Default)]
pub(super) struct ConnTable {
    map: BTreeMap<ConnId, Conn>,
    /// (deadline, connection) for every connection as of its last refresh.
    index: BTreeSet<(Instant, ConnId)>,
    /// Connections handed out mutably since the last refresh, each once (`Conn::dirty`);
    /// emptied by every drain.
    dirty: Vec<ConnId>,
}

impl ConnTable {
    pub(super) fn get(&self, id: &ConnId) -> Option<&Conn> {
        self.map.get(id)
    }

    /// The connection, noted as dirty: its deadline is re-read at the next refresh.
    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        let c = self.map.get_mut(id)?;
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(*id);
        }
        Some(c)
    }

    pub(super) fn contains_key(&self, id: &ConnId) -> bool {
        self.map.contains_key(id)
    }

    pub(super) fn insert(&mut self, id: ConnId, mut conn: Conn) {
        conn.dirty = true;
        self.dirty.push(id);
        if let Some(old) = self.map.insert(id, conn) {
            // Ids are never reused; should one be, its stale entry must not linger.
            if let Some(d) = old.indexed {
                self.index.remove(&(d, id));
            }
        }
    }

    pub(super) fn remove(&mut self, id: &ConnId) -> Option<Conn> {
        let c = self.map.remove(id)?;
        if let Some(d) = c.indexed {
            self.index.remove(&(d, *id));
        }
        Some(c)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &ConnId> + '_ {
        self.map.keys()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Conn> + '_ {
        self.map.values()
    }

    /// Re-reads the deadline of every dirty connection into the index.
    pub(super) fn refresh(&mut self) {
        for id in self.dirty.drain(..) {
            let Some(c) = self.map.get_mut(&id) else {
                continue; // removed since (its entry went with it)
            };
            c.dirty = false;
            let now = c.peer.next_deadline();
            if now == c.indexed {
                continue;
            }
            if let Some(d) = c.indexed {
                self.index.remove(&(d, id));
            }
            if let Some(d) = now {
                self.index.insert((d, id));
            }
            c.indexed = now;
        }
    }

    /// The earliest connection deadline (call [`ConnTable::refresh`] first for an exact answer
    /// cheaply; without it this scans the dirty connections).
    pub(super) fn earliest(&self) -> Instant {
        let indexed = self
            .index
            .iter()
            .find(|(_, id)| !self.dirty.contains(id))
            .map_or(Instant::MAX, |(d, _)| *d);
        self.dirty
            .iter()
            .filter_map(|id| self.map.get(id).and_then(|c| c.peer.next_deadline()))
            .fold(indexed, Instant::min)
    }

    /// The connections whose deadline is at or before `now`, in id order (refreshes first).
    pub(super) fn due(&mut self, now: Instant) -> Vec<ConnId> {
        self.refresh();
        let mut due: Vec<ConnId> = self
            .index
            .iter()
            .take_while(|(d, _)| *d <= now)
            .map(|(_, id)| *id)
            .collect();
        due.sort_unstable();
        due
    }

    /// Checks that the index agrees with the connections (for `check_invariants`).
    pub(super) fn check_index(&self) -> Result<(), String> {
        for (id, c) in &self.map {
            if self.dirty.contains(id) {
                continue;
            }
            if c.indexed != c.peer.next_deadline() {
                return Err(format!(
                    "conn {id:?}: indexed deadline {:?} but the connection says {:?}",
                    c.indexed,
                    c.peer.next_deadline()
                ));
            }
            if let Some(d) = c.indexed {
                if !self.index.contains(&(d, *id)) {
                    return Err(format!(
                        "conn {id:?}: deadline {d:?} missing from the index"
                    ));
                }
            }
        }
        let expected = self.map.values().filter(|c| c.indexed.is_some()).count();
        if self.index.len() != expected {
            return Err(format!(
                "deadline index has {} entries for {expected} connections with a deadline",
                self.index.len()
            ));
        }
        Ok(())
    }
}
