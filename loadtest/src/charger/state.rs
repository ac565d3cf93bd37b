//! What a simulated charger remembers across connections: its connectors, the transaction on
//! each, the energy register, charging limits and configuration changed by the CSMS.

use std::time::Duration;

use tokio::time::Instant;

/// A connector's OCPP status, in the spelling both versions share where possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Free.
    Available,
    /// A transaction is being set up (1.6 `Preparing`, 2.0.1 `Occupied`).
    Preparing,
    /// Energy flows (1.6 `Charging`, 2.0.1 `Occupied`).
    Charging,
    /// The transaction ended, the cable is still plugged (1.6 `Finishing`, 2.0.1 `Occupied`).
    Finishing,
    /// Taken out of service by ChangeAvailability.
    Unavailable,
}

/// The transaction on a connector.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// 1.6: the CSMS's integer id (known once StartTransaction is answered); 2.0.1: ours.
    pub id: Option<String>,
    /// The idTag / idToken presented.
    pub id_tag: String,
    /// Started by RemoteStartTransaction / RequestStartTransaction.
    pub remote: bool,
    /// 2.0.1 remoteStartId.
    pub remote_start_id: Option<i64>,
    /// Energy register when it started (Wh).
    pub meter_start_wh: f64,
    /// When it started.
    pub started: Instant,
    /// Local sessions end by themselves at this time.
    pub stop_at: Option<Instant>,
    /// Next MeterValues / TransactionEvent Updated.
    pub meter_due: Instant,
    /// A stop has been queued.
    pub stopping: bool,
    /// 2.0.1 TransactionEvent sequence number.
    pub seq_no: i64,
    /// The CSMS refused the tag; the session was counted as failed and is only being closed.
    pub refused: bool,
}

/// One connector (1.6) or EVSE (2.0.1).
#[derive(Debug, Clone)]
pub struct Connector {
    /// Current status.
    pub status: Status,
    /// The running transaction.
    pub tx: Option<Transaction>,
    /// Energy register (Wh), monotonic over the charger's life.
    pub energy_wh: f64,
    /// When the register was last advanced.
    pub metered_at: Instant,
    /// Power cap of the transaction's TxProfile (W); it ends with the transaction.
    pub limit_w: Option<f64>,
    /// TxDefaultProfile (W): transactions without a TxProfile of their own.
    pub default_limit_w: Option<f64>,
    /// ChargePointMaxProfile / ChargingStationMaxProfile (W): never more than this.
    pub max_limit_w: Option<f64>,
    /// Taken out of service.
    pub inoperative: bool,
}

impl Connector {
    fn new(now: Instant, seed_wh: f64) -> Self {
        Self {
            status: Status::Available,
            tx: None,
            energy_wh: seed_wh,
            metered_at: now,
            limit_w: None,
            default_limit_w: None,
            max_limit_w: None,
            inoperative: false,
        }
    }

    /// Whether a transaction can start here.
    pub fn is_free(&self) -> bool {
        self.tx.is_none() && !self.inoperative
    }

    /// The power drawn now (W): the nominal power, capped by a charging profile; 0 when idle.
    pub fn power_w(&self, nominal_w: f64) -> f64 {
        if self.tx.is_none() {
            return 0.0;
        }
        self.cap_w(nominal_w).max(0.0)
    }

    /// The composite limit (W): the transaction's profile or else the default, under the
    /// charger's maximum and the nominal power (OCPP's composite schedule, first period only).
    pub fn cap_w(&self, nominal_w: f64) -> f64 {
        let mut cap = self.limit_w.or(self.default_limit_w).unwrap_or(nominal_w);
        if let Some(max) = self.max_limit_w {
            cap = cap.min(max);
        }
        cap.min(nominal_w)
    }

    /// Forgets every profile (ClearChargingProfile); whether there was one.
    pub fn clear_profiles(&mut self) -> bool {
        let had =
            self.limit_w.is_some() || self.default_limit_w.is_some() || self.max_limit_w.is_some();
        self.limit_w = None;
        self.default_limit_w = None;
        self.max_limit_w = None;
        had
    }
}

/// A profile's first limit in watts: ampere count 230 V per phase, three phases unless the
/// period names fewer.
pub fn limit_watts(limit: f64, unit: Option<&str>, phases: Option<f64>) -> f64 {
    if unit == Some("A") {
        limit * 230.0 * phases.unwrap_or(3.0).clamp(1.0, 3.0)
    } else {
        limit
    }
}

