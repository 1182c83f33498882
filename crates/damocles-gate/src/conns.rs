//! The connection table: how many connections are open, which of them have
//! shown rights, and which to drop when a newcomer needs room.
//!
//! A connection starts *untrusted*. It becomes *trusted* once one of its
//! requests that carries rights (a token, or the daemon's anonymous
//! permissions) has been read whole. Untrusted connections are what an
//! attacker without a token can hold, so they are bounded separately
//! (in all and per peer) and the oldest is dropped to make room for a
//! newcomer: holding slots costs an attacker a steady stream of new
//! connections, and a client with a token always gets in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::limits::Limits;

/// Says "drop this connection now" to its task.
pub(crate) type Eviction = oneshot::Receiver<()>;

pub(crate) struct ConnTable {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    total: usize,
    /// Untrusted connections, oldest first, with what evicts them.
    untrusted: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    /// Per peer: (all connections, untrusted ones).
    peers: HashMap<IpAddr, (usize, usize)>,
    /// Evicted, already counted out, their tasks not yet finished.
    evicted: HashSet<u64>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every slot holds a trusted connection.
    Everywhere,
    /// This peer holds its share of trusted connections.
    Peer,
}

/// One admitted connection; dropping it frees the slot.
pub(crate) struct Slot {
    id: u64,
    peer: IpAddr,
    trusted: AtomicBool,
    table: Arc<ConnTable>,
}

impl ConnTable {
    pub(crate) fn new(limits: Limits) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    /// Admits a connection from `peer`, dropping untrusted ones to make room.
    /// Loopback peers have no per-peer share: every local client is one peer.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<(Slot, Eviction), Full> {
        let capped_peer = !peer.is_loopback();
        let mut s = self.state.lock().expect("not poisoned");
        let (peer_total, peer_untrusted) = s.peers.get(&peer).copied().unwrap_or_default();
        if capped_peer && peer_untrusted >= self.limits.max_untrusted_per_peer {
            s.evict_oldest(Some(peer));
        } else if capped_peer
            && peer_total >= self.limits.max_connections_per_peer
            && !s.evict_oldest(Some(peer))
        {
            return Err(Full::Peer);
        }
        if s.untrusted.len() >= self.limits.max_untrusted {
            s.evict_oldest(None);
        }
        if s.total >= self.limits.max_connections && !s.evict_oldest(None) {
            return Err(Full::Everywhere);
        }
        let id = s.next_id;
        s.next_id += 1;
        s.total += 1;
        let (tx, rx) = oneshot::channel();
        s.untrusted.insert(id, (peer, tx));
        let counts = s.peers.entry(peer).or_default();
        counts.0 += 1;
        counts.1 += 1;
        drop(s);
        let slot = Slot {
            id,
            peer,
            trusted: AtomicBool::new(false),
            table: Arc::clone(self),
        };
        Ok((slot, rx))
    }

    /// (open connections, untrusted ones).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().expect("not poisoned");
        (s.total, s.untrusted.len())
    }
}

impl State {
    /// Evicts the oldest untrusted connection (of `peer`, if given); whether
    /// there was one. It is counted out at once so that the newcomer fits;
    /// its task drops the connection when it sees the signal.
    fn evict_oldest(&mut self, peer: Option<IpAddr>) -> bool {
        let victim = self
            .untrusted
            .iter()
            .find(|(_, (p, _))| peer.is_none_or(|want| *p == want))
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        let (p, tx) = self.untrusted.remove(&id).expect("just found");
        // The task may be gone already; then its slot is being freed anyway.
        let _ = tx.send(());
        self.count_out(p, true);
        self.evicted.insert(id);
        true
    }

    /// Takes one connection of `peer` off the counts.
    fn count_out(&mut self, peer: IpAddr, untrusted: bool) {
        self.total -= 1;
        if let Some(c) = self.peers.get_mut(&peer) {
            c.0 -= 1;
            c.1 -= usize::from(untrusted);
            if c.0 == 0 {
                self.peers.remove(&peer);
            }
        }
    }
}

impl Slot {
    /// Marks the connection trusted: it is never evicted from now on.
    pub(crate) fn trust(&self) {
        if self.trusted.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut s = self.table.state.lock().expect("not poisoned");
        if s.untrusted.remove(&self.id).is_some() {
            if let Some(c) = s.peers.get_mut(&self.peer) {
                c.1 -= 1;
            }
        }
    }
}

impl Slot {
    /// Whether [`Slot::trust`] was called.
    pub(crate) fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.table.state.lock().expect("not poisoned");
        if s.evicted.remove(&self.id) {
            return; // counted out when it was evicted
        }
        let untrusted = s.untrusted.remove(&self.id).is_some();
        s.count_out(self.peer, untrusted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            max_untrusted: 2,
            max_connections_per_peer: 3,
            max_untrusted_per_peer: 2,
            ..Limits::default()
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const FAR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn newcomers_evict_the_oldest_untrusted_never_a_trusted_one() {
        let t = ConnTable::new(limits());
        let (a, mut a_ev) = t.admit(LOCAL).unwrap();
        a.trust();
        let (_b, mut b_ev) = t.admit(LOCAL).unwrap();
        let (_c, mut c_ev) = t.admit(LOCAL).unwrap();
        assert_eq!(t.counts(), (3, 2));
        // The untrusted pool is full: the oldest untrusted (b) goes.
        let (d, _d_ev) = t.admit(LOCAL).unwrap();
        assert!(b_ev.try_recv().is_ok());
        assert!(c_ev.try_recv().is_err());
        assert!(a_ev.try_recv().is_err());
        assert_eq!(t.counts(), (3, 2));
        d.trust();
        let (e, _e_ev) = t.admit(LOCAL).unwrap();
        e.trust();
        // Total full: c, the only untrusted left, makes room.
        let (f, _) = t.admit(LOCAL).unwrap();
        assert!(c_ev.try_recv().is_ok());
        f.trust();
        assert_eq!(t.counts(), (4, 0));
        // Every slot trusted: refused.
        assert_eq!(t.admit(LOCAL).err(), Some(Full::Everywhere));
        drop(a);
        assert_eq!(t.counts(), (3, 0));
        assert!(t.admit(LOCAL).is_ok());
    }

    #[test]
    fn a_remote_peer_is_held_to_its_share() {
        let t = ConnTable::new(Limits {
            max_untrusted: 10,
            max_connections: 10,
            ..limits()
        });
        let (x, mut x_ev) = t.admit(FAR).unwrap();
        let (_y, _) = t.admit(FAR).unwrap();
        // Its third untrusted connection pushes out its own oldest.
        let (_z, _) = t.admit(FAR).unwrap();
        assert!(x_ev.try_recv().is_ok());
        drop(x);
        let (o, mut o_ev) = t.admit(OTHER).unwrap();
        assert!(o_ev.try_recv().is_err(), "another peer is untouched");
        o.trust();
        assert_eq!(t.counts(), (3, 2));
    }

    #[test]
    fn counts_return_to_zero() {
        let t = ConnTable::new(limits());
        let slots: Vec<_> = (0..6).filter_map(|_| t.admit(FAR).ok()).collect();
        drop(slots);
        assert_eq!(t.counts(), (0, 0));
        assert!(t.state.lock().unwrap().peers.is_empty());
        assert!(t.state.lock().unwrap().evicted.is_empty());
    }
}
