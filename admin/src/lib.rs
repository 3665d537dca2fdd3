//! dualca-admin: the operator- and relying-party-facing HTTP surface. For now, the public
//! endpoints (`public`); the JWT-protected admin API and pages build on this crate.

pub mod public;

pub use public::public_routes;
