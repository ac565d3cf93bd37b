//! What a run does: the scenario, read from a TOML or YAML file and then overridden by command
//! line flags. Every load loop the simulator runs is bounded by `duration_secs` (plus
//! `drain_secs`), and every figure in it is validated before a single socket opens.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One load-test run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Shown in the summary and the JSON report.
    pub name: String,
    /// OCPP endpoints, e.g. `ws://127.0.0.1:8080/ocpp`; the charger id is appended. Chargers are
    /// assigned round-robin, so several servers (or replicas) can be loaded at once.
    pub urls: Vec<String>,
    /// Local addresses to bind client sockets to (`127.0.0.2`, ...), round-robin. Each source
    /// address has its own ephemeral port range. Empty: the OS picks.
    pub source_ips: Vec<IpAddr>,
    /// Chargers this process simulates.
    pub chargers: u32,
    /// Charger ids are `{id_prefix}{index:06}`.
    pub id_prefix: String,
    /// Index of the first charger: lets several processes share a prefix without colliding.
    pub first_index: u32,
    /// Share (0..=1) of chargers speaking OCPP 2.0.1; the rest speak 1.6.
    pub ocpp201_share: f64,
    /// Connectors (1.6) or EVSEs with one connector each (2.0.1) per charger.
    pub connectors: u32,
    /// New connections per second during ramp-up (0: all at once).
    pub ramp_up_per_sec: f64,
    /// How long the load runs, from the first connection attempt.
    pub duration_secs: f64,
    /// Time after `duration_secs` for stopping transactions and closing sockets.
    pub drain_secs: f64,
    /// Latency and throughput figures cover only the time after ramp-up plus this warm-up.
    pub warmup_secs: f64,
    /// HTTP Basic password (security profile 1); the user is the charger id.
    pub password: Option<String>,
    /// The password of the app-driven chargers, instead of `password`: they are registered
    /// with it (`registerCharger`, which outside development mode needs one), while the idle
    /// chargers of a large run connect without the cost of a password check each.
    pub app_password: Option<String>,
    /// Seed for every random choice, so runs are repeatable.
    pub seed: u64,
    /// Connect + WebSocket handshake timeout.
    pub connect_timeout_secs: f64,
    /// How long a charger waits for the answer to one of its calls.
    pub call_timeout_secs: f64,
    /// Reconnect after an unexpected close (with backoff and jitter).
    pub reconnect: bool,
    /// Heartbeat behaviour.
    pub heartbeat: Heartbeat,
    /// MeterValues period while a transaction runs.
    pub meter_interval_secs: f64,
    /// Charging sessions.
    pub sessions: Sessions,
    /// The app side: users and sessions through the GraphQL API.
    pub app: App,
    /// Faults to inject.
    pub faults: Faults,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "adhoc".into(),
            urls: vec!["ws://127.0.0.1:8080/ocpp".into()],
            source_ips: Vec::new(),
            chargers: 10,
            id_prefix: "SIM-".into(),
            first_index: 0,
            ocpp201_share: 0.0,
            connectors: 1,
            ramp_up_per_sec: 200.0,
            duration_secs: 30.0,
            drain_secs: 5.0,
            warmup_secs: 0.0,
            password: None,
            app_password: None,
            seed: 1,
            connect_timeout_secs: 10.0,
            call_timeout_secs: 30.0,
            reconnect: true,
            heartbeat: Heartbeat::default(),
            meter_interval_secs: 10.0,
            sessions: Sessions::default(),
            app: App::default(),
            faults: Faults::default(),
        }
    }
}

/// How chargers send Heartbeat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatMode {
    /// At the interval the CSMS gave in its BootNotification answer.
    #[default]
    Server,
    /// Every `interval_secs`, whatever the CSMS said.
    Interval,
    /// At an aggregate `rate` per second over all chargers of this process (open loop).
    Rate,
    /// As fast as the round trip allows: the next one leaves when the answer arrives.
    Max,
    /// Never (idle connections).
    Off,
}

/// Heartbeat settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Heartbeat {
    /// See [`HeartbeatMode`].
    pub mode: HeartbeatMode,
    /// Period for `mode = "interval"`.
    pub interval_secs: f64,
    /// Aggregate heartbeats per second for `mode = "rate"`.
    pub rate: f64,
    /// Hold heartbeats until the ramp-up is over, so the connection storm and the heartbeat load
    /// are measured apart (benchmarks).
    pub after_ramp: bool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            mode: HeartbeatMode::Server,
            interval_secs: 60.0,
            rate: 1000.0,
            after_ramp: false,
        }
    }
}

