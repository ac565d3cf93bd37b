//! Which site each charger is attached to, kept by every replica (refreshed by the site
//! supervisor): a charger on a site gets its power limits from the site's controller only, so
//! a session's own cap is handed to the allocation instead of being pushed beside it.

use dashmap::DashMap;
use uuid::Uuid;

#[derive(Default)]
pub struct SiteDirectory {
    by_charger: DashMap<String, Uuid>,
}

impl SiteDirectory {
    /// The site `charger_id` is attached to.
    pub fn site_of(&self, charger_id: &str) -> Option<Uuid> {
        self.by_charger.get(charger_id).map(|s| *s)
    }

    /// Replaces the whole map.
    pub fn replace(&self, pairs: Vec<(String, Uuid)>) {
        let keep: std::collections::HashSet<&String> = pairs.iter().map(|(c, _)| c).collect();
        self.by_charger.retain(|c, _| keep.contains(c));
        for (charger, site) in &pairs {
            self.by_charger.insert(charger.clone(), *site);
        }
    }

    pub fn insert(&self, charger_id: &str, site_id: Uuid) {
        self.by_charger.insert(charger_id.to_string(), site_id);
    }

    pub fn remove(&self, charger_id: &str) {
        self.by_charger.remove(charger_id);
    }

    pub fn is_empty(&self) -> bool {
        self.by_charger.is_empty()
    }
}
