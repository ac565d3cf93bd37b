//! Which connector a driver may start on, or reserve, given what the charger reported and who
//! holds its connectors. No I/O: the API reads the facts in one statement and asks here.

use uuid::Uuid;

/// Why a connector cannot be used now (a status the charger reported), if it cannot.
pub fn busy_reason(status: &str) -> Option<&'static str> {
    match status {
        "FAULTED" => Some("the connector is faulted"),
        "UNAVAILABLE" => Some("the connector is unavailable"),
        "CHARGING" | "SUSPENDED_EV" | "SUSPENDED_EVSE" | "FINISHING" | "OCCUPIED" => {
            Some("the connector is in use")
        }
        "RESERVED" => Some("the connector is reserved"),
        _ => None,
    }
}

/// Why no connector could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoConnector {
    /// The charger reported its connectors and this is not one of them.
    Unknown(i32),
    /// Busy, reserved by another driver, or none free.
    Busy(&'static str),
}

/// The facts about one charger: its connectors as reported (id, status; empty when it never
/// reported any) and its live reservations (driver, connector or None for any connector).
pub struct ChargerState<'a> {
    pub connectors: &'a [(i32, String)],
    pub reservations: &'a [(Uuid, Option<i32>)],
}

/// Why the charger's report keeps a connector from use. Who holds a connector is the server's
/// reservations' word, not the charger's RESERVED (which lags behind a cancellation or an
/// expiry): a charger still holding one answers Occupied itself.
fn reported_obstacle(status: &str) -> Option<&'static str> {
    busy_reason(status).filter(|_| status != "RESERVED")
}

