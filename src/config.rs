//! Typed configuration: defaults, then the TOML file given with `--config`, then `DUALCA_*`
//! environment variables (nested keys joined by `__`, e.g. `DUALCA_VALIDATION__HTTP_PORT`),
//! then command-line flags. Everything is checked once, at start-up, where it is turned into
//! the domain's types (`Settings::policy`, `Settings::validator`, `RevocationConfig::to_domain`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use dualca_ca::model::IdentifierKind;
use dualca_ca::policy::{ExtendedKeyUsage, Profile, TrackPolicy};
use dualca_ca::Track;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; otherwise a SQLite file path. Empty: `<data_dir>/dualca.db`.
    pub database_url: String,
    pub database_max_connections: u32,
    pub listen: SocketAddr,
    /// The base of every URL the CA hands out. Empty: `https://localhost:<listen port>`.
    pub public_url: String,
    /// Extra names for the CA's own HTTPS certificate, besides localhost and the loopback IPs.
    pub tls_names: Vec<String>,
    pub organization: String,
    pub log_format: LogFormat,
    pub nonce_lifetime: String,
    /// How long an order, with its authorizations and challenges, stays after it expired before
    /// the hourly housekeeping deletes it (`30d`).
    pub keep_orders: String,
    pub validation: ValidationSettings,
    pub revocation: RevocationConfig,
    pub admin: AdminConfig,
    pub mail: MailConfig,
    pub email_reply: EmailReplyConfig,
    pub machine: TrackSettings,
    pub human: TrackSettings,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationSettings {
    pub http_port: u16,
    pub tls_port: u16,
    /// `ip:port` of a DNS server to ask instead of the system's.
    pub resolver: Option<SocketAddr>,
    /// Static name → IP answers, consulted before DNS.
    pub hosts: BTreeMap<String, IpAddr>,
    pub timeout: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `EdDSA` (the Ed25519 admin key signs tokens) or `HS256` (a 32-byte secret in
    /// `<key_dir>/hmac.key` does).
    pub token_algorithm: dualca_admin::TokenAlgorithm,
    /// Where the admin keys live. Empty: `<data_dir>/admin`.
    pub key_dir: String,
    /// A listener of the admin API, pages and metrics' own, e.g. `127.0.0.1:14001`, so that
    /// they are not reachable where ACME clients connect. Empty: they share the main listener.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token_algorithm: dualca_admin::TokenAlgorithm::EdDSA,
            key_dir: String::new(),
            listen: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The relay: `smtp+starttls://[user@]host[:587]` (STARTTLS required),
    /// `smtps://[user@]host[:465]` (TLS from the start), or `smtp://host[:25]` without TLS, to a
    /// relay on loopback only. Empty: mail is written as `.eml` files to `outbox_dir`.
    pub smtp_url: String,
    /// A file holding the relay password for the user named in `smtp_url`.
    pub smtp_password_file: String,
    /// The From of every mail; its domain is also the right-hand side of the Message-IDs.
    pub from: String,
    /// Where `.eml` files go while no relay is set. Empty: `<data_dir>/outbox`.
    pub outbox_dir: String,
    /// A PEM private key, RSA of 2048 bits or more or Ed25519, that DKIM-signs every mail
    /// (RFC 8823 §3.1 requires challenge mails to be signed). Empty: mail goes out unsigned,
    /// for a relay that signs it.
    pub dkim_key_file: String,
    /// The selector: the key's TXT record is `<selector>._domainkey.<dkim_domain>`. Required
    /// with `dkim_key_file`.
    pub dkim_selector: String,
    /// The signing domain (`d=`). Empty: the domain of `from`.
    pub dkim_domain: String,
    /// How long sent and given-up mail stays in the outbox before the hourly housekeeping
    /// deletes it (`90d`); a mail whose dedupe key still matters stays longer.
    pub keep_sent: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp_url: String::new(),
            smtp_password_file: String::new(),
            from: "dualca <dualca@localhost>".into(),
            outbox_dir: String::new(),
            dkim_key_file: String::new(),
            dkim_selector: String::new(),
            dkim_domain: String::new(),
            keep_sent: "90d".into(),
        }
    }
}

