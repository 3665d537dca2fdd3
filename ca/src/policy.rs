//! Track policies: which identifiers a track accepts, its profiles and lifetimes, and the
//! lifetimes of its ACME objects. The binary builds these from configuration; the domain only
//! reads them.

use std::net::IpAddr;

use crate::model::{Identifier, IdentifierKind};
use crate::{Error, Result, Track};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendedKeyUsage {
    ServerAuth,
    ClientAuth,
    EmailProtection,
}

impl ExtendedKeyUsage {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "serverAuth" => Some(ExtendedKeyUsage::ServerAuth),
            "clientAuth" => Some(ExtendedKeyUsage::ClientAuth),
            "emailProtection" => Some(ExtendedKeyUsage::EmailProtection),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// notAfter − notBefore, in seconds.
    pub lifetime_seconds: i64,
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
}

#[derive(Debug, Clone)]
pub struct TrackPolicy {
    pub track: Track,
    pub profiles: Vec<Profile>,
    pub default_profile: String,
    /// No certificate of this track outlives this, whatever a profile says.
    pub max_lifetime_seconds: i64,
    pub identifier_kinds: Vec<IdentifierKind>,
    pub allow_wildcards: bool,
    pub external_account_required: bool,
    pub max_identifiers: usize,
    pub order_lifetime_seconds: i64,
    pub authorization_lifetime_seconds: i64,
    pub orders_page_size: usize,
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    pub caa_identities: Vec<String>,
}

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

impl TrackPolicy {
    pub fn default_for(track: Track) -> Self {
        let server_client = vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth];
        match track {
            Track::Machine => TrackPolicy {
                track,
                profiles: vec![
                    Profile {
                        name: "short".into(),
                        description: "24-hour certificate for a machine, renewed through ARI".into(),
                        lifetime_seconds: DAY,
                        extended_key_usages: server_client.clone(),
                    },
                    Profile {
                        name: "week".into(),
                        description: "7-day certificate for a machine that cannot renew daily".into(),
                        lifetime_seconds: 7 * DAY,
                        extended_key_usages: server_client,
                    },
                ],
                default_profile: "short".into(),
                max_lifetime_seconds: 7 * DAY,
                identifier_kinds: vec![IdentifierKind::Dns, IdentifierKind::Ip],
                allow_wildcards: true,
                // Every machine account is bound to an inventory asset through EAB.
                external_account_required: true,
                max_identifiers: 100,
                order_lifetime_seconds: 8 * HOUR,
                authorization_lifetime_seconds: 8 * HOUR,
                orders_page_size: 100,
                terms_of_service: None,
                website: None,
                caa_identities: Vec::new(),
            },
            Track::Human => TrackPolicy {
                track,
                profiles: vec![
                    Profile {
                        name: "client-auth".into(),
                        description: "90-day TLS client-authentication certificate for a person".into(),
                        lifetime_seconds: 90 * DAY,
                        extended_key_usages: vec![ExtendedKeyUsage::ClientAuth],
                    },
                    Profile {
                        name: "smime".into(),
                        description: "365-day S/MIME certificate for a person's mailbox".into(),
                        lifetime_seconds: 365 * DAY,
                        extended_key_usages: vec![ExtendedKeyUsage::EmailProtection],
                    },
                ],
                default_profile: "client-auth".into(),
                max_lifetime_seconds: 398 * DAY,
                // A person's certificates name their mailbox (RFC 8823), proven by
                // email-reply-00, and every account is bound to a proofed person through EAB.
                identifier_kinds: vec![IdentifierKind::Email],
                allow_wildcards: false,
                external_account_required: true,
                max_identifiers: 10,
                order_lifetime_seconds: 7 * DAY,
                authorization_lifetime_seconds: 7 * DAY,
                orders_page_size: 100,
                terms_of_service: None,
                website: None,
                caa_identities: Vec::new(),
            },
        }
    }

    /// The profile an order asked for, or the track's default. Unknown names get
    /// `invalidProfile`.
    pub fn profile(&self, requested: Option<&str>) -> Result<&Profile> {
        let name = requested.unwrap_or(&self.default_profile);
        self.profiles.iter().find(|p| p.name == name).ok_or_else(|| {
            Error::invalid_profile(format!("profile {name:?} is not offered on the {} track", self.track))
        })
    }

    /// Checks one identifier against this track's policy and returns its canonical form
    /// (lower-case names, canonical IP text).
    pub fn check_identifier(&self, kind: &str, value: &str) -> Result<Identifier> {
        let Some(kind) = IdentifierKind::parse(kind) else {
            return Err(Error::unsupported_identifier(format!("identifier type {kind:?} is not supported")));
        };
        if !self.identifier_kinds.contains(&kind) {
            return Err(Error::unsupported_identifier(format!(
                "identifier type {:?} is not accepted on the {} track",
                kind.as_str(),
                self.track
            )));
        }
        let canonical = match kind {
            IdentifierKind::Dns => self.check_dns_name(value)?,
            IdentifierKind::Ip => check_ip(value)?,
            IdentifierKind::Email => check_email(value)?,
        };
        Ok(Identifier::new(kind, canonical))
    }

    fn check_dns_name(&self, value: &str) -> Result<String> {
        let reject = |why: &str| Error::rejected_identifier(format!("dns identifier {value:?} {why}"));
        let name = value.to_ascii_lowercase();
        let (wildcard, base) = match name.strip_prefix("*.") {
            Some(base) => (true, base),
            None => (false, name.as_str()),
        };
        if wildcard && !self.allow_wildcards {
            return Err(reject(&format!("is a wildcard, which the {} track does not issue", self.track)));
        }
        if base.is_empty() || name.len() > 253 {
            return Err(reject("has an invalid length"));
        }
        if base.parse::<IpAddr>().is_ok() {
            return Err(reject("is an IP address: use an identifier of type \"ip\""));
        }
        let labels: Vec<&str> = base.split('.').collect();
        if labels.len() < 2 {
            return Err(reject("is not a fully qualified domain name"));
        }
        for label in &labels {
            let ok_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if label.is_empty() || label.len() > 63 || !ok_chars {
                return Err(reject("contains an invalid label"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(reject("has a label that starts or ends with a hyphen"));
            }
        }
        if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
            return Err(reject("has an all-numeric top-level label"));
        }
        Ok(name)
    }
}

