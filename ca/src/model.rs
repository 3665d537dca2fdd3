//! Domain types. They are not Serialize: the ACME front end has its own wire types and converts
//! explicitly, and storage rows stay private to `storage`.

use crate::Track;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierKind {
    Dns,
    Ip,
    Email,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Dns => "dns",
            IdentifierKind::Ip => "ip",
            IdentifierKind::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dns" => Some(IdentifierKind::Dns),
            "ip" => Some(IdentifierKind::Ip),
            "email" => Some(IdentifierKind::Email),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier {
    pub kind: IdentifierKind,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: IdentifierKind, value: impl Into<String>) -> Self {
        Identifier { kind, value: value.into() }
    }

    pub fn is_wildcard(&self) -> bool {
        self.kind == IdentifierKind::Dns && self.value.starts_with("*.")
    }

    /// The identifier an authorization is for: a wildcard's base domain.
    pub fn authorization_value(&self) -> &str {
        if self.is_wildcard() {
            &self.value[2..]
        } else {
            &self.value
        }
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

macro_rules! status_enum {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),* }
        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

status_enum!(AccountStatus { Valid => "valid", Deactivated => "deactivated", Revoked => "revoked" });
status_enum!(OrderStatus {
    Pending => "pending", Ready => "ready", Processing => "processing", Valid => "valid", Invalid => "invalid"
});
status_enum!(AuthzStatus {
    Pending => "pending", Valid => "valid", Invalid => "invalid", Deactivated => "deactivated",
    Expired => "expired", Revoked => "revoked"
});
status_enum!(ChallengeStatus { Pending => "pending", Processing => "processing", Valid => "valid", Invalid => "invalid" });
status_enum!(ChallengeKind { Http01 => "http-01", Dns01 => "dns-01", TlsAlpn01 => "tls-alpn-01", EmailReply00 => "email-reply-00" });
status_enum!(CertificateStatus { Valid => "valid", Revoked => "revoked" });

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub track: Track,
    pub key_thumbprint: String,
    /// The account key as a JWK JSON object (RFC 7517), kept as text so the front end can
    /// rebuild the verifying key.
    pub jwk: String,
    pub status: AccountStatus,
    pub contact: Vec<String>,
    pub tos_agreed: bool,
    pub eab_kid: Option<String>,
    /// The machine-track asset this account is bound to through its EAB credentials.
    pub asset_id: Option<String>,
    /// The human-track person this account is bound to through its EAB credentials.
    pub person_id: Option<String>,
    pub created_at: i64,
}

/// A problem recorded on a failed challenge or order: a kind and a detail.
#[derive(Debug, Clone)]
pub struct StoredProblem {
    pub kind: crate::ErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub track: Track,
    pub account_id: String,
    pub status: OrderStatus,
    pub identifiers: Vec<Identifier>,
    pub profile: String,
    pub expires: i64,
    pub error: Option<StoredProblem>,
    pub certificate_serial: Option<String>,
    pub replaces: Option<String>,
    pub authorization_ids: Vec<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Authorization {
    pub id: String,
    pub track: Track,
    pub account_id: String,
    pub order_id: String,
    /// For a wildcard order, the base domain; `wildcard` says it came from `*.`.
    pub identifier: Identifier,
    pub wildcard: bool,
    pub status: AuthzStatus,
    pub expires: i64,
    pub challenges: Vec<Challenge>,
}

#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub authorization_id: String,
    pub kind: ChallengeKind,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated: Option<i64>,
    pub error: Option<StoredProblem>,
}

#[derive(Debug, Clone)]
pub struct CertificateRecord {
    /// Lower-case hex of the serial number's DER INTEGER content.
    pub serial: String,
    pub track: Track,
    pub account_id: Option<String>,
    pub order_id: Option<String>,
    /// The machine-track asset it was issued to.
    pub asset_id: Option<String>,
    /// The human-track person it was issued to.
    pub person_id: Option<String>,
    pub profile: String,
    pub identifiers: Vec<Identifier>,
    pub spki_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub status: CertificateStatus,
    pub revocation_reason: Option<u8>,
    pub revoked_at: Option<i64>,
    pub replaced_by: Option<String>,
}

