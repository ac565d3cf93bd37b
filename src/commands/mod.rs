//! What each subcommand does, behind a thin `main`.

pub mod demo_fleet;
pub mod migrate;
pub mod seed_demo;
pub mod sync_ocm;
pub mod user;
pub mod worker;
