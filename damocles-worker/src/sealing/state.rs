//! The sealer plan as data: damocles' state and event names, and the one
//! function ([`SectorDoc::apply`]) that moves a sector document from state to
//! state. An event that does not belong to the current state is refused, so a
//! bug or a stale retry can never skip a stage.

use damocles_api::{AllocatedSector, Seed, Ticket};
use serde::{Deserialize, Serialize};
use vc_processors::tasks::{
    PieceInfo, SealCommitPhase1Output, SealPreCommitPhase1Output, SealPreCommitPhase2Output,
};

/// Where a sector is, named as damocles names it (these names go over the
/// wire in ReportState and are what `worker resume --state` takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    Empty,
    Allocated,
    DealsAcquired,
    PieceAdded,
    TreeDBuilt,
    TicketAssigned,
    PC1Done,
    PC2Done,
    PCSubmitted,
    PCLanded,
    Persisted,
    PersistanceSubmitted,
    SeedAssigned,
    C1Done,
    C2Done,
    ProofSubmitted,
    Finished,
    Aborted,
}

impl State {
    pub const ALL: [State; 18] = [
        State::Empty,
        State::Allocated,
        State::DealsAcquired,
        State::PieceAdded,
        State::TreeDBuilt,
        State::TicketAssigned,
        State::PC1Done,
        State::PC2Done,
        State::PCSubmitted,
        State::PCLanded,
        State::Persisted,
        State::PersistanceSubmitted,
        State::SeedAssigned,
        State::C1Done,
        State::C2Done,
        State::ProofSubmitted,
        State::Finished,
        State::Aborted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Allocated => "Allocated",
            State::DealsAcquired => "DealsAcquired",
            State::PieceAdded => "PieceAdded",
            State::TreeDBuilt => "TreeDBuilt",
            State::TicketAssigned => "TicketAssigned",
            State::PC1Done => "PC1Done",
            State::PC2Done => "PC2Done",
            State::PCSubmitted => "PCSubmitted",
            State::PCLanded => "PCLanded",
            State::Persisted => "Persisted",
            State::PersistanceSubmitted => "PersistanceSubmitted",
            State::SeedAssigned => "SeedAssigned",
            State::C1Done => "C1Done",
            State::C2Done => "C2Done",
            State::ProofSubmitted => "ProofSubmitted",
            State::Finished => "Finished",
            State::Aborted => "Aborted",
        }
    }

    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Finished | State::Aborted)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened; each carries what the step produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event {
    Allocate(AllocatedSector),
    AcquireDeals(Vec<PieceInfo>),
    AddPiece(Vec<PieceInfo>),
    BuildTreeD,
    AssignTicket(Ticket),
    PC1(SealPreCommitPhase1Output),
    PC2(SealPreCommitPhase2Output),
    SubmitPC,
    /// The precommit failed on chain: back to PC2Done to submit again.
    ReSubmitPC,
    CheckPC,
    /// The persist store instance the files were copied to.
    Persist(String),
    SubmitPersistance,
    AssignSeed(Seed),
    C1(Box<SealCommitPhase1Output>),
    C2(Vec<u8>),
    SubmitProof,
    /// The prove-commit failed on chain: back to C2Done.
    ReSubmitProof,
    Finish,
    Abort(String),
}

impl Event {
    /// damocles' event name, for ReportState.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Allocate(_) => "Allocate",
            Event::AcquireDeals(_) => "AcquireDeals",
            Event::AddPiece(_) => "AddPiece",
            Event::BuildTreeD => "BuildTreeD",
            Event::AssignTicket(_) => "AssignTicket",
            Event::PC1(_) => "PC1",
            Event::PC2(_) => "PC2",
            Event::SubmitPC => "SubmitPC",
            Event::ReSubmitPC => "ReSubmitPC",
            Event::CheckPC => "CheckPC",
            Event::Persist(_) => "Persist",
            Event::SubmitPersistance => "SubmitPersistance",
            Event::AssignSeed(_) => "AssignSeed",
            Event::C1(_) => "C1",
            Event::C2(_) => "C2",
            Event::SubmitProof => "SubmitProof",
            Event::ReSubmitProof => "ReSubmitProof",
            Event::Finish => "Finish",
            Event::Abort(_) => "Abort",
        }
    }
}

