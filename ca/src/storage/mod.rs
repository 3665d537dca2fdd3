//! All database access. Nothing outside this module builds a query; the services in this crate
//! call the functions here inside `Storage::write` or `Storage::read`.

pub(crate) mod accounts;
pub(crate) mod assets;
pub(crate) mod audit;
pub(crate) mod certificates;
mod connection;
pub(crate) mod crl;
pub(crate) mod email_challenges;
mod group_commit;
pub(crate) mod nonces;
pub(crate) mod orders;
pub(crate) mod outbox;
pub(crate) mod people;
pub(crate) mod recoveries;
pub(crate) mod rows;
pub(crate) mod scheduled;
mod schema;
pub(crate) mod tokens;

pub use certificates::CertificateCounts;
pub use connection::{Backend, DbConnection, Durability, Storage};
