//! The choking algorithm (BEP 3, "Choking and optimistic unchoking") as a pure machine.
//!
//! The caller owns the peers; the [`Choker`] only decides. Every call to [`Choker::rechoke`]
//! (or [`Choker::rechoke_into`], which reuses a caller-owned [`ChokeDecision`]) gets a snapshot
//! of every connected peer ([`PeerStats`]) and says which peers are unchoked: `regular` slots
//! for reciprocation, `optimistic` slots for discovery; everyone else is choked. The decision
//! also lists the Choke/Unchoke messages to send (diffed against each peer's `am_choking`).
//! The caller applies the decision (so `am_choking` reflects it) before the next call.
//!
//! # When to call
//!
//! At [`Choker::next_deadline`] (a *round*, every `rechoke_interval`, 10 s per BEP 3), and
//! whenever something changes that should not wait for the next round: a peer connected,
//! disconnected, or changed its interest. A call before the deadline is an *interim* call: it
//! never chokes a peer that is still eligible (BEP 3: changing who is choked only once every ten
//! seconds avoids fibrillation); it only drops peers that left or lost interest and fills free
//! slots, so a new interested peer is served at once when a slot is free. A change of [`Mode`]
//! (the download completed) forces a round. Time jumps (a simulator skipping hours) cost one
//! round, not a catch-up loop: the next round is always `now + rechoke_interval`.
//!
//! # Leech mode (tit-for-tat, BEP 3)
//!
//! The `regular_slots` interested peers with the best download rate *to us* (the caller's
//! rolling window, see [`crate::rate`]) are unchoked. Anti-snubbing (mainline BitTorrent,
//! libtorrent): a peer that unchoked us but has sent no block for `snub_timeout` (60 s) is
//! snubbed and cannot hold a regular slot; only the optimistic unchoke can still pick it. Ties
//! (typically all-zero rates at start-up) prefer peers already unchoked, for stability, then
//! break at random. A peer unchoked by an interim call less than `rechoke_interval` ago keeps
//! its slot at the next round: it has not had a fair chance to show its rate yet.
//!
//! Slots: BEP 3 unchokes four peers *including* the optimistic one; like libtorrent, Hive counts
//! optimistic slots on top (defaults 4 + 1). Set `regular_slots: 3` for BEP 3's exact numbers.
//! BEP 3 also unchokes uninterested peers that upload faster than the slowest regular one; Hive,
//! like libtorrent, does not: an uninterested peer is always choked (it costs nothing to do so,
//! and it gets a slot within one interim call of becoming interested if one is free).
//!
//! # Optimistic unchoke
//!
//! Every `optimistic_interval` (30 s: every third round) the optimistic peer is replaced by a
//! random pick among the choked interested peers, a peer connected less than `newcomer_window`
//! ago weighing `newcomer_weight` (3, BEP 3: "new connections are three times as likely to start
//! as the current optimistic unchoke"). The lottery draws *without replacement* within a
//! cycle: a peer already picked in this cycle waits until every other candidate has had its
//! turn, so coverage is guaranteed (mainline reaches the same end with a rotating list), not just
//! likely. If a regular peer's rate qualifies the optimistic one for a regular slot, it is
//! promoted and a new optimistic peer is drawn.
//!
//! # Seed mode: round robin
//!
//! A seed has nothing to reciprocate, so ranking by upload rate ("fastest upload") only rewards
//! the fattest pipe, which may download everything and pass little on. Hive uses libtorrent's
//! default, round robin (mainline BitTorrent 4 rotates similarly): an unchoked peer keeps its
//! slot for its *turn*, which ends once it has been unchoked for `seed_turn` (30 s) and received
//! `seed_turn_bytes` (1 MiB, about a piece to pass on), or after `seed_turn_max` (90 s) whatever
//! it received; it then goes to the back of the queue, and free slots go to the interested peers
//! that have waited longest since they were last choked (or since we first saw them). Every
//! interested peer is served in turn. The optimistic slot works as in leech mode.
//!
//! Determinism: peers are processed in key order whatever the slice order, duplicate keys after
//! the first are ignored, and all randomness comes from the seeded [`Rng`]: the same inputs and
//! seed give the same decisions, bit for bit.

use crate::rng::Rng;
use crate::time::Instant;
use std::time::Duration;

/// Whether we still download (tit-for-tat) or only seed (round robin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// We still want pieces: rank peers by their download rate to us.
    Leech,
    /// We have everything: rotate the upload slots among interested peers.
    Seed,
}

/// Tunables of the [`Choker`]; [`ChokerConfig::default`] follows BEP 3 and libtorrent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular (reciprocation or seed-rotation) upload slots; default 4.
    pub regular_slots: usize,
    /// Optimistic slots on top of the regular ones; default 1.
    pub optimistic_slots: usize,
    /// Time between rounds; default 10 s (BEP 3), at least 1 ms.
    pub rechoke_interval: Duration,
    /// How long an optimistic unchoke lasts; default 30 s (BEP 3), checked at rounds.
    pub optimistic_interval: Duration,
    /// A peer unchoking us that sends no block for this long is snubbed; default 60 s.
    pub snub_timeout: Duration,
    /// A peer connected less than this long ago is a newcomer; default 60 s (two optimistic
    /// periods: enough to be picked and finish a first piece).
    pub newcomer_window: Duration,
    /// A newcomer's weight in the optimistic lottery (others weigh 1); default 3 (BEP 3).
    pub newcomer_weight: u64,
    /// Seed mode: the shortest turn of an unchoked peer; default 30 s.
    pub seed_turn: Duration,
    /// Seed mode: bytes a peer must receive before its turn can end; default 1 MiB.
    pub seed_turn_bytes: u64,
    /// Seed mode: a turn ends after this long whatever the peer received; default 90 s.
    pub seed_turn_max: Duration,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            regular_slots: 4,
            optimistic_slots: 1,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            snub_timeout: Duration::from_secs(60),
            newcomer_window: Duration::from_secs(60),
            newcomer_weight: 3,
            seed_turn: Duration::from_secs(30),
            seed_turn_bytes: 1024 * 1024,
            seed_turn_max: Duration::from_secs(90),
        }
    }
}

/// A [`ChokerConfig`] that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChokerError {
    /// A rechoke interval this short would have the caller spin.
    #[error("choker rechoke_interval {0:?} is below 1 ms (BEP 3 uses 10 s)")]
    RechokeIntervalTooShort(Duration),
    /// Zero would mean newcomers are never picked optimistically.
    #[error("choker newcomer_weight is 0; use 1 for no preference (BEP 3 uses 3)")]
    ZeroNewcomerWeight,
    /// The hard cap on a seed turn is below its minimum.
    #[error("choker seed_turn_max {max:?} is shorter than seed_turn {min:?}")]
    SeedTurnMaxTooShort {
        /// The configured `seed_turn`.
        min: Duration,
        /// The configured `seed_turn_max`.
        max: Duration,
    },
}

