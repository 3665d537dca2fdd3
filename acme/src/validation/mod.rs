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
    /// The runtime of the validation thread (`Validator::spawn`).
    thread: tokio::runtime::Handle,
    /// Dropped with the validator, which ends the validation thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub(crate) fn problem(kind: ErrorKind, detail: impl Into<String>) -> StoredProblem {
    StoredProblem { kind, detail: detail.into() }
}

impl Validator {
    pub fn new(settings: ValidatorSettings) -> Result<Validator, String> {
        let mut builder = match settings.resolver {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    TokioConnectionProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| format!("system DNS configuration: {e}"))?,
        };
        // No cache of our own: every validation asks the resolver again, as Boulder's does. A
        // cached answer would hold a TXT record, or an address, that was changed since, for as
        // long as its TTL: a digest fixed after a failed try, or a name moved to a new host,
        // would fail again until it ran out. A caching resolver, if one is configured, answers
        // by its own rules.
        let options = builder.options_mut();
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        let resolver = Arc::new(builder.build());
        let http = http01::client(&settings, resolver.clone())?;
        let tls = tlsalpn01::client_config()?;
        let (thread, _stop) = validation_thread()?;
        Ok(Validator { settings, resolver, http, tls, thread, _stop })
    }

    /// Runs `task` (a validation and the recording of its outcome) on the validation thread.
    /// On an actix worker each step of a validation (connect, send, each read) would wait its
    /// turn behind the requests that worker is serving; on a thread of its own it is polled as
    /// soon as its socket is ready, and the challenge's answer waits for the peer, not for the
    /// queue (BENCHMARKS.md).
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.thread.spawn(task)
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

/// A thread with a runtime of its own, which runs until the sender returned is dropped. The
/// runtime is built and dropped on that thread, never inside another runtime (where dropping
/// one panics).
fn validation_thread() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), String> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (started, handle) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dualca-validation".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(format!("validation runtime: {e}")));
                    return;
                }
            };
            let _ = started.send(Ok(runtime.handle().clone()));
            runtime.block_on(async {
                let _ = stopped.await;
            })
        })
        .map_err(|e| format!("validation thread: {e}"))?;
    let handle = handle.recv().map_err(|_| "the validation thread ended as it started".to_string())??;
    Ok((handle, stop))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Validations run on the validation thread, whoever spawns them, and dropping the
    /// validator ends that thread, dropping what it had not finished.
    #[test]
    fn validations_run_on_their_own_thread_until_the_validator_is_dropped() {
        let outer = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let validator = Validator::new(ValidatorSettings::default()).unwrap();
        let name = outer.block_on(validator.spawn(async { std::thread::current().name().map(str::to_string) }));
        assert_eq!(name.unwrap().as_deref(), Some("dualca-validation"));

        struct SaysWhenDropped(std::sync::mpsc::Sender<()>);
        impl Drop for SaysWhenDropped {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let (dropped, told) = std::sync::mpsc::channel();
        let guard = SaysWhenDropped(dropped);
        let _pending = validator.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        assert!(told.recv_timeout(Duration::from_millis(100)).is_err(), "the task runs while the validator lives");
        drop(validator);
        told.recv_timeout(Duration::from_secs(5)).expect("the unfinished task was dropped with the thread");
    }
}