/// Charging sessions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Sessions {
    /// Share (0..=1) of chargers that run sessions.
    pub charger_share: f64,
    /// Sessions each of those chargers runs, one after the other.
    pub per_charger: u32,
    /// Share (0..=1) of session chargers whose sessions start locally with an RFID idTag; the
    /// rest are started through the GraphQL API as an app would.
    pub local_share: f64,
    /// The first session starts after a random delay in this range (seconds after boot).
    pub start_after_secs: [f64; 2],
    /// How long energy flows.
    pub length_secs: f64,
    /// Pause between two sessions of one charger, from the end of one (its StopTransaction
    /// answered) to the start of the next: the offered rate falls as the server slows (closed
    /// loop).
    pub gap_secs: f64,
    /// Instead of `gap_secs`: a charger's sessions (local or app-driven) start one every `every_secs`, counted
    /// from when the last one was due (open loop), so N chargers offer N / `every_secs`
    /// sessions/s as long as a session and its messages fit within the period. A session that
    /// ends later than its successor is due starts the next one at once, and the cadence counts
    /// from then (the offered rate falls, as with `gap_secs`). The first session starts
    /// `start_after_secs[0]` plus a random part of one period after boot, so the chargers'
    /// phases are spread evenly over the period.
    pub every_secs: Option<f64>,
    /// Charging power while unrestricted by a charging profile.
    pub power_kw: f64,
    /// RFID tags presented locally, round-robin. Tags of the users registered for `[app]` are
    /// used first; with neither, a made-up tag is used (and the CSMS should reject it).
    pub id_tags: Vec<String>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            charger_share: 0.0,
            per_charger: 1,
            local_share: 1.0,
            start_after_secs: [1.0, 5.0],
            length_secs: 10.0,
            gap_secs: 5.0,
            every_secs: None,
            power_kw: 11.0,
            id_tags: Vec::new(),
        }
    }
}

/// The app side of the run: drivers registered over GraphQL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct App {
    /// GraphQL endpoint; derived from the first OCPP URL when empty.
    pub graphql_url: Option<String>,
    /// Drivers to register before the chargers connect (their idTags are presented locally).
    pub users: u32,
    /// Wallet top-up per registered driver (decimal string).
    pub top_up: String,
    /// An OPERATOR account that attaches app-driven chargers to `station_id` (`registerCharger`),
    /// which `startSession` needs.
    pub operator_email: Option<String>,
    /// Its password.
    pub operator_password: Option<String>,
    /// Station the app-driven chargers belong to.
    pub station_id: Option<String>,
}

impl Default for App {
    fn default() -> Self {
        Self {
            graphql_url: None,
            users: 0,
            top_up: "50.00".into(),
            operator_email: None,
            operator_password: None,
            station_id: None,
        }
    }
}

/// Faults to inject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Connections dropped (TCP closed without a close frame) per second, over all chargers.
    pub drops_per_sec: f64,
    /// At each of these times (seconds from start) every charger drops its connection and
    /// reconnects at once: a reconnect storm.
    pub storms_at_secs: Vec<f64>,
    /// Reconnect delay after a drop or a storm: random in this range (milliseconds).
    pub reconnect_delay_ms: [u64; 2],
    /// Share (0..=1) of CSMS calls answered late.
    pub slow_response_share: f64,
    /// How late.
    pub slow_response_ms: u64,
    /// Malformed frames sent per second, over all chargers.
    pub malformed_per_sec: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            drops_per_sec: 0.0,
            storms_at_secs: Vec::new(),
            reconnect_delay_ms: [200, 2000],
            slow_response_share: 0.0,
            slow_response_ms: 2000,
            malformed_per_sec: 0.0,
        }
    }
}

