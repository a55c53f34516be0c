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
//!
//! The index holds a *lower bound* of each deadline, not always the deadline itself: almost
//! every message sent or received pushes a connection's keep-alive or idle deadline later, and
//! moving the entry each time (a remove and an insert) cost more than everything else a `have`
//! does. So a refresh moves an entry only when the deadline came *earlier* (a request now
//! waiting for its timeout); an entry that comes due is checked against the connection and,
//! if the real deadline is later, moved there ([`ConnTable::due`]). The price is one early
//! wake-up per connection per keep-alive interval at most.

use std::cell::Cell;
use std::collections::BTreeSet;

use crate::time::Instant;

use super::Conn;
use super::types::ConnId;

/// Connections by id, plus an index of their deadlines.
///
/// The connections sit in a slab, found through a sorted list of (id, slot): the Session
/// looks a connection up several times per input (the input, the transmit, the flush), and a
/// lookup reads only that list (a few hundred bytes, shared by every lookup) before the
/// connection itself, where a `BTreeMap` walked nodes whose keys sit among 1.5 KiB values.
/// Ids only grow (`Session::new_conn_id`), so an insert appends; iteration is in id order,
/// as with the map it replaces.
#[derive(Debug, Default)]
pub(super) struct ConnTable {
    /// (id, slot in `slots`) of every connection, in id order.
    ids: Vec<(ConnId, usize)>,
    /// The last lookup's answer: an input looks its connection up four or five times (the
    /// message, the follow-up, the flush, the transmit), and each search is a chain of
    /// dependent loads. Forgotten when that connection is removed (slots are reused).
    last: Cell<Option<(ConnId, usize)>>,
    slots: Vec<Option<Conn>>,
    /// Empty slots in `slots`, reused first.
    free: Vec<usize>,
    /// (deadline, connection) for every connection as of its last refresh.
    index: DeadlineIndex,
    /// Connections handed out mutably since the last refresh, each once (`Conn::dirty`);
    /// emptied by every drain.
    dirty: Vec<ConnId>,
}

impl ConnTable {
    fn slot(&self, id: &ConnId) -> Option<usize> {
        slot_in(&self.ids, &self.last, id)
    }

    fn at(&self, slot: usize) -> Option<&Conn> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub(super) fn get(&self, id: &ConnId) -> Option<&Conn> {
        self.at(self.slot(id)?)
    }