/// RFC 8823 email-reply-00: the SMTP intake that takes people's replies to challenge mails.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailReplyConfig {
    /// Where the SMTP intake listens (`ip:port`). Empty: no intake, so email-reply-00
    /// challenges cannot be answered.
    pub listen: String,
    /// The address challenge mails come from and replies are sent to. Empty: `[mail] from`'s.
    pub address: String,
    /// authserv-ids (RFC 8601) of the relays whose Authentication-Results headers are believed:
    /// a `dkim=pass` for the From domain from one of them authenticates a reply.
    pub trusted_authserv_ids: Vec<String>,
    /// The only peers the intake takes connections from: the trusted relays.
    pub allowed_peers: Vec<IpAddr>,
    /// A PEM file of CA certificates whose S/MIME signatures authenticate a reply, besides
    /// dualca's own root (whose human-track S/MIME certificates always count while valid).
    pub smime_trust_anchors: String,
    /// Development only: count unauthenticated replies. Logged loudly at start-up.
    pub accept_unauthenticated: bool,
}

impl Default for EmailReplyConfig {
    fn default() -> Self {
        EmailReplyConfig {
            listen: "127.0.0.1:2525".into(),
            address: String::new(),
            trusted_authserv_ids: Vec::new(),
            allowed_peers: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)],
            smime_trust_anchors: String::new(),
            accept_unauthenticated: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationConfig {
    /// nextUpdate − thisUpdate of each CRL.
    pub crl_lifetime: String,
    /// nextUpdate − thisUpdate of each OCSP response.
    pub ocsp_lifetime: String,
    /// `issuer` (the track's issuing CA signs) or `delegated` (a responder certificate with
    /// id-kp-OCSPSigning and ocsp-nocheck signs).
    pub ocsp_signer: OcspSigner,
    /// Leave CRL and OCSP pointers out of machine certificates of 7 days or less.
    pub omit_urls_for_short_lived: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OcspSigner {
    Issuer,
    Delegated,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            crl_lifetime: "24h".into(),
            ocsp_lifetime: "12h".into(),
            ocsp_signer: OcspSigner::Issuer,
            omit_urls_for_short_lived: false,
        }
    }
}