impl ChokerConfig {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ChokerError> {
        if self.rechoke_interval < Duration::from_millis(1) {
            return Err(ChokerError::RechokeIntervalTooShort(self.rechoke_interval));
        }
        if self.newcomer_weight == 0 {
            return Err(ChokerError::ZeroNewcomerWeight);
        }
        if self.seed_turn_max < self.seed_turn {
            return Err(ChokerError::SeedTurnMaxTooShort {
                min: self.seed_turn,
                max: self.seed_turn_max,
            });
        }
        Ok(())
    }
}

/// What the choker needs to know about one connected peer, at the time of the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStats<K> {
    /// The caller's key for this peer (a connection id); unique per call.
    pub key: K,
    /// The peer is interested in us.
    pub interested: bool,
    /// We are choking the peer now (connections start choked, BEP 3).
    pub am_choking: bool,
    /// Payload bytes/s from the peer to us over the rolling window. Read only in leech mode
    /// and only for an interested peer; a caller may leave it 0 otherwise.
    pub download_rate: u64,
    /// Payload bytes/s from us to the peer over the rolling window. Read only in seed mode
    /// and only for an interested peer; a caller may leave it 0 otherwise.
    pub upload_rate: u64,
    /// Payload bytes sent to the peer since it connected (seed turns are measured with it).
    pub uploaded: u64,
    /// `Some(t)` while the peer unchokes us and we are interested in it: `t` is when that
    /// began (the later of its unchoke and our interest). `None` otherwise.
    pub expecting_since: Option<Instant>,
    /// When the peer last sent us a block, if ever.
    pub last_block_at: Option<Instant>,
    /// When the connection was established.
    pub connected_at: Instant,
}

impl<K> PeerStats<K> {
    /// A peer that just connected: choked, uninterested, no traffic.
    pub fn new(key: K, connected_at: Instant) -> Self {
        PeerStats {
            key,
            interested: false,
            am_choking: true,
            download_rate: 0,
            upload_rate: 0,
            uploaded: 0,
            expecting_since: None,
            last_block_at: None,
            connected_at,
        }
    }

    /// The peer unchoked us (and we want its pieces) but has sent no block for `timeout`.
    pub fn is_snubbed(&self, now: Instant, timeout: Duration) -> bool {
        match self.expecting_since {
            None => false,
            Some(since) => {
                let last = self.last_block_at.map_or(since, |b| b.max(since));
                now.saturating_duration_since(last) >= timeout
            }
        }
    }
}

/// The outcome of a [`Choker::rechoke`] call: who is unchoked, and the messages to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChokeDecision<K> {
    /// Whether this call was a scheduled round (or forced by a mode change), not an interim one.
    pub full_round: bool,
    /// Peers unchoked in regular slots, best-ranked first (in leech mode a peer kept by the
    /// anti-fibrillation rule comes first).
    pub regular: Vec<K>,
    /// Peers unchoked optimistically.
    pub optimistic: Vec<K>,
    /// Peers to send Unchoke: unchoked above but `am_choking` now; in key order.
    pub unchoke: Vec<K>,
    /// Peers to send Choke: `am_choking` is false now but they are not unchoked above; in key
    /// order. Everyone else stays (or is) choked. With the Fast Extension (BEP 6) the caller
    /// sends Choke first, then rejects that peer's pending requests outside its allowed-fast
    /// set, so the peer does not re-request them.
    pub choke: Vec<K>,
}

impl<K: Ord> ChokeDecision<K> {
    /// An empty decision, to be filled by [`Choker::rechoke_into`].
    pub fn new() -> Self {
        ChokeDecision {
            full_round: false,
            regular: Vec::new(),
            optimistic: Vec::new(),
            unchoke: Vec::new(),
            choke: Vec::new(),
        }
    }

    /// Whether `key` ends up unchoked (regular or optimistic).
    pub fn is_unchoked(&self, key: &K) -> bool {
        self.regular.contains(key) || self.optimistic.contains(key)
    }

    /// Empties every list, keeping the allocations.
    pub fn clear(&mut self) {
        self.full_round = false;
        self.regular.clear();
        self.optimistic.clear();
        self.unchoke.clear();
        self.choke.clear();
    }
}

impl<K: Ord> Default for ChokeDecision<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// What the choker last decided for a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Choked,
    Regular,
    Optimistic,
}

/// What the choker remembers about a peer between calls.
#[derive(Clone, Copy, Debug)]
struct Memo {
    role: Role,
    /// Unchoked: when it was unchoked (its seed turn start). Choked: since when it waits.
    since: Instant,
    /// `uploaded` when the seed turn started.
    uploaded_base: u64,
    /// When its current optimistic unchoke started.
    opt_since: Instant,
    /// The optimistic cycle in which it was last picked.
    opt_cycle: Option<u64>,
}

/// Per-call working state for one peer.
#[derive(Clone, Copy, Debug)]
struct Cand<K> {
    key: K,
    /// Index into the caller's slice.
    idx: usize,
    /// Sort key, ascending = better.
    rank: (u8, u64, u8, u64),
    before: Role,
    after: Role,
    interested: bool,
    eligible_regular: bool,
    newcomer: bool,
    /// Seed mode: a regular peer whose turn is over.
    turn_done: bool,
    /// An optimistic unchoke still within its interval.
    opt_running: bool,
    /// Freshly picked optimistically in this call.
    opt_new: bool,
    opt_cycle: Option<u64>,
    uploaded: u64,
    am_choking: bool,
}

/// The choking machine: state is only what it decided before; see the module docs.
#[derive(Clone, Debug)]
pub struct Choker<K> {
    config: ChokerConfig,
    rng: Rng,
    /// What it remembers of each peer of the last call, in key order: entry `i` belongs to the
    /// `i`-th candidate once the candidates are in key order, so a call reads and writes it by
    /// position, with no search (a flash crowd runs many interim calls).
    memo: Vec<(K, Memo)>,
    /// The previous call's `memo`, kept for its allocation.
    memo_spare: Vec<(K, Memo)>,
    /// Reused between calls: candidate indices in rank order.
    order: Vec<usize>,
    next_round: Instant,
    last_mode: Option<Mode>,
    rounds: u64,
    /// The last call left a slot empty (see [`Choker::has_free_slot`]).
    slot_free: bool,
    /// Optimistic lottery cycle: a peer is drawn at most once per cycle.
    cycle: u64,
    /// Reused between calls so a call allocates nothing once warm.
    scratch: Vec<Cand<K>>,
}