    /// The connection, noted as dirty: its deadline is re-read at the next refresh.
    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        let c = conn_mut(&self.ids, &self.last, &mut self.slots, id)?;
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(*id);
        }
        Some(c)
    }

    /// The connection, *not* noted as dirty: only for calls that cannot bring its deadline
    /// earlier (taking its bytes to send, queueing a `have`), so that its index entry stays a
    /// lower bound (module docs) without a refresh. Most of a large swarm's calls are these.
    pub(super) fn get_mut_later(&mut self, id: &ConnId) -> Option<&mut Conn> {
        conn_mut(&self.ids, &self.last, &mut self.slots, id)
    }

    /// Notes connection `id` as dirty after a [`ConnTable::get_mut_later`] call that did
    /// bring its deadline earlier.
    pub(super) fn mark_dirty(&mut self, id: &ConnId) {
        self.get_mut(id);
    }

    pub(super) fn contains_key(&self, id: &ConnId) -> bool {
        self.slot(id).is_some()
    }

    pub(super) fn insert(&mut self, id: ConnId, mut conn: Conn) {
        conn.dirty = true;
        self.dirty.push(id);
        // Ids are never reused; should one be, its stale entry must not linger.
        self.remove_with(&id, |_| ());
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(conn);
                }
                slot
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        match self.ids.last() {
            Some(last) if last.0 > id => {
                let at = self.ids.partition_point(|e| e.0 < id);
                self.ids.insert(at, (id, slot));
            }
            _ => self.ids.push((id, slot)),
        }
    }

    /// Removes connection `id` and returns what `f` reads from it; the connection is dropped
    /// where it lies instead of being moved out whole (1.6 KiB read for a few fields).
    pub(super) fn remove_with<R>(&mut self, id: &ConnId, f: impl FnOnce(&Conn) -> R) -> Option<R> {
        let at = self.ids.binary_search_by_key(id, |e| e.0).ok()?;
        let (_, slot) = self.ids.remove(at);
        if self.last.get().is_some_and(|(last, _)| last == *id) {
            self.last.set(None);
        }
        let entry = self.slots.get_mut(slot)?;
        let c = entry.as_ref()?;
        let r = f(c);
        if let Some(d) = c.indexed {
            self.index.remove(&(d, *id));
        }
        *entry = None;
        self.free.push(slot);
        Some(r)
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &ConnId> + '_ {
        self.ids.iter().map(|e| &e.0)
    }

    /// The connections among `wanted` (ids in increasing order, as a torrent's set gives
    /// them), in that order: one pass along the id list instead of a search per id (a choke
    /// call reads every connection of its torrent).
    pub(super) fn in_order<'a>(
        &'a self,
        wanted: impl IntoIterator<Item = &'a ConnId> + 'a,
    ) -> impl Iterator<Item = (ConnId, &'a Conn)> + 'a {
        let mut all = self.ids.iter().peekable();
        wanted.into_iter().filter_map(move |id| {
            while all.next_if(|(i, _)| i < id).is_some() {}
            let &(i, slot) = all.next_if(|(i, _)| i == id)?;
            self.at(slot).map(|c| (i, c))
        })
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Conn> + '_ {
        self.ids.iter().filter_map(|e| self.at(e.1))
    }

    /// Re-reads the deadline of every dirty connection into the index.
    pub(super) fn refresh(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(c) = conn_mut(&self.ids, &self.last, &mut self.slots, &id) else {
                continue; // removed since (its entry went with it)
            };
            c.dirty = false;
            let real = c.peer.next_deadline();
            // A later deadline (or none) keeps its entry as a lower bound (module docs).
            let keep = match (c.indexed, real) {
                (Some(indexed), Some(real)) => indexed <= real,
                (_, None) => c.indexed.is_some(),
                (None, Some(_)) => false,
            };
            if !keep {
                Self::reindex(&mut self.index, id, c, real);
            }
        }
        self.dirty = dirty;
    }

    /// Moves `c`'s entry to `deadline`.
    fn reindex(index: &mut DeadlineIndex, id: ConnId, c: &mut Conn, deadline: Option<Instant>) {
        if c.indexed == deadline {
            return;
        }
        if let Some(d) = c.indexed {
            index.remove(&(d, id));
        }
        if let Some(d) = deadline {
            index.insert((d, id));
        }
        c.indexed = deadline;
    }

    /// The earliest connection deadline (call [`ConnTable::refresh`] first for an exact answer
    /// cheaply; without it this scans the dirty connections).
    pub(super) fn earliest(&self) -> Instant {
        let indexed = match self.index.first() {
            Some((d, _)) if self.dirty.is_empty() => d,
            _ => self
                .index
                .set
                .iter()
                .find(|(_, id)| !self.dirty.contains(id))
                .map_or(Instant::MAX, |(d, _)| *d),
        };
        self.dirty
            .iter()
            .filter_map(|id| self.get(id).and_then(|c| c.peer.next_deadline()))
            .fold(indexed, Instant::min)
    }

    /// The connections whose deadline is at or before `now`, in id order (refreshes first).
    /// Entries that were only lower bounds move to the real deadline.
    pub(super) fn due(&mut self, now: Instant) -> Vec<ConnId> {
        self.refresh();
        let mut due = Vec::new();
        while let Some((d, id)) = self.index.first() {
            if d > now {
                break;
            }
            let Some(c) = conn_mut(&self.ids, &self.last, &mut self.slots, &id) else {
                // Cannot happen (removal takes the entry), but must not loop.
                self.index.remove(&(d, id));
                continue;
            };
            let real = c.peer.next_deadline();
            match real {
                Some(r) if r <= now => {
                    // Due: it leaves the index until the connection is refreshed (its timer
                    // handler goes through `get_mut`).
                    self.index.remove(&(d, id));
                    c.indexed = None;
                    if !c.dirty {
                        c.dirty = true;
                        self.dirty.push(id);
                    }
                    due.push(id);
                }
                _ => Self::reindex(&mut self.index, id, c, real),
            }
        }
        due.sort_unstable();
        due
    }

    /// Checks that the index agrees with the connections (for `check_invariants`).
    pub(super) fn check_index(&self) -> Result<(), String> {
        for (id, slot) in &self.ids {
            let Some(c) = self.at(*slot) else {
                return Err(format!("conn {id:?}: listed but its slot {slot} is empty"));
            };
            if self.dirty.contains(id) {
                continue;
            }
            // The entry is the deadline or a lower bound of it (module docs).
            let real = c.peer.next_deadline();
            let bound = match (c.indexed, real) {
                (Some(indexed), Some(real)) => indexed <= real,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if !bound {
                return Err(format!(
                    "conn {id:?}: indexed deadline {:?} is not a lower bound of {real:?}",
                    c.indexed
                ));
            }
            if let Some(d) = c.indexed {
                if !self.index.set.contains(&(d, *id)) {
                    return Err(format!(
                        "conn {id:?}: deadline {d:?} missing from the index"
                    ));
                }
            }
        }
        let expected = self.values().filter(|c| c.indexed.is_some()).count();
        if self.index.first != self.index.set.first().copied() {
            return Err("deadline index: its remembered first entry is stale".into());
        }
        if self.index.set.len() != expected {
            return Err(format!(
                "deadline index has {} entries for {expected} connections with a deadline",
                self.index.set.len()
            ));
        }
        Ok(())
    }
}

/// (deadline, connection) for every connection with a deadline, and the first of them at hand:
/// every drain asks for the earliest, and the walk down the tree to it was a few cache
/// misses per input.
#[derive(Debug, Default)]
struct DeadlineIndex {
    set: BTreeSet<(Instant, ConnId)>,
    first: Option<(Instant, ConnId)>,
}

