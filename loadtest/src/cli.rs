//! Command-line flags. A scenario file (TOML or YAML) is read first, then every flag given
//! overrides the matching field, so ready-made scenarios can be scaled from the command line.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use chargegrid_loadtest::scenario::{HeartbeatMode, Scenario, ScenarioError};

/// Heartbeat modes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HeartbeatArg {
    /// At the BootNotification interval.
    Server,
    /// Every --heartbeat-interval seconds.
    Interval,
    /// At an aggregate --heartbeat-rate per second.
    Rate,
    /// As fast as round trips allow.
    Max,
    /// Never.
    Off,
}

/// chargegrid's charger simulator: OCPP 1.6J/2.0.1 chargers, app sessions over GraphQL, faults,
/// and a latency/throughput report.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// Scenario file (.toml, .yaml or .yml); flags override it.
    #[arg(long, short = 's')]
    pub scenario: Option<PathBuf>,
    /// Scenario name for the report.
    #[arg(long)]
    pub name: Option<String>,
    /// OCPP endpoint base URL (repeatable: chargers are assigned round-robin).
    #[arg(long = "url", short = 'u')]
    pub urls: Vec<String>,
    /// Source addresses to bind, comma separated; ranges like 127.0.0.2-127.0.0.9 allowed.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Chargers to simulate in this process.
    #[arg(long, short = 'n')]
    pub chargers: Option<u32>,
    /// Charger id prefix.
    #[arg(long)]
    pub id_prefix: Option<String>,
    /// Index of the first charger (to run several processes side by side).
    #[arg(long)]
    pub first_index: Option<u32>,
    /// Share of chargers speaking OCPP 2.0.1 (0..1).
    #[arg(long)]
    pub ocpp201_share: Option<f64>,
    /// Connectors / EVSEs per charger.
    #[arg(long)]
    pub connectors: Option<u32>,
    /// New connections per second (0 = all at once).
    #[arg(long)]
    pub ramp: Option<f64>,
    /// Run length in seconds.
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Seconds allowed for stopping transactions and closing at the end.
    #[arg(long)]
    pub drain: Option<f64>,
    /// Seconds after ramp-up before latency and throughput are measured.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// HTTP Basic password of every charger.
    #[arg(long, env = "LOADTEST_CHARGER_PASSWORD")]
    pub password: Option<String>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Heartbeat mode.
    #[arg(long, value_enum)]
    pub heartbeat: Option<HeartbeatArg>,
    /// Heartbeat period for --heartbeat interval.
    #[arg(long)]
    pub heartbeat_interval: Option<f64>,
    /// Aggregate heartbeats per second for --heartbeat rate.
    #[arg(long)]
    pub heartbeat_rate: Option<f64>,
    /// MeterValues period in seconds.
    #[arg(long)]
    pub meter_interval: Option<f64>,
    /// Share of chargers that run sessions.
    #[arg(long)]
    pub session_share: Option<f64>,
    /// Sessions per session charger.
    #[arg(long)]
    pub sessions_per_charger: Option<u32>,
    /// Share of session chargers started locally by RFID (the rest via GraphQL).
    #[arg(long)]
    pub local_share: Option<f64>,
    /// Session length in seconds.
    #[arg(long)]
    pub session_length: Option<f64>,
    /// RFID tag for local sessions (repeatable).
    #[arg(long = "id-tag")]
    pub id_tags: Vec<String>,
    /// Drivers to register over GraphQL (their idTags are used locally).
    #[arg(long)]
    pub users: Option<u32>,
    /// GraphQL endpoint (default: derived from the first URL).
    #[arg(long)]
    pub graphql_url: Option<String>,
    /// OPERATOR account for app sessions.
    #[arg(long, env = "LOADTEST_OPERATOR_EMAIL")]
    pub operator_email: Option<String>,
    /// Its password.
    #[arg(long, env = "LOADTEST_OPERATOR_PASSWORD")]
    pub operator_password: Option<String>,
    /// Station of the app-driven chargers.
    #[arg(long)]
    pub station_id: Option<String>,
    /// Connections dropped per second (aggregate).
    #[arg(long)]
    pub drops_per_sec: Option<f64>,
    /// Reconnect storm at this second (repeatable).
    #[arg(long = "storm-at")]
    pub storms: Vec<f64>,
    /// Share of CSMS calls answered late.
    #[arg(long)]
    pub slow_share: Option<f64>,
    /// How late, in milliseconds.
    #[arg(long)]
    pub slow_ms: Option<u64>,
    /// Malformed frames per second (aggregate).
    #[arg(long)]
    pub malformed_per_sec: Option<f64>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write throughput and latency plots (SVG) into this directory (needs the `plots` feature).
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the effective scenario as TOML and exit.
    #[arg(long)]
    pub print_scenario: bool,
    /// Exit with status 2 when any connection failed, any protocol error or call timeout
    /// occurred, or any session failed.
    #[arg(long)]
    pub check: bool,
}