fn check_ip(value: &str) -> Result<String> {
    let ip: IpAddr = value
        .parse()
        .map_err(|_| Error::malformed(format!("ip identifier {value:?} is not an IPv4 or IPv6 address")))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(Error::rejected_identifier(format!("ip identifier {value:?} cannot be certified")));
    }
    Ok(ip.to_string())
}

fn check_email(value: &str) -> Result<String> {
    let reject = || Error::rejected_identifier(format!("email identifier {value:?} is not an address"));
    let (local, domain) = value.rsplit_once('@').ok_or_else(reject)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.bytes().all(|b| b.is_ascii_graphic() && !b"@<>()[]\\,;:\"".contains(&b));
    if !local_ok || domain.is_empty() || !domain.contains('.') || domain.contains("..") {
        return Err(reject());
    }
    let domain_ok = domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !domain_ok {
        return Err(reject());
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_checked_and_lowercased() {
        let p = TrackPolicy::default_for(Track::Machine);
        assert_eq!(p.check_identifier("dns", "WWW.Example.COM").unwrap().value, "www.example.com");
        assert_eq!(p.check_identifier("dns", "*.example.com").unwrap().value, "*.example.com");
        for bad in ["example", "-a.example.com", "a..b.com", "a_b.example.com", "1.2.3.4", "x.123", "*.*.a.com"] {
            let err = p.check_identifier("dns", bad).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::RejectedIdentifier, "{bad}");
        }
        assert_eq!(p.check_identifier("uri", "spiffe://x").unwrap_err().kind, crate::ErrorKind::UnsupportedIdentifier);
        let mut human = TrackPolicy::default_for(Track::Human);
        human.identifier_kinds.push(IdentifierKind::Dns);
        assert_eq!(
            human.check_identifier("dns", "*.example.com").unwrap_err().kind,
            crate::ErrorKind::RejectedIdentifier
        );
    }

    #[test]
    fn ip_and_email_identifiers() {
        let mut p = TrackPolicy::default_for(Track::Human);
        assert_eq!(
            p.check_identifier("dns", "www.example.org").unwrap_err().kind,
            crate::ErrorKind::UnsupportedIdentifier,
            "people's certificates name mailboxes, not hosts"
        );
        p.identifier_kinds.push(IdentifierKind::Ip);
        assert_eq!(p.check_identifier("ip", "::1").unwrap().value, "::1");
        assert_eq!(p.check_identifier("ip", "300.1.1.1").unwrap_err().kind, crate::ErrorKind::Malformed);
        assert_eq!(p.check_identifier("email", "Ann@Example.org").unwrap().value, "Ann@example.org");
        assert!(p.check_identifier("email", "no-at-sign").is_err());
        let m = TrackPolicy::default_for(Track::Machine);
        assert_eq!(m.check_identifier("email", "a@b.org").unwrap_err().kind, crate::ErrorKind::UnsupportedIdentifier);
    }
}
