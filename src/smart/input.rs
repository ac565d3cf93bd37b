//! From stored records to the allocator's input, and from its result to the site's load: the
//! conversions (kW to ampere, phase rotation, circuits to a tree, plans to priorities) in one
//! place.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::round::Memory;
use crate::configuration::SmartChargingSettings;
use crate::domain::allocation::{Charger, Node, Session, SiteAllocation, SiteInput, PHASES};
use crate::store::sites::{ActiveSession, CircuitRecord, SiteChargerRecord, SiteRecord};

pub const PHASE_NAMES: [&str; PHASES] = ["L1", "L2", "L3"];

/// The grid phase each of a charger's L1, L2, L3 is wired to, from its stored rotation
/// (R, S, T = grid L1, L2, L3).
pub fn rotation(code: &str) -> Option<[usize; PHASES]> {
    let mut out = [0; PHASES];
    let letters: Vec<char> = code.chars().collect();
    if letters.len() != PHASES {
        return None;
    }
    for (i, c) in letters.iter().enumerate() {
        out[i] = match c {
            'R' => 0,
            'S' => 1,
            'T' => 2,
            _ => return None,
        };
    }
    let mut sorted = out;
    sorted.sort_unstable();
    (sorted == [0, 1, 2]).then_some(out)
}

/// Everything one round knows about a site.
pub struct SiteView<'a> {
    site: &'a SiteRecord,
    circuits: &'a [CircuitRecord],
    chargers: &'a [SiteChargerRecord],
    sessions: &'a [ActiveSession],
    settings: &'a SmartChargingSettings,
    now: DateTime<Utc>,
    charger_index: HashMap<&'a str, usize>,
    session_index: HashMap<Uuid, usize>,
    /// Per charger: the limits its sessions hold (applied allocations) and how many it has.
    per_charger: HashMap<&'a str, (f64, i64)>,
}

