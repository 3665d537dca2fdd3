//! Challenge validation over the network (RFC 8555 §8, RFC 8737, RFC 8738). For tests and
//! private networks the validator takes a DNS resolver address, a static host→IP map, and the
//! ports to use for http-01 and tls-alpn-01, as Pebble's httpPort and tlsPort do.

mod dns01;
mod http01;
mod tlsalpn01;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dualca_ca::model::{ChallengeKind, IdentifierKind, StoredProblem};
use dualca_ca::{ErrorKind, ValidationTarget};
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

#[derive(Debug, Clone)]
pub struct ValidatorSettings {
    pub http_port: u16,
    pub tls_port: u16,
    /// A DNS server to ask instead of the system's resolvers.
    pub resolver: Option<SocketAddr>,
    /// Names answered from here before DNS is asked.
    pub hosts: HashMap<String, IpAddr>,
    pub timeout: Duration,
}

impl Default for ValidatorSettings {
    fn default() -> Self {
        ValidatorSettings {
            http_port: 80,
            tls_port: 443,
            resolver: None,
            hosts: HashMap::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct Validator {
    settings: ValidatorSettings,
    resolver: Arc<TokioResolver>,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
}

pub(crate) fn problem(kind: ErrorKind, detail: impl Into<String>) -> StoredProblem {
    StoredProblem { kind, detail: detail.into() }
}

impl Validator {
    pub fn new(settings: ValidatorSettings) -> Result<Validator, String> {
        let resolver = match settings.resolver {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    TokioConnectionProvider::default(),
                )
                .build()
            }
            None => TokioResolver::builder_tokio().map_err(|e| format!("system DNS configuration: {e}"))?.build(),
        };
        let resolver = Arc::new(resolver);
        let http = http01::client(&settings, resolver.clone())?;
        let tls = tlsalpn01::client_config()?;
        Ok(Validator { settings, resolver, http, tls })
    }

    /// Resolves a name through the static map, then DNS.
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, StoredProblem> {
        resolve_with(&self.settings.hosts, &self.resolver, name).await
    }

    pub async fn validate(&self, target: &ValidationTarget) -> Result<(), StoredProblem> {
        let key_authorization = format!("{}.{}", target.challenge.token, target.account_thumbprint);
        let identifier = &target.identifier;
        let validation = async {
            match (target.challenge.kind, identifier.kind) {
                (ChallengeKind::Http01, IdentifierKind::Dns | IdentifierKind::Ip) => {
                    http01::validate(self, identifier, &target.challenge.token, &key_authorization).await
                }
                (ChallengeKind::Dns01, IdentifierKind::Dns) => {
                    dns01::validate(self, &identifier.value, &key_authorization).await
                }
                (ChallengeKind::TlsAlpn01, IdentifierKind::Dns | IdentifierKind::Ip) => {
                    tlsalpn01::validate(self, identifier, &key_authorization).await
                }
                (kind, id_kind) => Err(problem(
                    ErrorKind::Malformed,
                    format!("{} cannot validate an identifier of type {}", kind.as_str(), id_kind.as_str()),
                )),
            }
        };
        // Every step has its own timeout; this bounds the whole, redirects and retries included.
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(self.settings.timeout * 2, validation).await {
            Ok(r) => r,
            Err(_) => Err(problem(ErrorKind::Connection, "validation timed out")),
        };
        if let Err(p) = &outcome {
            crate::metrics::VALIDATION_FAILURES
                .with_label_values(&[target.challenge.kind.as_str(), p.kind.name()])
                .inc();
        }
        match &outcome {
            Ok(()) => {
                tracing::info!(identifier = %identifier, challenge = target.challenge.kind.as_str(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "validation succeeded")
            }
            Err(p) => {
                tracing::info!(identifier = %identifier, challenge = target.challenge.kind.as_str(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, error = p.kind.name(), detail = %p.detail, "validation failed")
            }
        }
        outcome
    }
}

pub(crate) async fn resolve_with(
    hosts: &HashMap<String, IpAddr>,
    resolver: &TokioResolver,
    name: &str,
) -> Result<Vec<IpAddr>, StoredProblem> {
    if let Some(ip) = hosts.get(name) {
        return Ok(vec![*ip]);
    }
    let lookup = resolver
        .lookup_ip(format!("{name}."))
        .await
        .map_err(|e| problem(ErrorKind::Dns, format!("DNS lookup of {name} failed: {e}")))?;
    let ips: Vec<IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err(problem(ErrorKind::Dns, format!("{name} has no A or AAAA records")));
    }
    Ok(ips)
}

pub(crate) fn sha256_b64(input: &str) -> String {
    dualca_ca::ids::b64url(&dualca_ca::ids::sha256(input.as_bytes()))
}