/// A thread's sector: everything later stages (and a restarted worker) need.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SectorDoc {
    pub state: State,
    pub sector: Option<AllocatedSector>,
    /// Deal pieces from AcquireDeals (empty for a CC sector).
    pub deals: Vec<PieceInfo>,
    /// Pieces actually written by add_pieces.
    pub pieces: Vec<PieceInfo>,
    pub ticket: Option<Ticket>,
    pub pc1out: Option<SealPreCommitPhase1Output>,
    pub pc2out: Option<SealPreCommitPhase2Output>,
    pub persisted_to: Option<String>,
    pub seed: Option<Seed>,
    pub c1out: Option<Box<SealCommitPhase1Output>>,
    pub proof: Option<Vec<u8>>,
    /// Temporary failures retried in the current state.
    pub retries: u32,
    pub last_error: Option<String>,
    pub abort_reason: Option<String>,
}

impl Default for SectorDoc {
    fn default() -> Self {
        SectorDoc {
            state: State::Empty,
            sector: None,
            deals: vec![],
            pieces: vec![],
            ticket: None,
            pc1out: None,
            pc2out: None,
            persisted_to: None,
            seed: None,
            c1out: None,
            proof: None,
            retries: 0,
            last_error: None,
            abort_reason: None,
        }
    }
}

/// An event that does not belong to the state it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not allowed in state {state}")]
pub struct IllegalTransition {
    pub state: State,
    pub event: &'static str,
}

