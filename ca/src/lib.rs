//! dualca-ca: the certificate authority's domain. Key hierarchy and signing, track policies,
//! CSR checks, issuance, revocation, the audit chain and storage. No HTTP and no wire types live
//! here: the front ends (`dualca-acme`, `dualca-admin`) call `Ca`'s methods.

pub mod ari;
pub mod audit;
pub mod clock;
pub mod crl;
pub mod csr;
mod der;
mod error;
pub mod hierarchy;
pub mod ids;
pub mod issuance;
pub mod jwk;
pub mod model;
pub mod ocsp;
pub mod policy;
mod service;
pub mod status;
pub mod storage;
mod track;

pub use error::{Error, ErrorKind, Result};
pub use service::{
    expected_response, subject_token, EmailReply, EmailReplySettings, ReplyAuthentication, AUTO_SUBMITTED_ACME,
};
pub use service::{
    mail_retry_delay, render_mail, Housekeeping, MailBody, MailRetry, OutboundMail, QueuedMail, Retention,
    MAX_MAIL_ATTEMPTS,
};
pub use service::{
    AssetQuery, AuditFilter, AuditRecord, Ca, CertificateFilter, CrlInfo, Decommissioned, EabProof, NewAccount,
    NewOrder, NonceExchange, RevocationSettings, Revoker, ServerCertificate, Settings, SyncPlan, SyncReport,
    ValidationTarget,
};
pub use storage::Durability;
pub use track::Track;