/// Applies a SetChargingProfile's first period to `connectors` (connector 0 = all) by purpose;
/// `false` when a connector does not exist.
pub fn apply_profile(
    connectors: &mut [Connector],
    connector_id: i64,
    purpose: &str,
    limit_w: f64,
) -> bool {
    let targets: Vec<usize> = if connector_id == 0 {
        (0..connectors.len()).collect()
    } else if connector_id > 0 && (connector_id as usize) <= connectors.len() {
        vec![connector_id as usize - 1]
    } else {
        return false;
    };
    for i in targets {
        let c = &mut connectors[i];
        match purpose {
            "ChargePointMaxProfile" | "ChargingStationMaxProfile" => c.max_limit_w = Some(limit_w),
            "TxDefaultProfile" => c.default_limit_w = Some(limit_w),
            _ => c.limit_w = Some(limit_w),
        }
    }
    true
}

impl Connector {
    /// Advances the energy register to `now` at the current power.
    pub fn advance(&mut self, now: Instant, nominal_w: f64) {
        let hours = now.saturating_duration_since(self.metered_at).as_secs_f64() / 3600.0;
        self.energy_wh += self.power_w(nominal_w) * hours;
        self.metered_at = now;
    }
}

/// Configuration a CSMS can read and change (the subset a simulator honours).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Heartbeat period set by the CSMS (seconds), overriding the BootNotification interval.
    pub heartbeat_secs: Option<f64>,
    /// MeterValues period (seconds).
    pub meter_secs: f64,
    /// Other writable keys the CSMS changed, as sent.
    pub other: Vec<(String, String)>,
}

/// The charger's persistent state.
#[derive(Debug, Clone)]
pub struct ChargerState {
    /// Index 0 is connector / EVSE 1.
    pub connectors: Vec<Connector>,
    /// Configuration.
    pub config: Config,
    /// Nominal charging power (W).
    pub nominal_w: f64,
}

impl ChargerState {
    /// A charger with `connectors` idle connectors.
    pub fn new(connectors: u32, nominal_w: f64, meter_secs: f64, seed_wh: f64) -> Self {
        let now = Instant::now();
        Self {
            connectors: (0..connectors)
                .map(|_| Connector::new(now, seed_wh))
                .collect(),
            config: Config {
                heartbeat_secs: None,
                meter_secs,
                other: Vec::new(),
            },
            nominal_w,
        }
    }

    /// The connector with 1-based id `id`.
    pub fn connector(&mut self, id: i64) -> Option<&mut Connector> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.connectors.get_mut(index)
    }

    /// The first free connector's 1-based id.
    pub fn first_free(&self) -> Option<usize> {
        self.connectors
            .iter()
            .position(Connector::is_free)
            .map(|i| i + 1)
    }

    /// The connector (1-based) whose transaction has this id.
    pub fn find_tx(&self, id: &str) -> Option<usize> {
        self.connectors
            .iter()
            .position(|c| c.tx.as_ref().and_then(|t| t.id.as_deref()) == Some(id))
            .map(|i| i + 1)
    }

    /// The MeterValues period.
    pub fn meter_period(&self) -> Duration {
        Duration::from_secs_f64(self.config.meter_secs.max(0.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_grows_only_while_charging_and_respects_the_limit() {
        let mut state = ChargerState::new(2, 11_000.0, 10.0, 1000.0);
        let t0 = Instant::now();
        let c = &mut state.connectors[0];
        c.metered_at = t0;
        c.advance(t0 + Duration::from_secs(3600), 11_000.0);
        assert_eq!(c.energy_wh, 1000.0, "idle connectors do not meter energy");
        c.tx = Some(Transaction {
            id: Some("1".into()),
            id_tag: "T".into(),
            remote: false,
            remote_start_id: None,
            meter_start_wh: 1000.0,
            started: t0,
            stop_at: None,
            meter_due: t0,
            stopping: false,
            seq_no: 0,
            refused: false,
        });
        c.limit_w = Some(7_000.0);
        c.metered_at = t0;
        c.advance(t0 + Duration::from_secs(1800), 11_000.0);
        assert!((c.energy_wh - 4500.0).abs() < 1e-6);
        assert_eq!(state.find_tx("1"), Some(1));
        assert_eq!(state.first_free(), Some(2));
        assert!(state.connector(3).is_none());
        assert!(state.connector(0).is_none());
    }
}