impl DeadlineIndex {
    fn first(&self) -> Option<(Instant, ConnId)> {
        self.first
    }

    fn insert(&mut self, entry: (Instant, ConnId)) {
        self.set.insert(entry);
        if self.first.is_none_or(|f| entry < f) {
            self.first = Some(entry);
        }
    }

    fn remove(&mut self, entry: &(Instant, ConnId)) {
        self.set.remove(entry);
        if self.first.as_ref() == Some(entry) {
            self.first = self.set.first().copied();
        }
    }
}

/// The slot of connection `id` in a sorted (id, slot) list, or in `last` if it was asked last.
fn slot_in(
    ids: &[(ConnId, usize)],
    last: &Cell<Option<(ConnId, usize)>>,
    id: &ConnId,
) -> Option<usize> {
    if let Some((last_id, slot)) = last.get() {
        if last_id == *id {
            return Some(slot);
        }
    }
    let at = ids.binary_search_by_key(id, |e| e.0).ok()?;
    let slot = ids.get(at)?.1;
    last.set(Some((*id, slot)));
    Some(slot)
}

/// Connection `id` in `slots`, found through the sorted (id, slot) list (a free function,
/// so that callers can hold it while they touch the table's other fields).
fn conn_mut<'a>(
    ids: &[(ConnId, usize)],
    last: &Cell<Option<(ConnId, usize)>>,
    slots: &'a mut [Option<Conn>],
    id: &ConnId,
) -> Option<&'a mut Conn> {
    slots
        .get_mut(slot_in(ids, last, id)?)
        .and_then(Option::as_mut)
}

/// Connections to look at when the current command ends (`Session::flush_touched`). A list
/// that may repeat ids, sorted and deduplicated when taken: a `have` to a hundred peers costs a
/// hundred pushes into a warm buffer, not a hundred tree inserts. Emptied by every command;
/// ids are never reused, so an entry for a connection dropped meanwhile is simply skipped.
#[derive(Debug, Default)]
pub(super) struct Touched {
    ids: Vec<ConnId>,
}

impl Touched {
    pub(super) fn insert(&mut self, id: ConnId) {
        self.ids.push(id);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Moves the touched ids into `out` (replacing its contents), in id order, each once.
    pub(super) fn take_into(&mut self, out: &mut Vec<ConnId>) {
        out.clear();
        std::mem::swap(out, &mut self.ids);
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{PeerConfig, PeerConn};
    use crate::picker::PeerKey;

    fn conn(port: u16) -> Conn {
        let addr = core::net::SocketAddr::from(([127, 0, 0, 1], port));
        Conn {
            dirty: false,
            connecting: false,
            joined: false,
            key: PeerKey(u32::from(port)),
            torrent: None,
            reads_in_flight: 0,
            indexed: None,
            peer: PeerConn::new_incoming(PeerConfig::new([0; 20]), Some(addr.ip()), Instant::ZERO),
            addr,
        }
    }

    /// The remembered last lookup never answers for a removed connection, even once its slot
    /// holds another one.
    #[test]
    fn last_lookup_forgets_a_removed_connection() {
        let mut t = ConnTable::default();
        t.insert(ConnId(1), conn(1));
        t.insert(ConnId(2), conn(2));
        assert_eq!(t.get(&ConnId(1)).map(|c| c.addr.port()), Some(1));
        assert_eq!(t.remove_with(&ConnId(1), |c| c.addr.port()), Some(1));
        assert!(t.get(&ConnId(1)).is_none());
        t.insert(ConnId(3), conn(3)); // reuses the freed slot
        assert!(t.get(&ConnId(1)).is_none());
        assert!(t.get_mut(&ConnId(1)).is_none());
        assert_eq!(t.get(&ConnId(3)).map(|c| c.addr.port()), Some(3));
        assert_eq!(t.get(&ConnId(2)).map(|c| c.addr.port()), Some(2));
        assert_eq!(t.len(), 2);
    }

    /// `in_order` finds what a search per id finds, skipping ids the table does not hold.
    #[test]
    fn in_order_matches_lookups() {
        let mut t = ConnTable::default();
        for port in [2, 3, 5, 8, 13] {
            t.insert(ConnId(u64::from(port)), conn(port));
        }
        t.remove_with(&ConnId(5), |_| ());
        let wanted: Vec<ConnId> = [1, 2, 5, 8, 9, 13, 20].map(ConnId).to_vec();
        let merged: Vec<(ConnId, u16)> = t
            .in_order(&wanted)
            .map(|(id, c)| (id, c.addr.port()))
            .collect();
        let searched: Vec<(ConnId, u16)> = wanted
            .iter()
            .filter_map(|id| t.get(id).map(|c| (*id, c.addr.port())))
            .collect();
        assert_eq!(merged, searched);
        assert_eq!(merged.len(), 3);
    }
}
