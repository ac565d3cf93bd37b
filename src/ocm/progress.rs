//! Progress of a sync: a bar on a terminal, structured log lines otherwise (k8s, CI, tests).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
pub enum Progress {
    /// An indicatif spinner/bar on stderr.
    Bar(ProgressBar),
    /// One `info` line per committed page.
    Log,
}

impl Progress {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} {msg} {human_pos} POIs ({per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar(bar)
        } else {
            Progress::Log
        }
    }

    /// Log lines only (tests, the in-process scheduler).
    pub fn log() -> Self {
        Progress::Log
    }

    /// Names the current phase ("ID scan", "incremental", "file").
    pub fn phase(&self, phase: &str) {
        match self {
            Progress::Bar(bar) => bar.set_message(phase.to_string()),
            Progress::Log => tracing::info!(phase, "OCM sync phase"),
        }
    }

    /// A page or batch was committed.
    pub fn page(&self, received: usize, processed: u64, updated: u64, failed: u64) {
        match self {
            Progress::Bar(bar) => bar.inc(received as u64),
            Progress::Log => tracing::info!(
                received,
                processed,
                updated,
                failed,
                "OCM sync page committed"
            ),
        }
    }

    /// The run ended (either way).
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
