//! http-01 (RFC 8555 §8.3). Redirects are followed up to ten times, only to http or https URLs
//! on the configured validation ports; the body must be the key authorization, trailing
//! whitespace ignored. Every fetch resolves the name and connects afresh, and its connection
//! is closed once answered.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dualca_ca::model::{Identifier, IdentifierKind, StoredProblem};
use dualca_ca::ErrorKind;
use hickory_resolver::TokioResolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use super::{problem, resolve_with, Validator, ValidatorSettings};

const MAX_REDIRECTS: usize = 10;
const MAX_BODY: usize = 4096;

struct HostResolver {
    hosts: HashMap<String, IpAddr>,
    resolver: Arc<TokioResolver>,
}

impl Resolve for HostResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let hosts = self.hosts.clone();
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let ips = resolve_with(&hosts, &resolver, name.as_str()).await.map_err(|p| p.detail)?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

pub(super) fn client(settings: &ValidatorSettings, resolver: Arc<TokioResolver>) -> Result<reqwest::Client, String> {
    let (http_port, tls_port) = (settings.http_port, settings.tls_port);
    let policy = redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let url = attempt.url();
        let allowed = match url.scheme() {
            "http" => url.port_or_known_default() == Some(http_port),
            "https" => url.port_or_known_default() == Some(tls_port),
            _ => false,
        };
        if allowed {
            attempt.follow()
        } else {
            let reason = format!("redirect to {url} is not to http or https on the validation ports");
            attempt.error(reason)
        }
    });
    reqwest::Client::builder()
        .redirect(policy)
        .dns_resolver(Arc::new(HostResolver { hosts: settings.hosts.clone(), resolver }))
        // A redirect may lead to HTTPS on a host whose certificate is what is being obtained.
        .danger_accept_invalid_certs(true)
        // No connection outlives its request. A pooled one is keyed by host and port, so a
        // later validation of the name, perhaps another account's, would reuse it and reach the
        // address the name had when it was opened, not the one DNS gives now. Pebble and
        // Boulder close theirs too (`DisableKeepAlives`).
        .pool_max_idle_per_host(0)
        .timeout(settings.timeout)
        .user_agent("dualca-validator")
        .no_proxy()
        .build()
        .map_err(|e| format!("http-01 client: {e}"))
}

pub(super) async fn validate(
    validator: &Validator,
    identifier: &Identifier,
    token: &str,
    key_authorization: &str,
) -> Result<(), StoredProblem> {
    let host = match identifier.kind {
        IdentifierKind::Ip => match identifier.value.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => identifier.value.clone(),
        },
        _ => identifier.value.clone(),
    };
    let url = format!("http://{host}:{}/.well-known/acme-challenge/{token}", validator.settings.http_port);
    let response = validator
        .http
        .get(&url)
        .send()
        .await
        .map_err(|e| problem(ErrorKind::Connection, format!("fetching {url}: {}", error_chain(&e))))?;
    let status = response.status();
    let final_url = response.url().to_string();
    if status != reqwest::StatusCode::OK {
        return Err(problem(ErrorKind::Unauthorized, format!("{final_url} answered HTTP {}", status.as_u16())));
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) =
        response.chunk().await.map_err(|e| problem(ErrorKind::Connection, format!("reading {final_url}: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(problem(
                ErrorKind::IncorrectResponse,
                format!("{final_url} answered with more than {MAX_BODY} bytes"),
            ));
        }
    }
    let text = String::from_utf8_lossy(&body);
    if text.trim_end() != key_authorization {
        return Err(problem(
            ErrorKind::IncorrectResponse,
            format!("{final_url} answered {:?}, not the key authorization", text.chars().take(100).collect::<String>()),
        ));
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