/// A scenario that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML/YAML for a scenario.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's complaint.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    /// Reads a scenario file; `.yaml`/`.yml` are YAML, anything else TOML.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let parsed = if yaml {
            serde_yaml::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|message| ScenarioError::Parse {
            path: shown,
            message,
        })
    }

    /// Checks every figure before the run starts.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(m.to_string()));
        let share = |v: f64| (0.0..=1.0).contains(&v);
        if self.urls.is_empty() {
            return bad("at least one URL is needed");
        }
        for url in &self.urls {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return bad(&format!("{url:?} is not a ws:// URL"));
            }
        }
        if self.chargers == 0 || self.connectors == 0 || self.connectors > 32 {
            return bad("chargers must be at least 1 and connectors 1..=32");
        }
        if !share(self.ocpp201_share)
            || !share(self.sessions.charger_share)
            || !share(self.sessions.local_share)
            || !share(self.faults.slow_response_share)
        {
            return bad("shares must be between 0 and 1");
        }
        let positive = [
            self.duration_secs,
            self.connect_timeout_secs,
            self.call_timeout_secs,
            self.meter_interval_secs,
        ];
        if positive.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return bad("duration, timeouts and the meter interval must be positive");
        }
        let non_negative = [
            self.ramp_up_per_sec,
            self.drain_secs,
            self.warmup_secs,
            self.sessions.length_secs,
            self.sessions.gap_secs,
            self.sessions.power_kw,
            self.faults.drops_per_sec,
            self.faults.malformed_per_sec,
        ];
        if non_negative.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return bad("rates, lengths and delays cannot be negative");
        }
        if let Some(every) = self.sessions.every_secs {
            if !every.is_finite() || every <= self.sessions.length_secs {
                return bad("sessions.every_secs must be longer than sessions.length_secs");
            }
        }
        if self.duration_secs > 7.0 * 86_400.0 {
            return bad("duration is capped at a week");
        }
        let [lo, hi] = self.sessions.start_after_secs;
        if !(0.0..=hi).contains(&lo) {
            return bad("sessions.start_after_secs must be [low, high] with 0 <= low <= high");
        }
        if self
            .faults
            .storms_at_secs
            .windows(2)
            .any(|w| w[0] > w[1] || !w[0].is_finite())
        {
            return bad("faults.storms_at_secs must be in increasing order");
        }
        if self.faults.reconnect_delay_ms[0] > self.faults.reconnect_delay_ms[1] {
            return bad("faults.reconnect_delay_ms must be [low, high]");
        }
        match self.heartbeat.mode {
            HeartbeatMode::Interval if self.heartbeat.interval_secs <= 0.0 => {
                bad("heartbeat.interval_secs must be positive")
            }
            HeartbeatMode::Rate if self.heartbeat.rate <= 0.0 => {
                bad("heartbeat.rate must be positive")
            }
            _ => Ok(()),
        }
    }

    /// The charger id of the `n`-th charger of this process.
    pub fn charger_id(&self, n: u32) -> String {
        format!("{}{:06}", self.id_prefix, self.first_index + n)
    }

    /// When the last charger's first connection attempt is due.
    pub fn ramp_secs(&self) -> f64 {
        if self.ramp_up_per_sec > 0.0 {
            f64::from(self.chargers) / self.ramp_up_per_sec
        } else {
            0.0
        }
    }

    /// The GraphQL endpoint: configured, or `http://host:port/graphql` of the first OCPP URL.
    pub fn graphql_url(&self) -> Option<String> {
        if let Some(url) = &self.app.graphql_url {
            return Some(url.clone());
        }
        let first = url::Url::parse(self.urls.first()?).ok()?;
        let scheme = if first.scheme() == "wss" {
            "https"
        } else {
            "http"
        };
        Some(format!(
            "{scheme}://{}:{}/graphql",
            first.host_str()?,
            first.port_or_known_default()?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Scenario::default().validate().is_ok());
    }

    #[test]
    fn toml_and_yaml_read_the_same_scenario() {
        let toml_text = "name = \"x\"\nchargers = 3\n[heartbeat]\nmode = \"rate\"\nrate = 50.0\n[faults]\nstorms_at_secs = [5.0]\n";
        let yaml_text = "name: x\nchargers: 3\nheartbeat:\n  mode: rate\n  rate: 50.0\nfaults:\n  storms_at_secs: [5.0]\n";
        let a: Scenario = toml::from_str(toml_text).unwrap_or_default();
        let b: Scenario = serde_yaml::from_str(yaml_text).unwrap_or_default();
        assert_eq!(a, b);
        assert_eq!(a.chargers, 3);
        assert_eq!(a.heartbeat.mode, HeartbeatMode::Rate);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Scenario>("chargerz = 3").is_err());
        let s = Scenario {
            ocpp201_share: 1.5,
            ..Scenario::default()
        };
        assert!(s.validate().is_err());
        let s = Scenario {
            urls: vec!["http://x".into()],
            ..Scenario::default()
        };
        assert!(s.validate().is_err());
        // a cadence shorter than a session would start one before the last ended
        let cadence = |every: f64| Scenario {
            sessions: Sessions {
                length_secs: 1.0,
                every_secs: Some(every),
                ..Sessions::default()
            },
            ..Scenario::default()
        };
        assert!(cadence(1.0).validate().is_err());
        assert!(cadence(f64::NAN).validate().is_err());
        assert!(cadence(1.5).validate().is_ok());
    }

    #[test]
    fn ids_and_graphql_url_derive_from_the_scenario() {
        let s = Scenario {
            first_index: 5000,
            urls: vec!["ws://127.0.0.1:9001/ocpp".into()],
            ..Scenario::default()
        };
        assert_eq!(s.charger_id(2), "SIM-005002");
        assert_eq!(
            s.graphql_url().as_deref(),
            Some("http://127.0.0.1:9001/graphql")
        );
    }

    #[test]
    fn bundled_scenarios_parse_and_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let scenario = Scenario::from_file(&entry.path());
            assert!(scenario.is_ok(), "{:?}: {scenario:?}", entry.path());
            if let Ok(s) = scenario {
                assert!(s.validate().is_ok(), "{:?}", entry.path());
            }
            seen += 1;
        }
        assert!(seen >= 7, "expected the bundled scenarios, found {seen}");
    }
}