impl<K: Copy + Ord> Choker<K> {
    /// A choker with `config`, drawing randomness from `rng`; its first round is due at once.
    pub fn new(config: ChokerConfig, rng: Rng) -> Result<Self, ChokerError> {
        config.validate()?;
        Ok(Choker {
            config,
            rng,
            memo: Vec::new(),
            memo_spare: Vec::new(),
            order: Vec::new(),
            next_round: Instant::ZERO,
            last_mode: None,
            rounds: 0,
            slot_free: true,
            cycle: 0,
            scratch: Vec::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// Replaces the configuration (e.g. a new slot count); it applies from the next call, and
    /// slot counts shrink at the next round.
    pub fn set_config(&mut self, config: ChokerConfig) -> Result<(), ChokerError> {
        config.validate()?;
        self.config = config;
        // More slots may be free now; the next call finds out.
        self.slot_free = true;
        Ok(())
    }

    /// When the next round is due: call [`Choker::rechoke`] then. [`Instant::ZERO`] before the
    /// first call (due at once).
    pub fn next_deadline(&self) -> Instant {
        self.next_round
    }

    /// How many rounds have run.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Whether the last call left a regular or optimistic slot empty (true before the first
    /// call and after [`Choker::set_config`]). Only then can an interim call unchoke a peer
    /// that becomes interested; with every slot taken the caller may skip that call.
    pub fn has_free_slot(&self) -> bool {
        self.slot_free
    }

    /// Decides who is unchoked at `now`; see [`Choker::rechoke_into`].
    pub fn rechoke(
        &mut self,
        now: Instant,
        mode: Mode,
        peers: &[PeerStats<K>],
    ) -> ChokeDecision<K> {
        let mut out = ChokeDecision::new();
        self.rechoke_into(now, mode, peers, &mut out);
        out
    }

    /// Decides who is unchoked at `now` among `peers` (every connected peer, any order) and
    /// writes it into `out` (cleared first). A round if `now >= next_deadline()` or the mode
    /// changed, an interim call otherwise (module docs).
    pub fn rechoke_into(
        &mut self,
        now: Instant,
        mode: Mode,
        peers: &[PeerStats<K>],
        out: &mut ChokeDecision<K>,
    ) {
        out.clear();
        let full = now >= self.next_round || self.last_mode != Some(mode);
        out.full_round = full;
        let cfg = self.config;

        let mut cands = std::mem::take(&mut self.scratch);
        cands.clear();
        for (idx, p) in peers.iter().enumerate() {
            cands.push(Cand {
                key: p.key,
                idx,
                rank: (0, 0, 0, 0),
                before: Role::Choked,
                after: Role::Choked,
                interested: p.interested,
                eligible_regular: false,
                newcomer: false,
                turn_done: false,
                opt_running: false,
                opt_new: false,
                opt_cycle: None,
                uploaded: p.uploaded,
                am_choking: p.am_choking,
            });
        }
        // Key order, whatever the caller's order; a duplicate key keeps its first entry
        // (keys are unique after the dedup, so an unstable sort gives the same order).
        cands.sort_unstable_by_key(|c| (c.key, c.idx));
        cands.dedup_by(|later, earlier| later.key == earlier.key);
        // The memo of these peers, in the same order: a merge of two key-ordered lists. Peers
        // gone since the last call drop out; new ones start choked, waiting from now.
        let mut memo = std::mem::take(&mut self.memo_spare);
        memo.clear();
        let mut old = self.memo.iter().peekable();
        for c in &cands {
            while old.next_if(|(k, _)| *k < c.key).is_some() {}
            let m = match old.next_if(|(k, _)| *k == c.key) {
                Some((_, m)) => *m,
                None => Memo {
                    role: Role::Choked,
                    since: now,
                    uploaded_base: 0,
                    opt_since: now,
                    opt_cycle: None,
                },
            };
            memo.push((c.key, m));
        }
        self.memo_spare = std::mem::replace(&mut self.memo, memo);

        for (c, (_, m)) in cands.iter_mut().zip(self.memo.iter_mut()) {
            let Some(p) = peers.get(c.idx) else {
                continue;
            };
            // The caller's flag is the truth: a peer it reports choked is choked (a replaced
            // connection, or a decision not applied), and it waits from now.
            if p.am_choking && m.role != Role::Choked {
                m.role = Role::Choked;
                m.since = now;
            }
            c.before = m.role;
            c.opt_cycle = m.opt_cycle;
            c.newcomer = now.saturating_duration_since(p.connected_at) < cfg.newcomer_window;
            c.opt_running = m.role == Role::Optimistic
                && now < m.opt_since.saturating_add(cfg.optimistic_interval);
            let tiebreak = self.rng.next_u64();
            match mode {
                Mode::Leech => {
                    c.eligible_regular = p.interested && !p.is_snubbed(now, cfg.snub_timeout);
                    let fresh = m.role == Role::Regular
                        && now < m.since.saturating_add(cfg.rechoke_interval);
                    c.rank = (
                        u8::from(!fresh),
                        u64::MAX - p.download_rate,
                        u8::from(m.role == Role::Choked),
                        tiebreak,
                    );
                }
                Mode::Seed => {
                    c.eligible_regular = p.interested;
                    let held = now.saturating_duration_since(m.since);
                    c.turn_done = m.role == Role::Regular
                        && held >= cfg.seed_turn
                        && (p.uploaded.saturating_sub(m.uploaded_base) >= cfg.seed_turn_bytes
                            || held >= cfg.seed_turn_max);
                    c.rank = if m.role == Role::Regular && !c.turn_done {
                        (0, u64::MAX - p.upload_rate, 0, tiebreak)
                    } else {
                        // The queue: longest waiting first; peers just served go to the back.
                        let waiting_since = if m.role == Role::Choked { m.since } else { now };
                        (1, waiting_since.as_micros(), 0, tiebreak)
                    };
                }
            }
        }

        // Rank order (ties, which need equal random draws, in key order), as a permutation:
        // the candidates stay in key order, lined up with the memo, and nothing large moves.
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(0..cands.len());
        order.sort_unstable_by_key(|&i| cands.get(i).map(|c| (c.rank, c.key)));

        // Regular slots, in rank order.
        let mut taken = 0;
        let passes: &[Option<Role>] = if full {
            &[None]
        } else {
            // Interim: keep eligible holders, then fill from the choked.
            &[Some(Role::Regular), Some(Role::Choked)]
        };
        for pass in passes {
            for &i in &order {
                if taken >= cfg.regular_slots {
                    break;
                }
                let Some(c) = cands.get_mut(i) else {
                    continue;
                };
                if c.after == Role::Choked
                    && c.eligible_regular
                    && pass.is_none_or(|r| c.before == r)
                {
                    c.after = Role::Regular;
                    out.regular.push(c.key);
                    taken += 1;
                }
            }
        }

        // Optimistic slots: keep running ones (all of them between rounds), then draw.
        let mut opt_taken = 0;
        for &i in &order {
            let Some(c) = cands.get_mut(i) else {
                continue;
            };
            if opt_taken < cfg.optimistic_slots
                && c.after == Role::Choked
                && c.before == Role::Optimistic
                && c.interested
                && (c.opt_running || !full)
            {
                c.after = Role::Optimistic;
                out.optimistic.push(c.key);
                opt_taken += 1;
            }
        }
        while opt_taken < cfg.optimistic_slots {
            match self.draw_optimistic(&mut cands, &order, cfg.newcomer_weight) {
                Some(key) => {
                    out.optimistic.push(key);
                    opt_taken += 1;
                }
                None => break,
            }
        }

        // Remember, and list the messages to send, in key order.
        self.order = order;
        for (c, (_, m)) in cands.iter().zip(self.memo.iter_mut()) {
            let unchoked = c.after != Role::Choked;
            if unchoked && c.am_choking {
                out.unchoke.push(c.key);
            } else if !unchoked && !c.am_choking {
                out.choke.push(c.key);
            }
            match (c.before, c.after) {
                (Role::Choked, Role::Regular | Role::Optimistic) => {
                    m.since = now;
                    m.uploaded_base = c.uploaded;
                }
                (Role::Regular, Role::Regular) if c.turn_done && full => {
                    // Nobody was waiting at this round: the turn starts over. (An interim call
                    // only keeps the holder until the round rotates it.)
                    m.since = now;
                    m.uploaded_base = c.uploaded;
                }
                (Role::Regular | Role::Optimistic, Role::Choked) => m.since = now,
                _ => {}
            }
            if c.opt_new {
                m.opt_since = now;
            }
            m.opt_cycle = c.opt_cycle;
            m.role = c.after;
        }
        self.scratch = cands;
        self.slot_free = taken < cfg.regular_slots || opt_taken < cfg.optimistic_slots;

        if full {
            self.next_round = now.saturating_add(cfg.rechoke_interval);
            self.last_mode = Some(mode);
            self.rounds += 1;
        }
    }

    /// Draws one optimistic peer among the interested peers not yet unchoked (preferring those
    /// that were choked before this call), without replacement within a cycle, newcomers
    /// weighing `newcomer_weight`; the ticket walks the candidates in rank `order`. Marks and
    /// returns it; `None` if nobody qualifies.
    fn draw_optimistic(
        &mut self,
        cands: &mut [Cand<K>],
        order: &[usize],
        newcomer_weight: u64,
    ) -> Option<K> {
        let was_choked = cands
            .iter()
            .any(|c| c.after == Role::Choked && c.interested && c.before == Role::Choked);
        // Peers unchoked until now (dropped regulars, an expired optimistic) only if nobody else.
        let in_pool = |c: &Cand<K>| {
            c.after == Role::Choked && c.interested && (!was_choked || c.before == Role::Choked)
        };
        if !cands.iter().any(in_pool) {
            return None;
        }
        let cycle = self.cycle;
        let unserved = |c: &Cand<K>| in_pool(c) && c.opt_cycle != Some(cycle);
        let mut fresh_only = cands.iter().any(unserved);
        if !fresh_only {
            // Everyone in the pool had a turn: a new cycle. The optimistic peer that just
            // expired counts as served in it, so it is not drawn again straight away.
            self.cycle += 1;
            for c in cands.iter_mut() {
                if c.before == Role::Optimistic && c.after == Role::Choked {
                    c.opt_cycle = Some(self.cycle);
                }
            }
            let cycle = self.cycle;
            fresh_only = cands
                .iter()
                .any(|c| in_pool(c) && c.opt_cycle != Some(cycle));
        }
        let cycle = self.cycle;
        let weight = |c: &Cand<K>| -> u64 {
            if !in_pool(c) || (fresh_only && c.opt_cycle == Some(cycle)) {
                0
            } else if c.newcomer {
                newcomer_weight
            } else {
                1
            }
        };
        let total = cands
            .iter()
            .map(weight)
            .fold(0u64, |a, w| a.saturating_add(w));
        let mut ticket = self.rng.below(total);
        for &i in order {
            let Some(c) = cands.get_mut(i) else {
                continue;
            };
            let w = weight(c);
            if w == 0 {
                continue;
            }
            if ticket < w {
                c.after = Role::Optimistic;
                c.opt_new = true;
                c.opt_cycle = Some(cycle);
                return Some(c.key);
            }
            ticket -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Write as _;

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    /// An interested peer, connected at the origin, sending us `dl` bytes/s.
    fn peer(key: u32, dl: u64) -> PeerStats<u32> {
        PeerStats {
            interested: true,
            download_rate: dl,
            ..PeerStats::new(key, Instant::ZERO)
        }
    }

    fn choker(seed: u64) -> Choker<u32> {
        Choker::new(ChokerConfig::default(), Rng::new(seed)).unwrap()
    }

    /// What the caller must do with a decision: make `am_choking` match it.
    fn apply(peers: &mut [PeerStats<u32>], d: &ChokeDecision<u32>) {
        for p in peers.iter_mut() {
            p.am_choking = !d.is_unchoked(&p.key);
        }
    }

    fn sorted(v: &[u32]) -> Vec<u32> {
        let mut v = v.to_vec();
        v.sort();
        v
    }

    /// Runs rounds at `start, start+10 s, ...` applying each decision.
    fn run_rounds(
        c: &mut Choker<u32>,
        peers: &mut [PeerStats<u32>],
        mode: Mode,
        start: u64,
        rounds: u64,
    ) -> Vec<ChokeDecision<u32>> {
        (0..rounds)
            .map(|i| {
                let d = c.rechoke(s(start + 10 * i), mode, peers);
                assert!(d.full_round);
                apply(peers, &d);
                d
            })
            .collect()
    }

    #[test]
    fn has_free_slot_follows_the_last_decision() {
        let mut c = choker(1);
        assert!(c.has_free_slot(), "nothing decided yet");
        // 4 regular + 1 optimistic slots; 3 interested peers leave two empty.
        let mut peers: Vec<_> = (1..=3).map(|k| peer(k, 1000)).collect();
        let d = c.rechoke(s(0), Mode::Leech, &peers);
        apply(&mut peers, &d);
        assert!(c.has_free_slot());
        // Five fill every slot.
        peers.extend((4..=5).map(|k| peer(k, 1000)));
        let d = c.rechoke(s(1), Mode::Leech, &peers);
        apply(&mut peers, &d);
        assert!(!c.has_free_slot());
        // A holder loses interest and nobody waits: its slot stays empty.
        let holder = d.regular[0];
        for p in peers.iter_mut().filter(|p| p.key == holder) {
            p.interested = false;
        }
        c.rechoke(s(2), Mode::Leech, &peers);
        assert!(c.has_free_slot());
        c.set_config(ChokerConfig::default()).unwrap();
        assert!(
            c.has_free_slot(),
            "a new configuration may have added slots"
        );
    }

    #[test]
    fn fastest_uploaders_to_us_get_the_regular_slots() {
        let mut peers: Vec<_> = (1..=8).map(|k| peer(k, u64::from(k) * 1000)).collect();
        let mut c = choker(1);
        let d = c.rechoke(s(0), Mode::Leech, &peers);
        assert_eq!(d.regular, vec![8, 7, 6, 5]);
        assert_eq!(d.optimistic.len(), 1);
        assert!(d.optimistic[0] <= 4);
        let mut all = d.regular.clone();
        all.extend(&d.optimistic);
        assert_eq!(d.unchoke, sorted(&all));
        assert!(d.choke.is_empty());
        apply(&mut peers, &d);
        // Peer 1 becomes the fastest: it takes the slowest regular's slot at the next round.
        peers[0].download_rate = 1_000_000;
        let d = c.rechoke(s(10), Mode::Leech, &peers);
        assert_eq!(d.regular, vec![1, 8, 7, 6]);
        assert!(!d.is_unchoked(&5) || d.optimistic == vec![5]);
    }

    #[test]
    fn uninterested_peers_never_hold_a_slot() {
        let mut peers: Vec<_> = (1..=8).map(|k| peer(k, 1_000_000 * u64::from(k))).collect();
        for p in peers.iter_mut().take(6) {
            p.interested = false;
            p.am_choking = false; // unchoked earlier, then lost interest
        }
        let mut c = choker(2);
        let ds = run_rounds(&mut c, &mut peers, Mode::Leech, 0, 30);
        assert_eq!(ds[0].choke, vec![1, 2, 3, 4, 5, 6]);
        for d in &ds {
            assert_eq!(sorted(&d.regular), vec![7, 8]);
            assert!(d.optimistic.is_empty());
        }
        let ds = run_rounds(&mut c, &mut peers, Mode::Seed, 300, 30);
        for d in &ds {
            assert_eq!(sorted(&d.regular), vec![7, 8]);
        }
    }

    #[test]
    fn snubbed_peer_loses_its_regular_slot_but_can_be_optimistic() {
        let mut peers: Vec<_> = (1..=8).map(|k| peer(k, u64::from(k) * 1000)).collect();
        let mut snubber = peer(9, 1_000_000);
        snubber.expecting_since = Some(s(0));
        snubber.last_block_at = Some(s(5));
        peers.push(snubber);
        let mut c = choker(3);
        // Snubbed from t = 65 s (60 s after its last block).
        let ds = run_rounds(&mut c, &mut peers, Mode::Leech, 0, 7);
        for d in &ds {
            assert_eq!(d.regular[0], 9);
        }
        assert!(peers[8].is_snubbed(s(65), Duration::from_secs(60)));
        assert!(!peers[8].is_snubbed(s(64), Duration::from_secs(60)));
        let ds = run_rounds(&mut c, &mut peers, Mode::Leech, 70, 60);
        assert!(ds.iter().all(|d| !d.regular.contains(&9)));
        assert_eq!(ds[0].regular, vec![8, 7, 6, 5]);
        assert!(ds.iter().any(|d| d.optimistic == vec![9]));
        // A block arrives: no longer snubbed, the slot comes back at the next round.
        peers[8].last_block_at = Some(s(700));
        let d = c.rechoke(s(700), Mode::Leech, &peers);
        assert_eq!(d.regular[0], 9);
    }

    #[test]
    fn optimistic_rotates_every_third_round() {
        let mut peers: Vec<_> = (1..=4).map(|k| peer(k, 1_000_000)).collect();
        peers.extend((5..=12).map(|k| peer(k, 0)));
        let mut c = choker(4);
        let ds = run_rounds(&mut c, &mut peers, Mode::Leech, 0, 60);
        for (i, pair) in ds.windows(2).enumerate() {
            let (prev, cur) = (&pair[0].optimistic, &pair[1].optimistic);
            assert_eq!(cur.len(), 1);
            if (i + 1) % 3 == 0 {
                assert_ne!(prev, cur, "round {} should rotate", i + 1);
            } else {
                assert_eq!(prev, cur, "round {} should keep", i + 1);
            }
        }
    }

    #[test]
    fn optimistic_covers_every_choked_interested_peer_within_one_cycle() {
        for seed in 0..50 {
            let mut peers: Vec<_> = (1..=4).map(|k| peer(k, 1_000_000)).collect();
            peers.extend((5..=16).map(|k| peer(k, 0)));
            let mut c = choker(seed);
            // 12 candidates, one draw per 3 rounds: 12 draws cover them all, none twice.
            let ds = run_rounds(&mut c, &mut peers, Mode::Leech, 0, 36);
            let picks: Vec<u32> = ds.iter().step_by(3).map(|d| d.optimistic[0]).collect();
            assert_eq!(sorted(&picks), (5..=16).collect::<Vec<_>>(), "seed {seed}");
        }
    }

    #[test]
    fn newcomers_are_three_times_as_likely_to_be_picked() {
        // 4 fast regulars, 9 old choked peers and one peer connected 5 s ago.
        let mut counts = BTreeMap::<u32, u32>::new();
        let t0 = s(1000);
        for seed in 0..3000 {
            let mut peers: Vec<_> = (1..=4).map(|k| peer(k, 1_000_000)).collect();
            peers.extend((5..=13).map(|k| peer(k, 0)));
            peers.push(PeerStats {
                connected_at: s(995),
                ..peer(14, 0)
            });
            let mut c = choker(seed);
            let d = c.rechoke(t0, Mode::Leech, &peers);
            *counts.entry(d.optimistic[0]).or_default() += 1;
        }
        // Expected: newcomer 3/12 = 750, each old peer 1/12 = 250.
        let newcomer = counts[&14];
        assert!((650..=850).contains(&newcomer), "{counts:?}");
        for k in 5..=13 {
            assert!((180..=320).contains(&counts[&k]), "{counts:?}");
        }
    }

    #[test]
    fn newcomer_joining_mid_cycle_is_drawn_soon() {
        // 4 regulars and 6 old candidates; a newcomer joins after the first draw. It is unserved
        // in the current cycle, so it is drawn within the cycle's remaining draws.
        let mut firsts = 0;
        for seed in 0..200 {
            let mut peers: Vec<_> = (1..=4).map(|k| peer(k, 1_000_000)).collect();
            peers.extend((5..=10).map(|k| peer(k, 0)));
            let mut c = choker(seed);
            run_rounds(&mut c, &mut peers, Mode::Leech, 200, 3);
            peers.push(PeerStats {
                connected_at: s(225),
                ..peer(11, 0)
            });
            let ds = run_rounds(&mut c, &mut peers, Mode::Leech, 230, 18);
            let picks: Vec<u32> = ds.iter().step_by(3).map(|d| d.optimistic[0]).collect();
            assert!(picks.contains(&11), "seed {seed}: {picks:?}");
            firsts += u32::from(picks[0] == 11);
        }
        // 5 unserved old peers (weight 1) and the newcomer (weight 3): 3/8 of first draws.
        assert!((55..=95).contains(&firsts), "{firsts}");
    }

    #[test]
    fn interim_calls_fill_free_slots_and_choke_only_the_ineligible() {
        let mut c = choker(5);
        let mut peers = vec![peer(1, 10), peer(2, 20)];
        let d = c.rechoke(s(0), Mode::Leech, &peers);
        assert!(d.full_round);
        assert_eq!(d.regular, vec![2, 1]);
        assert!(d.optimistic.is_empty());
        apply(&mut peers, &d);
        assert_eq!(c.next_deadline(), s(10));
        // Four peers connect and are interested: two free regular slots and the optimistic one.
        peers.extend((3..=6).map(|k| PeerStats {
            connected_at: s(3),
            ..peer(k, 0)
        }));
        let d = c.rechoke(s(3), Mode::Leech, &peers);
        assert!(!d.full_round);
        assert_eq!(d.regular.len(), 4);
        assert_eq!(&d.regular[..2], &[2, 1]);
        assert_eq!(d.optimistic.len(), 1);
        assert!(d.choke.is_empty());
        assert_eq!(
            c.next_deadline(),
            s(10),
            "interim calls do not move the round"
        );
        apply(&mut peers, &d);
        let unchoked: BTreeSet<u32> = d.regular.iter().chain(&d.optimistic).copied().collect();
        // A regular peer loses interest: it is choked and its slot refilled, nobody else moves.
        let leaving = d.regular[3];
        peers
            .iter_mut()
            .find(|p| p.key == leaving)
            .unwrap()
            .interested = false;
        let d2 = c.rechoke(s(5), Mode::Leech, &peers);
        assert_eq!(d2.choke, vec![leaving]);
        assert_eq!(d2.unchoke.len(), 1);
        assert_eq!(&d2.regular[..3], &d.regular[..3]);
        assert_eq!(d2.optimistic, d.optimistic);
        assert!(!unchoked.contains(&d2.unchoke[0]));
        apply(&mut peers, &d2);
        // A peer disconnects: it just disappears from the slice, and its slot is refilled.
        let gone = d2.regular[0];
        peers.retain(|p| p.key != gone);
        let d3 = c.rechoke(s(6), Mode::Leech, &peers);
        assert!(d3.choke.is_empty());
        assert_eq!(d3.regular.len() + d3.optimistic.len(), 4);
    }

    #[test]
    fn a_peer_unchoked_between_rounds_is_not_choked_at_the_next_round() {
        let cfg = ChokerConfig {
            optimistic_slots: 0,
            ..ChokerConfig::default()
        };
        let mut c = Choker::new(cfg, Rng::new(6)).unwrap();
        let mut peers: Vec<_> = (1..=5).map(|k| peer(k, u64::from(k) * 1000)).collect();
        peers[4].download_rate = 10; // peer 5: slow
        let mut fast = peer(6, 50_000);
        fast.interested = false;
        peers.push(fast);
        let d = c.rechoke(s(0), Mode::Leech, &peers);
        assert_eq!(d.regular, vec![4, 3, 2, 1]);
        apply(&mut peers, &d);
        // Peer 1 disconnects at 8 s: peer 5 gets its slot.
        peers.remove(0);
        let d = c.rechoke(s(8), Mode::Leech, &peers);
        assert_eq!(d.regular, vec![4, 3, 2, 5]);
        apply(&mut peers, &d);
        // At the 10 s round fast peer 6 is interested; peer 5, unchoked 2 s ago, keeps its
        // slot (no fibrillation) and the slowest of the others makes room.
        peers.iter_mut().find(|p| p.key == 6).unwrap().interested = true;
        let d = c.rechoke(s(10), Mode::Leech, &peers);
        assert_eq!(d.regular, vec![5, 6, 4, 3]);
        assert_eq!(d.choke, vec![2]);
        apply(&mut peers, &d);
        // One round later peer 5 competes on its rate like everyone else.
        let d = c.rechoke(s(20), Mode::Leech, &peers);
        assert_eq!(d.regular, vec![6, 4, 3, 2]);
        assert_eq!(d.choke, vec![5]);
    }

    #[test]
    fn seed_mode_gives_every_interested_peer_a_turn() {
        // 20 interested peers, 4 + 1 slots; an unchoked peer downloads at its link speed.
        let speed = |k: u32| u64::from(k) * 40_000 + 5_000; // 45 KB/s .. 805 KB/s
        let mut peers: Vec<_> = (1..=20).map(|k| peer(k, 0)).collect();
        let mut c = choker(7);
        let mut first_turn = BTreeMap::<u32, usize>::new();
        let mut rounds_unchoked = BTreeMap::<u32, u32>::new();
        for round in 0..120usize {
            let now = s(10 * round as u64);
            let d = c.rechoke(now, Mode::Seed, &peers);
            assert!(d.full_round);
            assert_eq!(d.regular.len(), 4);
            assert_eq!(d.optimistic.len(), 1);
            apply(&mut peers, &d);
            for p in peers.iter_mut() {
                if !p.am_choking {
                    first_turn.entry(p.key).or_insert(round);
                    *rounds_unchoked.entry(p.key).or_default() += 1;
                    p.upload_rate = speed(p.key);
                    p.uploaded += speed(p.key) * 10;
                } else {
                    p.upload_rate = 0;
                }
            }
        }
        assert_eq!(first_turn.len(), 20, "{first_turn:?}");
        let last_first = first_turn.values().max().unwrap();
        assert!(*last_first <= 15, "{first_turn:?}");
        // Over 20 minutes the slots are shared about evenly: 600 slot-rounds over 20 peers.
        for (k, n) in &rounds_unchoked {
            assert!((18..=45).contains(n), "peer {k}: {rounds_unchoked:?}");
        }
    }

    #[test]
    fn seed_turns_end_on_time_for_slow_peers_and_survive_interim_calls() {
        let cfg = ChokerConfig {
            regular_slots: 1,
            optimistic_slots: 0,
            ..ChokerConfig::default()
        };
        let mut c = Choker::new(cfg, Rng::new(8)).unwrap();
        let mut peers = vec![peer(1, 0), peer(2, 0)];
        let ds = run_rounds(&mut c, &mut peers, Mode::Seed, 0, 20);
        // Nobody receives anything: turns last seed_turn_max (90 s = 9 rounds), then swap.
        let holders: Vec<u32> = ds.iter().map(|d| d.regular[0]).collect();
        let first = holders[0];
        assert!(holders[..9].iter().all(|h| *h == first), "{holders:?}");
        assert!(holders[9..18].iter().all(|h| *h != first), "{holders:?}");
        assert_eq!(holders[18], first);

        // Interim calls between rounds neither end nor restart a turn. The peers become
        // interested at 5 s, so the first turn starts (and is due to end) between rounds.
        let mut c = Choker::new(cfg, Rng::new(8)).unwrap();
        let mut peers = vec![peer(1, 0), peer(2, 0)];
        let mut holders = BTreeSet::new();
        for t in (0..200).step_by(5) {
            for p in peers.iter_mut() {
                p.interested = t >= 5;
            }
            let d = c.rechoke(s(t), Mode::Seed, &peers);
            assert_eq!(d.full_round, t % 10 == 0);
            if !d.full_round {
                assert!(d.choke.is_empty());
                assert_eq!(d.unchoke.len(), usize::from(t == 5), "t={t}");
            }
            apply(&mut peers, &d);
            for p in peers.iter_mut().filter(|p| !p.am_choking) {
                p.uploaded += 1 << 20;
                holders.insert(p.key);
            }
        }
        assert_eq!(holders.len(), 2);
    }

    #[test]
    fn same_seed_same_decisions_whatever_the_slice_order() {
        let run = |seed: u64, reverse: bool| {
            let mut peers: Vec<_> = (1..=12).map(|k| peer(k, u64::from(k % 5) * 100)).collect();
            let mut c = choker(seed);
            let mut out = Vec::new();
            for round in 0..40u64 {
                if round == 20 {
                    peers[3].interested = false;
                }
                let mode = if round < 25 { Mode::Leech } else { Mode::Seed };
                let mut view = peers.clone();
                if reverse {
                    view.reverse();
                }
                let d = c.rechoke(s(round * 10), mode, &view);
                apply(&mut peers, &d);
                for p in peers.iter_mut().filter(|p| !p.am_choking) {
                    p.uploaded += 300_000;
                }
                out.push(d);
            }
            out
        };
        assert_eq!(run(11, false), run(11, false));
        assert_eq!(run(11, false), run(11, true));
        assert_ne!(run(11, false), run(12, false));
    }

    #[test]
    fn deadlines_time_jumps_and_mode_changes() {
        let mut peers: Vec<_> = (1..=8).map(|k| peer(k, u64::from(k))).collect();
        let mut c = choker(9);
        assert_eq!(c.next_deadline(), Instant::ZERO);
        let d = c.rechoke(s(0), Mode::Leech, &peers);
        apply(&mut peers, &d);
        assert_eq!((c.next_deadline(), c.rounds()), (s(10), 1));
        assert!(!c.rechoke(s(5), Mode::Leech, &peers).full_round);
        assert_eq!(c.next_deadline(), s(10));
        // Five hours later: a single round, the optimistic unchoke rotates, the next round is
        // ten seconds on.
        let later = s(5 * 3600);
        let d2 = c.rechoke(later, Mode::Leech, &peers);
        assert!(d2.full_round);
        assert_ne!(d2.optimistic, d.optimistic);
        assert_eq!(c.next_deadline(), later + Duration::from_secs(10));
        assert_eq!(c.rounds(), 2);
        apply(&mut peers, &d2);
        // The download completes between rounds: the mode change forces a round.
        let d3 = c.rechoke(later + Duration::from_secs(1), Mode::Seed, &peers);
        assert!(d3.full_round);
        assert_eq!(c.next_deadline(), later + Duration::from_secs(11));
        // A clock stepping back is an interim call and changes nothing.
        apply(&mut peers, &d3);
        let d4 = c.rechoke(s(1), Mode::Seed, &peers);
        assert!(!d4.full_round && d4.choke.is_empty() && d4.unchoke.is_empty());
    }

    #[test]
    fn caller_reporting_a_peer_choked_is_believed() {
        let mut peers: Vec<_> = (1..=3).map(|k| peer(k, u64::from(k))).collect();
        let mut c = choker(10);
        let d = c.rechoke(s(0), Mode::Leech, &peers);
        assert_eq!(d.unchoke, vec![1, 2, 3]);
        // The caller did not apply it (am_choking still true): it is asked again.
        let d = c.rechoke(s(1), Mode::Leech, &peers);
        assert_eq!(d.unchoke, vec![1, 2, 3]);
        apply(&mut peers, &d);
        assert!(c.rechoke(s(2), Mode::Leech, &peers).unchoke.is_empty());
    }

    #[test]
    fn empty_zero_slots_and_duplicate_keys() {
        let mut c = choker(11);
        let d = c.rechoke(s(0), Mode::Leech, &[]);
        assert!(d.regular.is_empty() && d.optimistic.is_empty());
        let peers = vec![peer(1, 5), peer(1, 9), peer(2, 1)];
        let d = c.rechoke(s(10), Mode::Leech, &peers);
        assert_eq!(d.regular, vec![1, 2]);
        assert_eq!(d.unchoke, vec![1, 2]);
        let cfg = ChokerConfig {
            regular_slots: 0,
            optimistic_slots: 0,
            ..ChokerConfig::default()
        };
        let mut z = Choker::new(cfg, Rng::new(1)).unwrap();
        let mut peers = vec![peer(1, 5)];
        peers[0].am_choking = false;
        let d = z.rechoke(s(0), Mode::Seed, &peers);
        assert_eq!(d.choke, vec![1]);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = |cfg: ChokerConfig| Choker::<u32>::new(cfg, Rng::new(0)).unwrap_err();
        let d = ChokerConfig::default();
        assert_eq!(
            bad(ChokerConfig {
                rechoke_interval: Duration::ZERO,
                ..d
            }),
            ChokerError::RechokeIntervalTooShort(Duration::ZERO)
        );
        assert_eq!(
            bad(ChokerConfig {
                newcomer_weight: 0,
                ..d
            }),
            ChokerError::ZeroNewcomerWeight
        );
        let e = bad(ChokerConfig {
            seed_turn_max: Duration::from_secs(1),
            ..d
        });
        assert_eq!(
            e.to_string(),
            "choker seed_turn_max 1s is shorter than seed_turn 30s"
        );
        let mut c = choker(0);
        assert!(
            c.set_config(ChokerConfig {
                newcomer_weight: 0,
                ..d
            })
            .is_err()
        );
        assert!(
            c.set_config(ChokerConfig {
                regular_slots: 2,
                ..d
            })
            .is_ok()
        );
        assert_eq!(c.config().regular_slots, 2);
    }

    /// A fixed scenario, printed one line per call, for review and as a regression record.
    #[test]
    fn decision_sequence_snapshot() {
        let mut c = choker(2024);
        // Leech until 120 s, then seed. Peers 1-5 send at different rates; 6 and 7 send
        // nothing; 8 is fast but not interested; 9 is the fastest until it stops sending at
        // 40 s: snubbed from 100 s (its stale rate drops to 0 at 110 s). Peer 10 connects at
        // 45 s; peer 3 disconnects at 65 s. Every unchoked peer receives 2 MB per call.
        let mut peers: Vec<_> = [
            (1, 500),
            (2, 300),
            (3, 200),
            (4, 100),
            (5, 50),
            (6, 0),
            (7, 0),
        ]
        .iter()
        .map(|&(k, kbps)| peer(k, kbps * 1000))
        .collect();
        peers.push(PeerStats {
            interested: false,
            ..peer(8, 800_000)
        });
        peers.push(PeerStats {
            expecting_since: Some(s(0)),
            last_block_at: Some(s(0)),
            ..peer(9, 900_000)
        });
        let mut log = String::new();
        let mut calls: Vec<(u64, Mode)> = (0..=12).map(|i| (i * 10, Mode::Leech)).collect();
        calls.extend([(45, Mode::Leech), (65, Mode::Leech)]);
        calls.extend((12..=30).map(|i| (i * 10 + 5, Mode::Seed)));
        calls.sort();
        for (t, mode) in calls {
            let now = s(t);
            let p9 = peers.iter_mut().find(|p| p.key == 9).unwrap();
            if t <= 40 {
                p9.last_block_at = Some(now);
            } else if t >= 110 {
                p9.download_rate = 0;
            }
            if t == 45 {
                peers.push(PeerStats {
                    connected_at: now,
                    ..peer(10, 0)
                });
            }
            if t == 65 {
                peers.retain(|p| p.key != 3);
            }
            let d = c.rechoke(now, mode, &peers);
            apply(&mut peers, &d);
            for p in peers.iter_mut() {
                p.upload_rate = if p.am_choking { 0 } else { 200_000 };
                if !p.am_choking {
                    p.uploaded += 2_000_000;
                }
            }
            let list = |v: &[u32]| {
                v.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            writeln!(
                log,
                "t={t:>3}s {:<7} {:<5} regular=[{}] optimistic=[{}] unchoke=[{}] choke=[{}]",
                if d.full_round { "round" } else { "interim" },
                format!("{mode:?}").to_lowercase(),
                list(&d.regular),
                list(&d.optimistic),
                list(&d.unchoke),
                list(&d.choke),
            )
            .unwrap();
        }
        insta::assert_snapshot!(log);
    }

    /// One random change to the proptests' peer list: `op` 0 removes `key`, 1 connects it
    /// (if absent), anything else updates it with `update`.
    fn change_peer(
        peers: &mut Vec<PeerStats<u32>>,
        key: u32,
        op: u8,
        t: Instant,
        update: impl Fn(&mut PeerStats<u32>),
    ) {
        match op {
            0 => peers.retain(|p| p.key != key),
            1 if !peers.iter().any(|p| p.key == key) => peers.push(PeerStats {
                connected_at: t,
                ..PeerStats::new(key, t)
            }),
            _ => peers.iter_mut().filter(|p| p.key == key).for_each(update),
        }
    }

    proptest! {
        /// Whatever happens between calls, the decision respects the slots and interest, the
        /// message lists match the flags, and interim calls choke only ineligible peers.
        #[test]
        fn decisions_respect_their_invariants(
            seed in any::<u64>(),
            steps in proptest::collection::vec(
                (0u64..25_000_000, any::<bool>(), proptest::collection::vec(
                    (0u32..12, any::<bool>(), 0u64..1000, 0u8..4), 0..6)),
                1..40),
        ) {
            let mut c = choker(seed);
            let mut peers: Vec<PeerStats<u32>> = Vec::new();
            let mut now = 0u64;
            let mut out = ChokeDecision::new();
            for (dt, seed_mode, changes) in steps {
                now += dt;
                let t = Instant::from_micros(now);
                for (key, interested, rate, op) in changes {
                    change_peer(&mut peers, key, op, t, |p| {
                        p.interested = interested;
                        p.download_rate = rate;
                        p.expecting_since = Some(Instant::ZERO);
                        p.last_block_at = Some(t);
                    });
                }
                let mode = if seed_mode { Mode::Seed } else { Mode::Leech };
                c.rechoke_into(t, mode, &peers, &mut out);
                let cfg = *c.config();
                prop_assert!(out.regular.len() <= cfg.regular_slots);
                prop_assert!(out.optimistic.len() <= cfg.optimistic_slots);
                let mut seen = BTreeSet::new();
                for k in out.regular.iter().chain(&out.optimistic) {
                    prop_assert!(seen.insert(*k), "{} twice", k);
                    let p = peers.iter().find(|p| p.key == *k).unwrap();
                    prop_assert!(p.interested);
                }
                for p in &peers {
                    let unchoked = out.is_unchoked(&p.key);
                    prop_assert_eq!(out.unchoke.contains(&p.key), unchoked && p.am_choking);
                    prop_assert_eq!(out.choke.contains(&p.key), !unchoked && !p.am_choking);
                    if !out.full_round && out.choke.contains(&p.key) {
                        prop_assert!(!p.interested
                            || (mode == Mode::Leech && p.is_snubbed(t, cfg.snub_timeout)));
                    }
                }
                apply(&mut peers, &out);
            }
        }

        /// The choker reads a rate only where it ranks by it (download in leech mode, upload
        /// in seed mode, interested peers only): zeroing every other rate, as the session
        /// does to save their divisions, changes no decision.
        #[test]
        fn unranked_rates_do_not_matter(
            seed in any::<u64>(),
            steps in proptest::collection::vec(
                (0u64..25_000_000, any::<bool>(), proptest::collection::vec(
                    (0u32..12, any::<bool>(), 0u64..1000, 0u64..1000, 0u8..4), 0..6)),
                1..40),
        ) {
            let (mut full, mut trimmed) = (choker(seed), choker(seed));
            let mut peers: Vec<PeerStats<u32>> = Vec::new();
            let mut now = 0u64;
            let (mut a, mut b) = (ChokeDecision::new(), ChokeDecision::new());
            for (dt, seed_mode, changes) in steps {
                now += dt;
                let t = Instant::from_micros(now);
                for (key, interested, down, up, op) in changes {
                    change_peer(&mut peers, key, op, t, |p| {
                        p.interested = interested;
                        p.download_rate = down;
                        p.upload_rate = up;
                    });
                }
                let mode = if seed_mode { Mode::Seed } else { Mode::Leech };
                let zeroed: Vec<PeerStats<u32>> = peers
                    .iter()
                    .map(|p| PeerStats {
                        download_rate: if p.interested && mode == Mode::Leech {
                            p.download_rate
                        } else {
                            0
                        },
                        upload_rate: if p.interested && mode == Mode::Seed {
                            p.upload_rate
                        } else {
                            0
                        },
                        ..p.clone()
                    })
                    .collect();
                full.rechoke_into(t, mode, &peers, &mut a);
                trimmed.rechoke_into(t, mode, &zeroed, &mut b);
                prop_assert_eq!(&a, &b);
                apply(&mut peers, &a);
            }
        }
    }
}