/// RFC 5280 §5.3.1 reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    Unspecified = 0,
    KeyCompromise = 1,
    CaCompromise = 2,
    AffiliationChanged = 3,
    Superseded = 4,
    CessationOfOperation = 5,
    CertificateHold = 6,
    RemoveFromCrl = 8,
    PrivilegeWithdrawn = 9,
    AaCompromise = 10,
}

impl RevocationReason {
    pub fn from_code(code: i64) -> Option<Self> {
        use RevocationReason::*;
        Some(match code {
            0 => Unspecified,
            1 => KeyCompromise,
            2 => CaCompromise,
            3 => AffiliationChanged,
            4 => Superseded,
            5 => CessationOfOperation,
            6 => CertificateHold,
            8 => RemoveFromCrl,
            9 => PrivilegeWithdrawn,
            10 => AaCompromise,
            _ => return None,
        })
    }

    /// The reasons a subscriber may give through ACME revokeCert. The others belong to the CA
    /// (caCompromise, aACompromise), have no meaning for a final revocation (certificateHold,
    /// removeFromCRL), or are set by the CA's own workflows (privilegeWithdrawn).
    pub fn subscriber_may_use(self) -> bool {
        use RevocationReason::*;
        matches!(self, Unspecified | KeyCompromise | AffiliationChanged | Superseded | CessationOfOperation)
    }

    /// A reason by its RFC 5280 name (`keyCompromise`) or code (`1`).
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(code) = text.parse::<i64>() {
            return Self::from_code(code);
        }
        (0..=10).filter_map(Self::from_code).find(|r| r.name().eq_ignore_ascii_case(text))
    }

    pub fn name(self) -> &'static str {
        use RevocationReason::*;
        match self {
            Unspecified => "unspecified",
            KeyCompromise => "keyCompromise",
            CaCompromise => "cACompromise",
            AffiliationChanged => "affiliationChanged",
            Superseded => "superseded",
            CessationOfOperation => "cessationOfOperation",
            CertificateHold => "certificateHold",
            RemoveFromCrl => "removeFromCRL",
            PrivilegeWithdrawn => "privilegeWithdrawn",
            AaCompromise => "aACompromise",
        }
    }
}

status_enum!(AssetKind { Host => "host", Container => "container", Service => "service", Pipeline => "pipeline", Device => "device" });
status_enum!(AssetStatus { Active => "active", Decommissioned => "decommissioned" });

/// A machine-track inventory entry: what may hold certificates, and who answers for it.
#[derive(Debug, Clone)]
pub struct Asset {
    pub id: String,
    pub name: String,
    pub kind: AssetKind,
    pub owner_team: String,
    pub owner_email: String,
    pub service: String,
    pub environment: String,
    pub identifiers: Vec<Identifier>,
    pub spiffe_id: Option<String>,
    /// The profile every certificate of this asset uses, when pinned.
    pub profile: Option<String>,
    pub status: AssetStatus,
    pub compromised: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub decommissioned_at: Option<i64>,
}

/// What registering or updating an asset supplies, before validation.
#[derive(Debug, Clone, Default)]
pub struct AssetSpec {
    pub name: String,
    pub kind: String,
    pub owner_team: String,
    pub owner_email: String,
    pub service: String,
    pub environment: String,
    /// (type, value) pairs, as `dns`/`ip` identifiers.
    pub identifiers: Vec<(String, String)>,
    pub spiffe_id: Option<String>,
    pub profile: Option<String>,
}

/// An EAB key as operators see it: its dates and state, never the key.
#[derive(Debug, Clone)]
pub struct EabKeyInfo {
    pub kid: String,
    pub single_use: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl EabKeyInfo {
    /// Why the key can no longer bind an account, if it cannot: revoked, expired, or used up.
    pub fn spent(&self, now: i64) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("revoked")
        } else if self.expires_at <= now {
            Some("expired")
        } else if self.single_use && self.used_at.is_some() {
            Some("used")
        } else {
            None
        }
    }
}

