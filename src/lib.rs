//! The `dualca` binary's library half: configuration, wiring, and the CLI's commands, so that
//! the tests build the same server `main` runs.

pub mod config;
pub mod dkim;
pub mod enroll;
pub mod jobs;
pub mod mail;
pub mod startup;
pub mod telemetry;
