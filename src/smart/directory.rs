//! Which site each charger is attached to, kept by every replica (refreshed by the site
//! supervisor): a charger on a site gets its power limits from the site's controller only, so
//! a session's own cap is handed to the allocation instead of being pushed beside it.

use dashmap::DashMap;
use uuid::Uuid;

/// A charger's place on a site, as far as a replica needs it without asking Postgres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seat {
    pub site_id: Uuid,
    /// The least current a session on the charger is given (ampere per phase).
    pub min_amps: f64,
    /// Phases the charger is wired with (1 or 3).
    pub phases: u8,
}

#[derive(Default)]
pub struct SiteDirectory {
    by_charger: DashMap<String, Seat>,
}

impl SiteDirectory {
    /// The site `charger_id` is attached to.
    pub fn site_of(&self, charger_id: &str) -> Option<Uuid> {
        self.by_charger.get(charger_id).map(|s| s.site_id)
    }

    /// Where `charger_id` sits, with its minimum current and phases.
    pub fn seat_of(&self, charger_id: &str) -> Option<Seat> {
        self.by_charger.get(charger_id).map(|s| *s)
    }

    /// Replaces the whole map.
    pub fn replace(&self, seats: Vec<(String, Seat)>) {
        let keep: std::collections::HashSet<&String> = seats.iter().map(|(c, _)| c).collect();
        self.by_charger.retain(|c, _| keep.contains(c));
        for (charger, seat) in &seats {
            self.by_charger.insert(charger.clone(), *seat);
        }
    }

    pub fn insert(&self, charger_id: &str, seat: Seat) {
        self.by_charger.insert(charger_id.to_string(), seat);
    }

    pub fn remove(&self, charger_id: &str) {
        self.by_charger.remove(charger_id);
    }

    pub fn is_empty(&self) -> bool {
        self.by_charger.is_empty()
    }
}
