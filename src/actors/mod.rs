//! The actor system of the connection server: one `ChargerActor` per connected charger, the
//! `Registry` that routes commands to them, one `SessionActor` per open session under the
//! `SessionSupervisor`, one `SiteController` per load-managed site under the `SiteSupervisor`,
//! and the messages they exchange.

pub mod charger;
pub mod local_lists;
pub mod message_limits;
pub mod messages;
pub mod registry;
pub mod session;
pub mod session_commands;
pub mod session_supervisor;
pub mod site;
pub mod site_supervisor;

pub use charger::ChargerActor;
pub use registry::Registry;
pub use session_supervisor::SessionSupervisor;
pub use site_supervisor::SiteSupervisor;