/// Parses `127.0.0.2,127.0.0.5-127.0.0.9,::1`.
pub fn parse_ips(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut ips = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((from, to)) = part.split_once('-') {
            let from: Ipv4Addr = from.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            let to: Ipv4Addr = to.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            let (a, b) = (u32::from(from), u32::from(to));
            if b < a || b - a > 1024 {
                return Err(format!(
                    "{part}: a range must go upwards and hold at most 1025 addresses"
                ));
            }
            ips.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
        } else {
            ips.push(part.parse().map_err(|e| format!("{part}: {e}"))?);
        }
    }
    Ok(ips)
}

impl Cli {
    /// The scenario: the file (or defaults), then the flags.
    pub fn scenario(&self) -> Result<Scenario, ScenarioError> {
        let mut s = match &self.scenario {
            Some(path) => Scenario::from_file(path)?,
            None => Scenario::default(),
        };
        macro_rules! set {
            ($($flag:ident => $($field:ident).+;)*) => {
                $(if let Some(v) = self.$flag.clone() { s.$($field).+ = v; })*
            };
        }
        set! {
            name => name;
            chargers => chargers;
            id_prefix => id_prefix;
            first_index => first_index;
            ocpp201_share => ocpp201_share;
            connectors => connectors;
            ramp => ramp_up_per_sec;
            duration => duration_secs;
            drain => drain_secs;
            warmup => warmup_secs;
            seed => seed;
            heartbeat_interval => heartbeat.interval_secs;
            heartbeat_rate => heartbeat.rate;
            meter_interval => meter_interval_secs;
            session_share => sessions.charger_share;
            sessions_per_charger => sessions.per_charger;
            local_share => sessions.local_share;
            session_length => sessions.length_secs;
            users => app.users;
            drops_per_sec => faults.drops_per_sec;
            slow_share => faults.slow_response_share;
            slow_ms => faults.slow_response_ms;
            malformed_per_sec => faults.malformed_per_sec;
        }
        if !self.urls.is_empty() {
            s.urls = self.urls.clone();
        }
        if let Some(ips) = &self.source_ips {
            s.source_ips = parse_ips(ips).map_err(ScenarioError::Invalid)?;
        }
        if self.password.is_some() {
            s.password = self.password.clone();
        }
        if let Some(mode) = self.heartbeat {
            s.heartbeat.mode = match mode {
                HeartbeatArg::Server => HeartbeatMode::Server,
                HeartbeatArg::Interval => HeartbeatMode::Interval,
                HeartbeatArg::Rate => HeartbeatMode::Rate,
                HeartbeatArg::Max => HeartbeatMode::Max,
                HeartbeatArg::Off => HeartbeatMode::Off,
            };
        }
        if !self.id_tags.is_empty() {
            s.sessions.id_tags = self.id_tags.clone();
        }
        if !self.storms.is_empty() {
            s.faults.storms_at_secs = self.storms.clone();
        }
        for (flag, field) in [
            (&self.graphql_url, &mut s.app.graphql_url),
            (&self.operator_email, &mut s.app.operator_email),
            (&self.operator_password, &mut s.app.operator_password),
            (&self.station_id, &mut s.app.station_id),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_lists_and_ranges_parse() {
        let ips = parse_ips("127.0.0.2-127.0.0.4, 127.0.0.9").unwrap_or_default();
        assert_eq!(ips.len(), 4);
        assert_eq!(ips[3], IpAddr::from([127, 0, 0, 9]));
        assert!(parse_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_ips("nonsense").is_err());
    }

    #[test]
    fn flags_override_the_scenario_file() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
        let cli = Cli::parse_from([
            "loadtest",
            "--scenario",
            path.to_str().unwrap_or_default(),
            "--chargers",
            "7",
            "--heartbeat",
            "rate",
            "--heartbeat-rate",
            "70",
            "--source-ips",
            "127.0.0.2-127.0.0.3",
        ]);
        let s = cli.scenario();
        assert!(s.is_ok(), "{s:?}");
        let s = s.unwrap_or_default();
        assert_eq!(s.name, "smoke");
        assert_eq!(s.chargers, 7);
        assert_eq!(s.heartbeat.mode, HeartbeatMode::Rate);
        assert_eq!(s.source_ips.len(), 2);
    }
}