impl RevocationConfig {
    pub fn to_domain(&self) -> Result<dualca_ca::RevocationSettings> {
        Ok(dualca_ca::RevocationSettings {
            crl_lifetime_seconds: parse_duration(&self.crl_lifetime)?,
            ocsp_lifetime_seconds: parse_duration(&self.ocsp_lifetime)?,
            ocsp_delegated: self.ocsp_signer == OcspSigner::Delegated,
            omit_urls_for_short_lived: self.omit_urls_for_short_lived,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackSettings {
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    pub caa_identities: Option<Vec<String>>,
    pub external_account_required: Option<bool>,
    pub default_profile: Option<String>,
    pub max_lifetime: Option<String>,
    pub allow_wildcards: Option<bool>,
    pub order_lifetime: Option<String>,
    pub authorization_lifetime: Option<String>,
    pub orders_page_size: Option<usize>,
    /// Replaces the track's identifier types (`dns`, `ip`, `email`) when given.
    pub identifier_types: Option<Vec<String>>,
    /// Replaces the track's profiles when given.
    pub profiles: Option<BTreeMap<String, ProfileSettings>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSettings {
    pub lifetime: String,
    #[serde(default)]
    pub description: String,
    pub extended_key_usages: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./dualca-data"),
            database_url: String::new(),
            database_max_connections: 16,
            listen: "127.0.0.1:14000".parse().expect("valid default address"),
            public_url: String::new(),
            tls_names: Vec::new(),
            organization: "dualca".into(),
            log_format: LogFormat::Text,
            nonce_lifetime: "1h".into(),
            keep_orders: "30d".into(),
            validation: ValidationSettings::default(),
            revocation: RevocationConfig::default(),
            admin: AdminConfig::default(),
            mail: MailConfig::default(),
            email_reply: EmailReplyConfig::default(),
            machine: TrackSettings::default(),
            human: TrackSettings::default(),
        }
    }
}

impl Default for ValidationSettings {
    fn default() -> Self {
        ValidationSettings {
            http_port: 80,
            tls_port: 443,
            resolver: None,
            hosts: BTreeMap::new(),
            timeout: "10s".into(),
        }
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "database_max_connections",
    "listen",
    "public_url",
    "tls_names",
    "organization",
    "log_format",
    "nonce_lifetime",
    "keep_orders",
    "validation",
    "revocation",
    "admin",
    "mail",
    "email_reply",
    "machine",
    "human",
];

/// Whether an environment key (lower case; nesting shown as `__`, or as `.` once figment has
/// mapped it) names a setting.
fn is_setting(key: &str) -> bool {
    let top = key.split("__").next().unwrap_or(key);
    let top = top.split('.').next().unwrap_or(top);
    TOP_LEVEL_KEYS.contains(&top)
}

/// Parses `90s`, `15m`, `24h`, `7d` into seconds.
pub fn parse_duration(text: &str) -> Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number.parse().with_context(|| format!("duration {text:?} has no number"))?;
    let factor = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => bail!("duration {text:?} has unknown unit {other:?}: use s, m, h or d"),
    };
    if n <= 0 {
        bail!("duration {text:?} must be positive");
    }
    Ok(n * factor)
}

impl Settings {
    /// Defaults ← TOML file ← environment.
    pub fn load(config_file: Option<&Path>) -> Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::prefixed("DUALCA_").split("__").filter(|key| is_setting(&key.as_str().to_ascii_lowercase())));
        figment.extract().map_err(|e| anyhow!("configuration: {e}"))
    }

    /// `DUALCA_*` variables that name no setting (the test suite's own `DUALCA_TEST_*`, or a
    /// typo). They are ignored rather than fatal, and `main` warns about them.
    pub fn ignored_environment() -> Vec<String> {
        std::env::vars()
            .filter_map(|(name, _)| name.strip_prefix("DUALCA_").map(str::to_string))
            .filter(|key| !is_setting(&key.to_ascii_lowercase()))
            .map(|key| format!("DUALCA_{key}"))
            .collect()
    }

    pub fn admin_key_dir(&self) -> PathBuf {
        if self.admin.key_dir.is_empty() {
            self.data_dir.join("admin")
        } else {
            PathBuf::from(&self.admin.key_dir)
        }
    }

    pub fn admin_auth(&self) -> Result<dualca_admin::AdminAuth> {
        dualca_admin::AdminAuth::load_or_create(&self.admin_key_dir(), self.admin.token_algorithm)
            .map_err(anyhow::Error::msg)
    }

    /// The bare address replies to challenge mails go to.
    pub fn email_reply_address(&self) -> Result<String> {
        let text = if self.email_reply.address.is_empty() { &self.mail.from } else { &self.email_reply.address };
        let mailbox: lettre::message::Mailbox =
            text.parse().map_err(|e| anyhow!("[email_reply] address {text:?} is not an address: {e}"))?;
        Ok(mailbox.email.to_string())
    }

