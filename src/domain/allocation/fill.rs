//! The allocation itself: offline reserve, minimums in priority order, then weighted water
//! filling driven by events (a session reaching its bound, a node-phase filling up), so a site
//! with a thousand sessions costs a few thousand heap operations rather than a round per
//! distinct bound.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::{
    Allocation, Charger, PhaseAmps, Session, SiteAllocation, SiteInput, DEMAND_HEADROOM_AMPS,
    PHASES, STEP_AMPS,
};

/// Below this, a difference in ampere is rounding noise.
const EPS: f64 = 1e-9;
/// The smallest weight a session counts with (a zero or negative weight would never grow).
const MIN_WEIGHT: f64 = 1e-3;

fn finite_or(value: f64, fallback: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        fallback
    }
}

/// A point in "water level" time at which something freezes.
#[derive(Debug, Clone, Copy)]
struct Event {
    level: f64,
    /// 0 = a session reaches its bound, 1 = a constraint fills up (sessions first at a tie).
    kind: u8,
    index: usize,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        self.level
            .total_cmp(&other.level)
            .then(self.kind.cmp(&other.kind))
            .then(self.index.cmp(&other.index))
    }
}

/// One node-phase or charger-phase limit with the current remaining capacity.
struct Constraint {
    remaining: f64,
    /// Sum of the weights of the unfrozen sessions on it.
    rate: f64,
    /// The water level at which `remaining` was last brought up to date.
    since: f64,
    /// What its unfrozen sessions would add if each reached its own bound.
    wanted: f64,
    /// Sessions drawing on it (indices into the input's sessions).
    users: Vec<usize>,
}

/// Where each session draws: the charger constraint and every node above it, on each grid
/// phase the session uses.
struct Plan {
    constraints: Vec<usize>,
    grid_phases: Vec<usize>,
    min: f64,
    upper: f64,
    weight: f64,
}

/// Constraint index of node `node` on grid phase `phase`.
fn node_constraint(node: usize, phase: usize) -> usize {
    node * PHASES + phase
}

/// The nodes from `node` up to the root; a broken parent link (not smaller than the node's
/// index) ends the walk instead of looping.
fn ancestors(input: &SiteInput, node: usize) -> Vec<usize> {
    let mut path = Vec::new();
    let mut current = Some(node);
    while let Some(n) = current {
        if n >= input.nodes.len() || path.contains(&n) {
            break;
        }
        path.push(n);
        current = input.nodes[n].parent.filter(|p| *p < n);
    }
    path
}

fn upper_bound(charger: &Charger, session: &Session) -> f64 {
    let mut upper = finite_or(charger.limit_amps(), 0.0);
    if let Some(cap) = session.cap_amps {
        upper = upper.min(finite_or(cap, 0.0));
    }
    if let Some(demand) = session.demand_amps {
        let min = finite_or(charger.min_amps, 0.0);
        upper = upper.min((finite_or(demand, 0.0) + DEMAND_HEADROOM_AMPS).max(min));
    }
    upper.max(0.0)
}

/// Rounds an allocation down to the charger's step, never below the granted minimum.
fn round_down(amps: f64, min: f64) -> f64 {
    // divide (not multiply by 0.1) so that 66 steps read 6.6, not 6.6000000000000005
    let steps = (amps / STEP_AMPS + EPS).floor();
    (steps / (1.0 / STEP_AMPS)).max(min).min(amps.max(min))
}

