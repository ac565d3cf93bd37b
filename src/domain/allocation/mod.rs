//! Load management's allocator: a pure, deterministic function from a site's topology, its
//! limits and its active sessions to a current per session (docs/smart-charging.md).
//!
//! The model: a tree of nodes (the grid connection at the root, circuits and panels below it,
//! each charger a leaf node of its own) with a limit per phase; every session draws the same
//! current on each grid phase it uses. The allocator first grants minimums in priority order
//! (a session that cannot get its minimum is paused at 0), then shares what is left by
//! weighted max-min fairness ("water filling"): every unfrozen session grows at the rate of its
//! weight until it reaches its own bound or a node-phase it uses is full.
//!
//! Everything is in ampere per phase. Nothing here does I/O or reads a clock.

mod fill;

pub use fill::allocate;

/// Phases of a grid connection: L1, L2, L3.
pub const PHASES: usize = 3;

/// Allocations are given in steps of this many ampere (one decimal, as chargers take them).
pub const STEP_AMPS: f64 = 0.1;

/// Current per phase, L1..L3.
pub type PhaseAmps = [f64; PHASES];

/// A node of the site's tree: the grid connection (index 0, no parent) or a circuit below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Index of the parent node; always smaller than the node's own index. `None` for the root.
    pub parent: Option<usize>,
    /// The node's limit per phase (a phase the site does not have is 0).
    pub limit: PhaseAmps,
    /// Kept free on every phase (safety margin).
    pub margin: f64,
    /// Load on this node that is not a charger of the site (fixed or reported live).
    pub other_load: PhaseAmps,
}

impl Node {
    /// What the chargers below this node may draw on each phase.
    pub fn capacity(&self) -> PhaseAmps {
        let mut capacity = [0.0; PHASES];
        for (p, c) in capacity.iter_mut().enumerate() {
            *c = (self.limit[p] - self.margin - self.other_load[p]).max(0.0);
        }
        capacity
    }
}

/// A charger attached to the site.
#[derive(Debug, Clone, PartialEq)]
pub struct Charger {
    /// Index of the node (circuit) it hangs from.
    pub node: usize,
    /// The grid phase each of the charger's own phases L1, L2, L3 is wired to (phase rotation);
    /// a single-phase charger uses `rotation[0]` only.
    pub rotation: [usize; PHASES],
    /// 1 or 3.
    pub phases: u8,
    /// Below this a car does not charge (IEC 61851: 6 A); per session.
    pub min_amps: f64,
    /// The charger's own limit per phase, for all its sessions together.
    pub max_amps: f64,
    /// A limit set outside this server (2.0.1 NotifyChargingLimit from an EMS or the grid
    /// operator), honoured like `max_amps`.
    pub external_limit_amps: Option<f64>,
    /// An offline charger gets no allocation; it is counted at `offline_amps` on each of its
    /// phases (its maximum, or the fallback it holds) until it is back.
    pub online: bool,
    pub offline_amps: f64,
    /// Kept free for transactions that may start on an online charger's free connectors before
    /// the next allocation reaches them (they draw the default profile's minimum at once).
    pub reserve_amps: f64,
}

impl Charger {
    /// The grid phases a session on this charger draws on, given the car's phase count.
    pub fn grid_phases(&self, car_phases: Option<u8>) -> Vec<usize> {
        let phases = match car_phases {
            Some(car) => car.min(self.phases),
            None => self.phases,
        };
        if phases >= 3 {
            let mut all = self.rotation.to_vec();
            all.sort_unstable();
            all.dedup();
            all
        } else {
            vec![self.rotation[0]]
        }
    }

    /// The charger's own limit: the lower of its maximum and an external limit.
    pub fn limit_amps(&self) -> f64 {
        match self.external_limit_amps {
            Some(external) => external.min(self.max_amps),
            None => self.max_amps,
        }
        .max(0.0)
    }
}

/// An active session on one of the site's chargers.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Stable key: results are ordered and ties broken by it.
    pub key: String,
    /// Index into the chargers.
    pub charger: usize,
    /// The car's phase count, when known (a single-phase car on a three-phase charger draws on
    /// one phase only); `None` counts it on all the charger's phases.
    pub car_phases: Option<u8>,
    /// The session's own cap (`updateSession` maxPowerKw, converted to ampere per phase).
    pub cap_amps: Option<f64>,
    /// What the car has been seen to draw at most lately, when it draws less than it was given;
    /// its share is then bounded near it and the rest goes to others.
    pub demand_amps: Option<f64>,
    /// Higher classes get their minimum first.
    pub priority: i32,
    /// Share of what is left over, relative to others (> 0).
    pub weight: f64,
    /// Paused by the previous allocation: among equal priorities, resumed first.
    pub paused: bool,
    /// Among equals, the earlier session gets its minimum first (seconds or any monotonic key).
    pub since: i64,
}

/// Headroom above a car's observed draw before its share is bounded by it.
pub const DEMAND_HEADROOM_AMPS: f64 = 1.0;

/// The input of one allocation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SiteInput {
    pub nodes: Vec<Node>,
    pub chargers: Vec<Charger>,
    pub sessions: Vec<Session>,
}

/// One session's allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub key: String,
    pub charger: usize,
    /// Ampere on each phase the session uses; 0 = paused.
    pub amps: f64,
    /// The grid phases it uses.
    pub grid_phases: Vec<usize>,
}

/// The result: per session (in the order of `SiteInput::sessions`, sessions of offline chargers
/// left out), and the sums per node and phase including offline chargers and reserves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SiteAllocation {
    pub sessions: Vec<Allocation>,
    /// Per node: allocated current per phase (sessions below it plus offline reserve).
    pub node_amps: Vec<PhaseAmps>,
    /// Nodes whose offline reserve alone exceeds their capacity (the site is over its limit
    /// if every offline charger draws its maximum).
    pub overcommitted: Vec<usize>,
}

impl SiteAllocation {
    /// The allocation of the session with `key`.
    pub fn amps_of(&self, key: &str) -> Option<f64> {
        self.sessions.iter().find(|a| a.key == key).map(|a| a.amps)
    }
}

#[cfg(test)]
mod tests;