    pub fn outbox_dir(&self) -> PathBuf {
        if self.mail.outbox_dir.is_empty() {
            self.data_dir.join("outbox")
        } else {
            PathBuf::from(&self.mail.outbox_dir)
        }
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            self.data_dir.join("dualca.db").to_string_lossy().into_owned()
        } else {
            self.database_url.clone()
        }
    }

    pub fn public_url_for_port(&self, port: u16) -> String {
        if self.public_url.is_empty() {
            format!("https://localhost:{port}")
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }

    pub fn policy(&self, track: Track) -> Result<TrackPolicy> {
        let overrides = match track {
            Track::Machine => &self.machine,
            Track::Human => &self.human,
        };
        let mut policy = TrackPolicy::default_for(track);
        if let Some(v) = &overrides.terms_of_service {
            policy.terms_of_service = Some(v.clone());
        }
        if let Some(v) = &overrides.website {
            policy.website = Some(v.clone());
        }
        if let Some(v) = &overrides.caa_identities {
            policy.caa_identities = v.clone();
        }
        if let Some(v) = overrides.external_account_required {
            policy.external_account_required = v;
        }
        if let Some(v) = overrides.allow_wildcards {
            policy.allow_wildcards = v;
        }
        if let Some(v) = &overrides.max_lifetime {
            policy.max_lifetime_seconds = parse_duration(v)?;
        }
        if let Some(v) = &overrides.order_lifetime {
            policy.order_lifetime_seconds = parse_duration(v)?;
        }
        if let Some(v) = &overrides.authorization_lifetime {
            policy.authorization_lifetime_seconds = parse_duration(v)?;
        }
        if let Some(v) = overrides.orders_page_size {
            if v == 0 {
                bail!("[{track}] orders_page_size must be at least 1");
            }
            policy.orders_page_size = v;
        }
        if let Some(profiles) = &overrides.profiles {
            policy.profiles = profiles
                .iter()
                .map(|(name, p)| {
                    let ekus = p
                        .extended_key_usages
                        .iter()
                        .map(|e| {
                            ExtendedKeyUsage::parse(e)
                                .ok_or_else(|| anyhow!("[{track}.profiles.{name}] unknown EKU {e:?}"))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Profile {
                        name: name.clone(),
                        description: p.description.clone(),
                        lifetime_seconds: parse_duration(&p.lifetime)?,
                        extended_key_usages: ekus,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        }
        if let Some(types) = &overrides.identifier_types {
            policy.identifier_kinds = types
                .iter()
                .map(|t| IdentifierKind::parse(t).ok_or_else(|| anyhow!("[{track}] unknown identifier type {t:?}")))
                .collect::<Result<Vec<_>>>()?;
            if policy.identifier_kinds.is_empty() {
                bail!("[{track}] identifier_types must name at least one type");
            }
        }
        if let Some(v) = &overrides.default_profile {
            policy.default_profile = v.clone();
        }
        if !policy.profiles.iter().any(|p| p.name == policy.default_profile) {
            bail!("[{track}] default profile {:?} is not among the track's profiles", policy.default_profile);
        }
        for profile in &policy.profiles {
            if profile.lifetime_seconds > policy.max_lifetime_seconds {
                bail!(
                    "[{track}.profiles.{}] lifetime exceeds the track's max_lifetime ({} s > {} s)",
                    profile.name,
                    profile.lifetime_seconds,
                    policy.max_lifetime_seconds
                );
            }
        }
        if track == Track::Machine && policy.identifier_kinds.contains(&IdentifierKind::Email) {
            bail!("[machine] email identifiers belong to the human track");
        }
        Ok(policy)
    }

    pub fn validator(&self) -> Result<dualca_acme::ValidatorSettings> {
        Ok(dualca_acme::ValidatorSettings {
            http_port: self.validation.http_port,
            tls_port: self.validation.tls_port,
            resolver: self.validation.resolver,
            hosts: self.validation.hosts.clone().into_iter().collect::<HashMap<_, _>>(),
            timeout: std::time::Duration::from_secs(parse_duration(&self.validation.timeout)? as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_setting_is_known_to_the_environment_filter() {
        let value = serde_json::to_value(Settings::default()).unwrap();
        let mut fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        let mut known = TOP_LEVEL_KEYS.to_vec();
        known.sort_unstable();
        assert_eq!(fields, known);
        assert!(!is_setting("test_postgres_url"));
        assert!(is_setting("validation__http_port"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), 86400);
        assert_eq!(parse_duration("7d").unwrap(), 604800);
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn profiles_cannot_outlive_the_track_maximum() {
        let mut s = Settings::default();
        s.machine.max_lifetime = Some("12h".into());
        assert!(s.policy(Track::Machine).unwrap_err().to_string().contains("exceeds"));
    }
}