/// Allocates the site's capacity among its sessions (see the module documentation).
pub fn allocate(input: &SiteInput) -> SiteAllocation {
    let node_count = input.nodes.len();
    // every node's way up to the root, once (a thousand sessions share a handful of nodes)
    let paths: Vec<Vec<usize>> = (0..node_count).map(|n| ancestors(input, n)).collect();
    let path_of = |node: usize| -> &[usize] { paths.get(node).map_or(&[], Vec::as_slice) };
    let charger_base = node_count * PHASES;
    let mut constraints: Vec<Constraint> =
        Vec::with_capacity(charger_base + input.chargers.len() * PHASES);
    for node in &input.nodes {
        for capacity in node.capacity() {
            constraints.push(Constraint {
                remaining: finite_or(capacity, 0.0),
                rate: 0.0,
                since: 0.0,
                wanted: 0.0,
                users: Vec::new(),
            });
        }
    }
    for charger in &input.chargers {
        for _ in 0..PHASES {
            constraints.push(Constraint {
                remaining: finite_or(charger.limit_amps(), 0.0),
                rate: 0.0,
                since: 0.0,
                wanted: 0.0,
                users: Vec::new(),
            });
        }
    }
    let mut node_amps: Vec<PhaseAmps> = vec![[0.0; PHASES]; node_count];
    let mut overcommitted = Vec::new();

    // offline chargers at what they may draw, and what new transactions on online chargers
    // may draw before they are allocated: counted before anyone else
    for (index, charger) in input.chargers.iter().enumerate() {
        let reserve = if charger.online {
            finite_or(charger.reserve_amps, 0.0)
                .max(0.0)
                .min(charger.limit_amps())
        } else {
            finite_or(charger.offline_amps, charger.max_amps).max(0.0)
        };
        if reserve <= 0.0 {
            continue;
        }
        for phase in charger.grid_phases(None) {
            if charger.online {
                let own = &mut constraints[charger_base + index * PHASES + phase];
                own.remaining = (own.remaining - reserve).max(0.0);
            }
            for &node in path_of(charger.node) {
                let c = &mut constraints[node_constraint(node, phase)];
                c.remaining -= reserve;
                node_amps[node][phase] += reserve;
                if c.remaining < -EPS && !overcommitted.contains(&node) {
                    overcommitted.push(node);
                }
                c.remaining = c.remaining.max(0.0);
            }
        }
    }
    overcommitted.sort_unstable();

    // each online session's constraints and bounds
    let mut plans: Vec<Option<Plan>> = input
        .sessions
        .iter()
        .map(|session| {
            let charger = input.chargers.get(session.charger)?;
            if !charger.online || charger.node >= node_count {
                return None;
            }
            let grid_phases = charger.grid_phases(session.car_phases);
            let path = path_of(charger.node);
            let mut used = Vec::with_capacity(grid_phases.len() * (path.len() + 1));
            for &phase in &grid_phases {
                used.push(charger_base + session.charger * PHASES + phase);
                used.extend(path.iter().map(|&node| node_constraint(node, phase)));
            }
            Some(Plan {
                constraints: used,
                grid_phases,
                min: finite_or(charger.min_amps, 0.0).max(0.0),
                upper: upper_bound(charger, session),
                weight: finite_or(session.weight, 1.0).max(MIN_WEIGHT),
            })
        })
        .collect();

    // minimums, in priority order
    let mut order: Vec<usize> = (0..input.sessions.len()).collect();
    order.sort_by(|&a, &b| {
        let (sa, sb) = (&input.sessions[a], &input.sessions[b]);
        sb.priority
            .cmp(&sa.priority)
            .then(sb.paused.cmp(&sa.paused))
            .then(sa.since.cmp(&sb.since))
            .then(sa.key.cmp(&sb.key))
            .then(a.cmp(&b))
    });
    let mut amps = vec![0.0_f64; input.sessions.len()];
    let mut granted = vec![false; input.sessions.len()];
    for &i in &order {
        let Some(plan) = &plans[i] else { continue };
        if plan.upper + EPS < plan.min {
            continue;
        }
        if plan
            .constraints
            .iter()
            .all(|&c| constraints[c].remaining + EPS >= plan.min)
        {
            for &c in &plan.constraints {
                constraints[c].remaining = (constraints[c].remaining - plan.min).max(0.0);
            }
            amps[i] = plan.min;
            granted[i] = true;
        }
    }

    // water filling from the minimums up
    let mut heap = BinaryHeap::new();
    let mut active = vec![false; input.sessions.len()];
    for (i, plan) in plans.iter().enumerate() {
        let Some(plan) = plan else { continue };
        if !granted[i] || plan.upper - plan.min <= EPS {
            continue;
        }
        active[i] = true;
        for &c in &plan.constraints {
            constraints[c].rate += plan.weight;
            constraints[c].wanted += plan.upper - plan.min;
            constraints[c].users.push(i);
        }
        heap.push(Reverse(Event {
            level: (plan.upper - plan.min) / plan.weight,
            kind: 0,
            index: i,
        }));
    }
    for (index, c) in constraints.iter().enumerate() {
        // a constraint its sessions cannot fill even at their bounds never freezes anyone
        // (most chargers' own limits): no event for it
        if c.rate > 0.0 && c.wanted > c.remaining + EPS {
            heap.push(Reverse(Event {
                level: c.remaining / c.rate,
                kind: 1,
                index,
            }));
        }
    }
    let freeze = |i: usize,
                  level: f64,
                  active: &mut Vec<bool>,
                  amps: &mut Vec<f64>,
                  constraints: &mut Vec<Constraint>,
                  plans: &Vec<Option<Plan>>| {
        let Some(plan) = &plans[i] else { return };
        active[i] = false;
        amps[i] = (plan.min + plan.weight * level)
            .min(plan.upper)
            .max(plan.min);
        for &c in &plan.constraints {
            let constraint = &mut constraints[c];
            constraint.remaining =
                (constraint.remaining - constraint.rate * (level - constraint.since)).max(0.0);
            constraint.since = level;
            constraint.rate -= plan.weight;
            // a smaller rate only moves the constraint's filling later: its event already in
            // the heap comes first and is moved then (lazily), instead of one push per freeze
            if constraint.rate <= MIN_WEIGHT / 2.0 {
                constraint.rate = 0.0;
            }
        }
    };
    while let Some(Reverse(event)) = heap.pop() {
        match event.kind {
            0 => {
                if active[event.index] {
                    freeze(
                        event.index,
                        event.level,
                        &mut active,
                        &mut amps,
                        &mut constraints,
                        &plans,
                    );
                }
            }
            _ => {
                let c = &constraints[event.index];
                if c.rate <= 0.0 {
                    continue;
                }
                // when does it fill at its current rate? later than this event: move it there
                let fills_at = c.since + c.remaining / c.rate;
                if fills_at > event.level + EPS * (1.0 + event.level.abs()) {
                    heap.push(Reverse(Event {
                        level: fills_at,
                        kind: 1,
                        index: event.index,
                    }));
                    continue;
                }
                let users: Vec<usize> = c.users.iter().copied().filter(|&i| active[i]).collect();
                for i in users {
                    freeze(
                        i,
                        event.level,
                        &mut active,
                        &mut amps,
                        &mut constraints,
                        &plans,
                    );
                }
            }
        }
    }

    let mut sessions = Vec::with_capacity(input.sessions.len());
    for (i, session) in input.sessions.iter().enumerate() {
        let Some(plan) = plans[i].take() else {
            continue;
        };
        let value = if granted[i] {
            round_down(amps[i], plan.min)
        } else {
            0.0
        };
        if let Some(charger) = input.chargers.get(session.charger) {
            for &phase in &plan.grid_phases {
                for &node in path_of(charger.node) {
                    node_amps[node][phase] += value;
                }
            }
        }
        sessions.push(Allocation {
            key: session.key.clone(),
            charger: session.charger,
            amps: value,
            grid_phases: plan.grid_phases,
        });
    }
    SiteAllocation {
        sessions,
        node_amps,
        overcommitted,
    }
}
