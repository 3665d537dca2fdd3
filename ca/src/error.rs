//! The one error type of the domain. Each kind maps to exactly one ACME problem type in
//! `dualca_acme::problem`; the detail is safe to show to a client, anything internal is logged
//! where it happens and replaced by a generic detail.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Malformed,
    Unauthorized,
    AccountDoesNotExist,
    BadCsr,
    BadPublicKey,
    BadSignatureAlgorithm,
    RejectedIdentifier,
    UnsupportedIdentifier,
    OrderNotReady,
    AlreadyRevoked,
    AlreadyReplaced,
    BadRevocationReason,
    UserActionRequired,
    RateLimited,
    ExternalAccountRequired,
    InvalidProfile,
    InvalidContact,
    UnsupportedContact,
    /// The resource does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409), e.g. a key already in use.
    Conflict,
    // Validation failures, recorded on challenges.
    Connection,
    Dns,
    Tls,
    IncorrectResponse,
    Internal,
}

macro_rules! kind_names {
    ($($kind:ident => $name:literal),* $(,)?) => {
        impl ErrorKind {
            /// A stable name, used where a kind is stored (failed challenges and orders).
            pub fn name(self) -> &'static str {
                match self { $(ErrorKind::$kind => $name),* }
            }
            pub fn from_name(name: &str) -> Option<ErrorKind> {
                match name { $($name => Some(ErrorKind::$kind),)* _ => None }
            }
        }
    };
}

kind_names! {
    Malformed => "malformed", Unauthorized => "unauthorized", AccountDoesNotExist => "accountDoesNotExist",
    BadCsr => "badCSR", BadPublicKey => "badPublicKey", BadSignatureAlgorithm => "badSignatureAlgorithm",
    RejectedIdentifier => "rejectedIdentifier", UnsupportedIdentifier => "unsupportedIdentifier",
    OrderNotReady => "orderNotReady", AlreadyRevoked => "alreadyRevoked", AlreadyReplaced => "alreadyReplaced",
    BadRevocationReason => "badRevocationReason", UserActionRequired => "userActionRequired",
    RateLimited => "rateLimited", ExternalAccountRequired => "externalAccountRequired",
    InvalidProfile => "invalidProfile", InvalidContact => "invalidContact",
    UnsupportedContact => "unsupportedContact", NotFound => "notFound", Conflict => "conflict",
    Connection => "connection", Dns => "dns", Tls => "tls", IncorrectResponse => "incorrectResponse",
    Internal => "serverInternal",
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub detail: String,
    /// For `Conflict` on key change and for existing accounts: the URL-less id of the
    /// resource the conflict is about.
    pub conflicting_account: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error { kind, detail: detail.into(), conflicting_account: None }
    }

    /// An internal failure: the cause is logged here, the client sees only a generic detail.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Error::new(ErrorKind::Internal, "internal server error")
    }
}

macro_rules! constructors {
    ($($name:ident => $kind:ident),* $(,)?) => {
        impl Error {
            $(pub fn $name(detail: impl Into<String>) -> Self { Error::new(ErrorKind::$kind, detail) })*
        }
    };
}

constructors! {
    malformed => Malformed,
    unauthorized => Unauthorized,
    account_does_not_exist => AccountDoesNotExist,
    bad_csr => BadCsr,
    bad_public_key => BadPublicKey,
    rejected_identifier => RejectedIdentifier,
    unsupported_identifier => UnsupportedIdentifier,
    order_not_ready => OrderNotReady,
    already_revoked => AlreadyRevoked,
    already_replaced => AlreadyReplaced,
    bad_revocation_reason => BadRevocationReason,
    external_account_required => ExternalAccountRequired,
    invalid_profile => InvalidProfile,
    invalid_contact => InvalidContact,
    unsupported_contact => UnsupportedContact,
    not_found => NotFound,
    conflict => Conflict,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Error {}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Error::not_found("no such resource"),
            other => Error::internal(format!("database: {other}")),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::internal(format!("database pool: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