/// EAB credentials as handed out once: the kid and the base64url HMAC key.
#[derive(Debug, Clone)]
pub struct EabCredentials {
    pub kid: String,
    pub hmac_key_b64: String,
    pub expires_at: i64,
    pub single_use: bool,
}

status_enum!(PersonStatus { Invited => "invited", Active => "active", Suspended => "suspended", Left => "left" });
status_enum!(ProofingLevel { None => "none", Email => "email", Helpdesk => "helpdesk" });

impl ProofingLevel {
    pub fn rank(self) -> u8 {
        match self {
            ProofingLevel::None => 0,
            ProofingLevel::Email => 1,
            ProofingLevel::Helpdesk => 2,
        }
    }
}

/// A person on the human track: whose identity was proofed, and how far.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub employee_id: String,
    pub manager_email: String,
    pub status: PersonStatus,
    pub proofing_level: ProofingLevel,
    pub created_at: i64,
    pub updated_at: i64,
    pub left_at: Option<i64>,
}

/// A joiner as HR announces them.
#[derive(Debug, Clone, Default)]
pub struct JoinerSpec {
    pub email: String,
    pub display_name: String,
    pub employee_id: String,
    pub manager_email: String,
}

/// What an invite carries: the one-time link token and code, shown only in the invite mail.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub person: Person,
    pub enrollment_url: String,
    pub code: String,
    pub expires_at: i64,
}

status_enum!(RecoveryStatus { Pending => "pending", Completed => "completed", Cancelled => "cancelled" });

/// How long a high-assurance recovery waits for its second operator. The out-of-band check it
/// rests on goes stale; after this the request can no longer be approved, and a new request
/// cancels it.
pub const RECOVERY_APPROVAL_SECONDS: i64 = 24 * 3600;

/// What a help-desk operator records to recover a person, before validation: the revocation
/// reason for the person's certificates (`keyCompromise` or `superseded`), how the identity was
/// checked out of band (`in-person`, `video`, `manager-callback`), and the evidence.
#[derive(Debug, Clone, Default)]
pub struct RecoverySpec {
    pub reason: String,
    pub method: String,
    pub evidence: String,
}

/// A help-desk recovery of a person who lost a key or a device. A high-assurance one (the
/// person holds a `client-auth` certificate or was proofed by the help desk) waits, `pending`,
/// for a second operator; a standard one is carried out when requested.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub id: String,
    pub person_id: String,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub cancelled_by: Option<String>,
    pub reason: RevocationReason,
    pub method: String,
    pub evidence: String,
    pub high_assurance: bool,
    pub status: RecoveryStatus,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub cancelled_at: Option<i64>,
}

impl Recovery {
    /// Until when a pending recovery may be approved.
    pub fn approval_expires_at(&self) -> i64 {
        self.created_at + RECOVERY_APPROVAL_SECONDS
    }

    /// Pending and still within its approval window.
    pub fn awaits_approval(&self, now: i64) -> bool {
        self.status == RecoveryStatus::Pending && now < self.approval_expires_at()
    }
}

/// What requesting or approving a recovery did. The lists are empty while it is pending.
#[derive(Debug, Clone)]
pub struct RecoveryOutcome {
    pub recovery: Recovery,
    pub revoked_certificates: Vec<String>,
    pub deactivated_accounts: Vec<String>,
    /// When the mailed enrollment link stops working, once it was sent.
    pub link_expires_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::EabKeyInfo;

    #[test]
    fn an_eab_key_is_spent_once_revoked_expired_or_used_up() {
        let key = EabKeyInfo {
            kid: "eab-1".into(),
            single_use: false,
            created_at: 0,
            expires_at: 100,
            used_at: Some(10),
            revoked_at: None,
        };
        assert_eq!(key.spent(50), None, "a reusable key stays usable after a use");
        assert_eq!(key.spent(100), Some("expired"));
        assert_eq!(EabKeyInfo { single_use: true, ..key.clone() }.spent(50), Some("used"));
        assert_eq!(EabKeyInfo { single_use: true, used_at: None, ..key.clone() }.spent(50), None);
        assert_eq!(EabKeyInfo { revoked_at: Some(20), ..key }.spent(50), Some("revoked"));
    }
}