impl<'a> SiteView<'a> {
    pub fn new(
        site: &'a SiteRecord,
        circuits: &'a [CircuitRecord],
        chargers: &'a [SiteChargerRecord],
        sessions: &'a [ActiveSession],
        settings: &'a SmartChargingSettings,
        now: DateTime<Utc>,
    ) -> Self {
        let charger_index = chargers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.charger_id.as_str(), i))
            .collect();
        let session_index = sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let mut per_charger: HashMap<&str, (f64, i64)> = HashMap::new();
        for session in sessions {
            let entry = per_charger.entry(session.charger_id.as_str()).or_default();
            if session.applied == Some(true) {
                entry.0 += session.allocated_amps.unwrap_or_default();
            }
            entry.1 += 1;
        }
        Self {
            site,
            circuits,
            chargers,
            sessions,
            settings,
            now,
            charger_index,
            session_index,
            per_charger,
        }
    }

    fn single_phase_site(&self) -> bool {
        self.site.phases == 1
    }

    fn charger(&self, id: &str) -> Option<&SiteChargerRecord> {
        self.charger_index.get(id).map(|&i| &self.chargers[i])
    }

    /// Phases a charger's profiles name (`numberPhases`).
    pub fn charger_phases(&self, charger: &SiteChargerRecord) -> u8 {
        if self.single_phase_site() || charger.phases == 1 {
            1
        } else {
            3
        }
    }

    pub fn min_amps_of(&self, charger_id: &str) -> f64 {
        self.charger(charger_id).map_or(0.0, |c| c.min_amps)
    }

    pub fn is_v201(&self, charger_id: &str) -> bool {
        self.charger(charger_id).and_then(|c| c.protocol.as_deref()) == Some("OCPP201")
    }

    pub fn session(&self, key: &str) -> Option<&'a ActiveSession> {
        let id: Uuid = key.parse().ok()?;
        self.session_index.get(&id).map(|&i| &self.sessions[i])
    }

    /// Phases a session draws on: the car's when it reported them, else the charger's.
    fn session_phases(&self, session: &ActiveSession) -> usize {
        let charger = self
            .charger(&session.charger_id)
            .map_or(3, |c| usize::from(self.charger_phases(c)));
        match session.ev_phases {
            Some(car) if (car as usize) < charger => car.max(1) as usize,
            _ => charger,
        }
    }

    fn kw_to_amps(&self, kw: f64, phases: usize) -> f64 {
        kw * 1000.0 / (self.site.voltage * phases.max(1) as f64)
    }

    pub fn watts_to_amps(&self, charger_id: &str, watts: f64) -> f64 {
        let phases = self
            .charger(charger_id)
            .map_or(3, |c| usize::from(self.charger_phases(c)));
        self.kw_to_amps(watts / 1000.0, phases)
    }

    /// What the car draws now, in ampere per phase.
    pub fn measured_amps(&self, session: &ActiveSession) -> Option<f64> {
        session
            .power_kw
            .map(|kw| self.kw_to_amps(kw.max(0.0), self.session_phases(session)))
    }

    fn other_load(&self) -> [f64; PHASES] {
        let fresh = self.site.reported_load_at.is_some_and(|at| {
            (self.now - at).num_seconds() <= self.settings.reported_load_ttl_secs as i64
        });
        match (&self.site.reported_load_amps, fresh) {
            (Some(reported), true) if reported.len() == PHASES => [
                reported[0].max(0.0),
                reported[1].max(0.0),
                reported[2].max(0.0),
            ],
            _ => [self.site.other_load_amps; PHASES],
        }
    }

    fn phase_limits(&self, limit: f64) -> [f64; PHASES] {
        if self.single_phase_site() {
            [limit, 0.0, 0.0]
        } else {
            [limit; PHASES]
        }
    }

    /// The allocator's input. Circuits become nodes below the grid connection (node 0), parents
    /// before children; a circuit whose parent is missing hangs from the grid connection.
    pub fn input(&self, memory: &Memory) -> SiteInput {
        let mut nodes = vec![Node {
            parent: None,
            limit: self.phase_limits(self.site.grid_limit_amps),
            margin: self.site.margin_amps,
            other_load: self.other_load(),
        }];
        let mut node_of: HashMap<Uuid, usize> = HashMap::new();
        // breadth first from the grid connection: a parent always gets its index first
        let mut frontier: Vec<Option<Uuid>> = vec![None];
        while let Some(parent) = frontier.pop() {
            for circuit in self.circuits.iter().filter(|c| {
                c.parent_id == parent
                    || (parent.is_none()
                        && c.parent_id
                            .is_some_and(|p| !self.circuits.iter().any(|o| o.id == p)))
            }) {
                if node_of.contains_key(&circuit.id) {
                    continue;
                }
                let parent_node = parent.and_then(|p| node_of.get(&p).copied()).unwrap_or(0);
                node_of.insert(circuit.id, nodes.len());
                nodes.push(Node {
                    parent: Some(parent_node),
                    limit: self.phase_limits(circuit.limit_amps),
                    margin: 0.0,
                    other_load: [0.0; PHASES],
                });
                frontier.push(Some(circuit.id));
            }
        }

        let chargers = self
            .chargers
            .iter()
            .map(|c| {
                let online = c.online && !memory.unreachable.contains(&c.charger_id);
                let (held, busy) = self
                    .per_charger
                    .get(c.charger_id.as_str())
                    .copied()
                    .unwrap_or_default();
                // offline: what its profiles let it draw (its sessions' limits and one more
                // transaction at the default), or its maximum when it holds none we know of
                let offline_amps = if c.fallback_installed_at.is_some() {
                    (held + c.min_amps).min(c.max_amps)
                } else {
                    c.max_amps
                };
                // free connectors may start a transaction at the default (the minimum) any
                // moment, or at the maximum while the charger holds no default we know of
                let free = (c.connectors - busy).max(0) as f64;
                let per_connector = if c.fallback_installed_at.is_some() {
                    c.min_amps
                } else {
                    c.max_amps
                };
                let reserve_amps = if self.settings.reserve_for_new_sessions {
                    (free * per_connector).min(c.max_amps)
                } else {
                    0.0
                };
                Charger {
                    reserve_amps,
                    node: c
                        .circuit_id
                        .and_then(|id| node_of.get(&id).copied())
                        .unwrap_or(0),
                    rotation: if self.single_phase_site() {
                        [0, 0, 0]
                    } else {
                        rotation(&c.phase_rotation).unwrap_or([0, 1, 2])
                    },
                    phases: self.charger_phases(c),
                    min_amps: c.min_amps,
                    max_amps: c.max_amps,
                    external_limit_amps: c.external_limit_amps,
                    online,
                    offline_amps,
                }
            })
            .collect();

        let sessions = self
            .sessions
            .iter()
            .filter_map(|s| {
                let charger = *self.charger_index.get(s.charger_id.as_str())?;
                let phases = self.session_phases(s);
                let mut cap = s.max_power_kw.map(|kw| self.kw_to_amps(kw, phases));
                if let Some(ev_max) = s.ev_max_amps {
                    cap = Some(cap.map_or(ev_max, |c| c.min(ev_max)));
                }
                let flat_rate = s.plan == "FLAT_RATE";
                let mut weight = if flat_rate {
                    self.settings.flat_rate_weight
                } else {
                    1.0
                };
                weight *= self.urgency(s, phases);
                Some(Session {
                    key: s.id.to_string(),
                    charger,
                    car_phases: s.ev_phases.map(|p| p.clamp(1, 3) as u8),
                    cap_amps: cap,
                    demand_amps: memory.demand.get(&s.id).and_then(|d| d.0),
                    priority: if flat_rate {
                        self.settings.flat_rate_priority
                    } else {
                        0
                    },
                    weight,
                    paused: s.allocated_amps == Some(0.0),
                    since: s.start_time.map_or(i64::MAX, |t| t.timestamp()),
                })
            })
            .collect();
        SiteInput {
            nodes,
            chargers,
            sessions,
        }
    }

    /// A session whose driver (or car) needs much energy before a near departure weighs more:
    /// the current it needs on average until then, relative to the charger's minimum, between
    /// 1 and 4.
    fn urgency(&self, session: &ActiveSession, phases: usize) -> f64 {
        let (Some(departure), Some(need)) = (session.departure_time, session.need_kwh) else {
            return 1.0;
        };
        let remaining_kwh = (need - session.energy_kwh).max(0.0);
        if remaining_kwh <= 0.0 {
            return 1.0;
        }
        let hours = ((departure - self.now).num_seconds() as f64 / 3600.0).max(0.25);
        let needed_amps = self.kw_to_amps(remaining_kwh / hours, phases);
        let min = self.min_amps_of(&session.charger_id).max(1.0);
        (needed_amps / min).clamp(1.0, 4.0)
    }

    /// The site's load after an allocation: allocated and measured per phase at the grid
    /// connection, and each session's allocation.
    pub fn load(&self, result: &SiteAllocation, memory: &Memory) -> Value {
        let allocated = result.node_amps.first().copied().unwrap_or([0.0; PHASES]);
        let mut measured = [0.0; PHASES];
        let mut sessions = Vec::new();
        for allocation in &result.sessions {
            let Some(session) = self.session(&allocation.key) else {
                continue;
            };
            if let Some(amps) = self.measured_amps(session) {
                for &phase in &allocation.grid_phases {
                    measured[phase] += amps;
                }
            }
            sessions.push(json!({
                "sessionId": session.id,
                "chargerId": session.charger_id,
                "amps": allocation.amps,
                "phases": allocation.grid_phases.len(),
            }));
        }
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let unreachable: Vec<&String> = memory.unreachable.iter().collect();
        json!({
            "allocatedAmps": allocated.map(round),
            "measuredAmps": measured.map(round),
            "sessions": sessions,
            "overcommitted": !result.overcommitted.is_empty(),
            "unreachableChargers": unreachable,
            "updatedAt": self.now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_map_r_s_t_to_grid_phases_and_reject_anything_else() {
        assert_eq!(rotation("RST"), Some([0, 1, 2]));
        assert_eq!(rotation("TRS"), Some([2, 0, 1]));
        assert_eq!(rotation("RRS"), None);
        assert_eq!(rotation("RS"), None);
        assert_eq!(rotation("XYZ"), None);
    }
}