impl SectorDoc {
    /// Applies `event`: checks it belongs to the current state, records what it
    /// carries, moves to the next state, resets the retry count. Returns the
    /// new state; on refusal the document is unchanged.
    pub fn apply(&mut self, event: Event) -> Result<State, IllegalTransition> {
        use State::*;
        let refuse = |state: State, event: &Event| IllegalTransition {
            state,
            event: event.name(),
        };
        let next = match (self.state, &event) {
            (s, Event::Abort(_)) if !s.is_terminal() => Aborted,
            (Empty, Event::Allocate(_)) => Allocated,
            (Allocated, Event::AcquireDeals(_)) => DealsAcquired,
            (DealsAcquired, Event::AddPiece(_)) => PieceAdded,
            (PieceAdded, Event::BuildTreeD) => TreeDBuilt,
            (TreeDBuilt, Event::AssignTicket(_)) => TicketAssigned,
            (TicketAssigned, Event::PC1(_)) => PC1Done,
            (PC1Done, Event::PC2(_)) => PC2Done,
            (PC2Done, Event::SubmitPC) => PCSubmitted,
            (PCSubmitted, Event::CheckPC) => PCLanded,
            (PCSubmitted, Event::ReSubmitPC) => PC2Done,
            (PCLanded, Event::Persist(_)) => Persisted,
            (Persisted, Event::SubmitPersistance) => PersistanceSubmitted,
            (PersistanceSubmitted, Event::AssignSeed(_)) => SeedAssigned,
            (SeedAssigned, Event::C1(_)) => C1Done,
            (C1Done, Event::C2(_)) => C2Done,
            (C2Done, Event::SubmitProof) => ProofSubmitted,
            (ProofSubmitted, Event::Finish) => Finished,
            (ProofSubmitted, Event::ReSubmitProof) => C2Done,
            (state, e) => return Err(refuse(state, e)),
        };
        match event {
            Event::Allocate(s) => self.sector = Some(s),
            Event::AcquireDeals(d) => self.deals = d,
            Event::AddPiece(p) => self.pieces = p,
            Event::AssignTicket(t) => self.ticket = Some(t),
            Event::PC1(o) => self.pc1out = Some(o),
            Event::PC2(o) => self.pc2out = Some(o),
            Event::Persist(instance) => self.persisted_to = Some(instance),
            Event::AssignSeed(s) => self.seed = Some(s),
            Event::C1(o) => self.c1out = Some(o),
            Event::C2(p) => self.proof = Some(p),
            Event::Abort(reason) => self.abort_reason = Some(reason),
            Event::BuildTreeD
            | Event::SubmitPC
            | Event::ReSubmitPC
            | Event::CheckPC
            | Event::SubmitPersistance
            | Event::SubmitProof
            | Event::ReSubmitProof
            | Event::Finish => {}
        }
        self.state = next;
        self.retries = 0;
        self.last_error = None;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_api::encoding::Bytes32;
    use damocles_api::{SealProof, SectorID};
    use filecoin_proofs_api::RegisteredSealProof;

    fn allocated() -> AllocatedSector {
        AllocatedSector {
            id: SectorID {
                miner: 1000,
                number: 3,
            },
            proof_type: SealProof(RegisteredSealProof::StackedDrg2KiBV1_1),
        }
    }

    fn pc2out() -> SealPreCommitPhase2Output {
        SealPreCommitPhase2Output {
            registered_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
            comm_r: [1; 32],
            comm_d: [2; 32],
        }
    }

    #[test]
    fn names_round_trip_and_match_damocles() {
        for s in State::ALL {
            assert_eq!(State::from_name(s.name()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.name())
            );
        }
        assert_eq!(
            State::from_name("PersistanceSubmitted"),
            Some(State::PersistanceSubmitted)
        );
        assert_eq!(State::from_name("Nope"), None);
    }

    #[test]
    fn events_move_only_from_their_own_state() {
        let mut d = SectorDoc::default();
        let e = d.apply(Event::SubmitPC).unwrap_err();
        assert_eq!(
            e,
            IllegalTransition {
                state: State::Empty,
                event: "SubmitPC"
            }
        );
        assert_eq!(d.state, State::Empty, "a refused event changes nothing");

        d.apply(Event::Allocate(allocated())).unwrap();
        d.apply(Event::AcquireDeals(vec![])).unwrap();
        d.apply(Event::AddPiece(vec![])).unwrap();
        d.apply(Event::BuildTreeD).unwrap();
        let t = Ticket {
            ticket: Bytes32([7; 32]),
            epoch: 10,
        };
        d.apply(Event::AssignTicket(t)).unwrap();
        assert!(d.apply(Event::PC2(pc2out())).is_err(), "PC2 before PC1");
        d.retries = 2;
        d.last_error = Some("x".into());
        d.state = State::PC1Done; // as if PC1 ran
        assert_eq!(d.apply(Event::PC2(pc2out())).unwrap(), State::PC2Done);
        assert_eq!(
            (d.retries, d.last_error.clone()),
            (0, None),
            "a step done clears its failures"
        );
        d.apply(Event::SubmitPC).unwrap();
        assert_eq!(d.apply(Event::ReSubmitPC).unwrap(), State::PC2Done);
        d.apply(Event::SubmitPC).unwrap();
        d.apply(Event::CheckPC).unwrap();
        d.apply(Event::Persist("store-1".into())).unwrap();
        d.apply(Event::SubmitPersistance).unwrap();
        let seed = Seed {
            seed: Bytes32([9; 32]),
            epoch: 20,
        };
        d.apply(Event::AssignSeed(seed)).unwrap();
        d.state = State::C1Done; // as if C1 ran
        d.apply(Event::C2(vec![1, 2, 3])).unwrap();
        d.apply(Event::SubmitProof).unwrap();
        assert_eq!(d.apply(Event::ReSubmitProof).unwrap(), State::C2Done);
        d.apply(Event::SubmitProof).unwrap();
        assert_eq!(d.apply(Event::Finish).unwrap(), State::Finished);
        assert!(
            d.apply(Event::Abort("late".into())).is_err(),
            "nothing after Finished"
        );
        assert_eq!(d.ticket, Some(t));
        assert_eq!(d.seed, Some(seed));
        assert_eq!(d.persisted_to.as_deref(), Some("store-1"));
        assert_eq!(d.proof, Some(vec![1, 2, 3]));
    }

    #[test]
    fn abort_from_any_live_state() {
        let mut d = SectorDoc::default();
        d.apply(Event::Allocate(allocated())).unwrap();
        assert_eq!(
            d.apply(Event::Abort("manager said so".into())).unwrap(),
            State::Aborted
        );
        assert_eq!(d.abort_reason.as_deref(), Some("manager said so"));
        assert!(d.apply(Event::Allocate(allocated())).is_err());
    }
}