impl ChargerState<'_> {
    fn free_besides(&self, connector: i32) -> usize {
        self.connectors
            .iter()
            .filter(|(id, status)| {
                *id > 0
                    && *id != connector
                    && reported_obstacle(status).is_none()
                    && !self.reservations.iter().any(|(_, held)| *held == Some(*id))
            })
            .count()
    }

    /// Whether another driver reserved this very connector.
    fn reserved_by_another(&self, user: Uuid, connector: i32) -> bool {
        self.reservations
            .iter()
            .any(|(owner, held)| *owner != user && *held == Some(connector))
    }

    /// Whether `user` holds `connector` by a reservation: of it, or of any connector when no
    /// other driver reserved this one.
    fn mine(&self, user: Uuid, connector: i32) -> bool {
        self.reservations.iter().any(|(owner, held)| {
            *owner == user
                && match held {
                    Some(c) => *c == connector,
                    None => !self.reserved_by_another(user, connector),
                }
        })
    }

    /// Whether another driver's reservation keeps `user` off `connector`: one of that very
    /// connector, or one of any connector when this is the last free one.
    fn held_by_others(&self, user: Uuid, connector: i32) -> bool {
        self.reservations.iter().any(|(owner, held)| {
            *owner != user
                && match held {
                    Some(c) => *c == connector,
                    None => self.free_besides(connector) == 0,
                }
        })
    }

    /// Why `user` cannot start on `connector`, if they cannot.
    fn start_obstacle(&self, user: Uuid, connector: i32, status: &str) -> Option<&'static str> {
        if !self.mine(user, connector) && self.held_by_others(user, connector) {
            return Some("the connector is reserved by another driver");
        }
        reported_obstacle(status)
    }

    /// The connector `user` starts on: the one asked for, else the one they reserved, else
    /// the first free one. A charger that never reported connectors is asked for connector 1.
    pub fn connector_for_start(
        &self,
        user: Uuid,
        requested: Option<i32>,
    ) -> Result<i32, NoConnector> {
        let known = |c: i32| self.connectors.iter().find(|(id, _)| *id == c);
        if let Some(c) = requested {
            if self.connectors.is_empty() {
                return match self.held_by_others(user, c) {
                    true => Err(NoConnector::Busy(
                        "the connector is reserved by another driver",
                    )),
                    false => Ok(c),
                };
            }
            let (_, status) = known(c).ok_or(NoConnector::Unknown(c))?;
            return match self.start_obstacle(user, c, status) {
                Some(reason) => Err(NoConnector::Busy(reason)),
                None => Ok(c),
            };
        }
        let usable: Vec<&(i32, String)> =
            self.connectors.iter().filter(|(id, _)| *id > 0).collect();
        if usable.is_empty() {
            return Ok(1);
        }
        // their own reserved connector first
        let reserved = self
            .reservations
            .iter()
            .filter(|(owner, _)| *owner == user)
            .find_map(|(_, held)| *held);
        if let Some(c) = reserved {
            if let Some((_, status)) = known(c) {
                if self.start_obstacle(user, c, status).is_none() {
                    return Ok(c);
                }
            }
        }
        usable
            .iter()
            .find(|(id, status)| self.start_obstacle(user, *id, status).is_none())
            .map(|(id, _)| *id)
            .ok_or(NoConnector::Busy(
                "no connector of this charger is available",
            ))
    }

    /// Checks a connector a driver asks to reserve (None: any connector of the charger):
    /// it must exist and be free now. Collisions between reservations are the store's check.
    pub fn check_reservable(&self, requested: Option<i32>) -> Result<(), NoConnector> {
        match requested {
            Some(c) => match self.connectors.iter().find(|(id, _)| *id == c) {
                None if self.connectors.is_empty() => Ok(()),
                None => Err(NoConnector::Unknown(c)),
                Some((_, status)) => {
                    reported_obstacle(status).map_or(Ok(()), |r| Err(NoConnector::Busy(r)))
                }
            },
            None => {
                let free = self.connectors.is_empty()
                    || self
                        .connectors
                        .iter()
                        .any(|(id, status)| *id > 0 && reported_obstacle(status).is_none());
                if free {
                    Ok(())
                } else {
                    Err(NoConnector::Busy(
                        "no connector of this charger is available",
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connectors(statuses: &[&str]) -> Vec<(i32, String)> {
        statuses
            .iter()
            .zip(1..)
            .map(|(s, id)| (id, (*s).to_string()))
            .collect()
    }

    #[test]
    fn the_holder_starts_on_a_connector_the_charger_shows_reserved_and_others_cannot() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let connectors = connectors(&["RESERVED", "AVAILABLE"]);
        let reservations = [(me, Some(1))];
        let state = ChargerState {
            connectors: &connectors,
            reservations: &reservations,
        };
        assert_eq!(state.connector_for_start(me, None), Ok(1));
        assert_eq!(state.connector_for_start(me, Some(1)), Ok(1));
        assert_eq!(state.connector_for_start(other, None), Ok(2));
        assert!(matches!(
            state.connector_for_start(other, Some(1)),
            Err(NoConnector::Busy(_))
        ));
    }

    #[test]
    fn a_reservation_of_any_connector_gives_no_right_to_one_another_driver_reserved() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let connectors = connectors(&["RESERVED", "AVAILABLE"]);
        let reservations = [(other, Some(1)), (me, None)];
        let state = ChargerState {
            connectors: &connectors,
            reservations: &reservations,
        };
        assert_eq!(state.connector_for_start(me, None), Ok(2));
        assert!(matches!(
            state.connector_for_start(me, Some(1)),
            Err(NoConnector::Busy(_))
        ));
        assert_eq!(state.connector_for_start(other, None), Ok(1));
    }

    #[test]
    fn a_reservation_of_any_connector_keeps_the_last_free_one() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let reservations = [(me, None)];
        let two_free = connectors(&["AVAILABLE", "AVAILABLE"]);
        let state = ChargerState {
            connectors: &two_free,
            reservations: &reservations,
        };
        assert_eq!(state.connector_for_start(other, None), Ok(1));
        let one_free = connectors(&["CHARGING", "AVAILABLE"]);
        let state = ChargerState {
            connectors: &one_free,
            reservations: &reservations,
        };
        assert!(matches!(
            state.connector_for_start(other, None),
            Err(NoConnector::Busy(_))
        ));
        assert_eq!(state.connector_for_start(me, None), Ok(2));
    }

    #[test]
    fn a_connector_the_charger_still_shows_reserved_after_a_cancellation_is_free() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let connectors = connectors(&["RESERVED", "CHARGING"]);
        let state = ChargerState {
            connectors: &connectors,
            reservations: &[],
        };
        assert_eq!(state.connector_for_start(other, None), Ok(1));
        assert_eq!(state.check_reservable(Some(1)), Ok(()));
        // while a live reservation holds it, it is its holder's alone
        let reservations = [(me, Some(1))];
        let state = ChargerState {
            connectors: &connectors,
            reservations: &reservations,
        };
        assert!(matches!(
            state.connector_for_start(other, None),
            Err(NoConnector::Busy(_))
        ));
        assert_eq!(state.connector_for_start(me, None), Ok(1));
    }

    #[test]
    fn busy_and_unknown_connectors_cannot_be_reserved() {
        let connectors = connectors(&["FAULTED", "AVAILABLE"]);
        let state = ChargerState {
            connectors: &connectors,
            reservations: &[],
        };
        assert!(matches!(
            state.check_reservable(Some(1)),
            Err(NoConnector::Busy(_))
        ));
        assert_eq!(
            state.check_reservable(Some(3)),
            Err(NoConnector::Unknown(3))
        );
        assert_eq!(state.check_reservable(Some(2)), Ok(()));
        assert_eq!(state.check_reservable(None), Ok(()));
    }
}
