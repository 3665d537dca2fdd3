//! dualca-bench: runs N complete ACME issuance flows, C at a time, against an RFC 8555
//! directory on this machine, answers http-01 itself, and reports throughput, latency per flow
//! and per endpoint, failures by problem type, and the server's CPU and memory from /proc.
//! The binary (`main.rs`) parses the flags and prints the report; dualca's end-to-end tests
//! call `run` against a real server, so the generator itself is tested.

mod acme;
mod csr;
mod http01;
mod ocsp;
mod procfs;
mod stats;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use clap::Parser;
use serde::Serialize;

use crate::acme::{Account, Client, Directory, Eab, Polls, Session};
use crate::csr::{Identifier, KeyType};
use crate::procfs::ProcessUsage;
use crate::stats::{Endpoint, LatencySummary, Samples};

const MAX_FLOWS: u64 = 1_000_000;
const MAX_CONCURRENCY: usize = 1024;
const MAX_THREADS: usize = 256;

#[derive(Parser, Debug)]
#[command(
    name = "dualca-bench",
    version,
    about = "Load generator: complete ACME issuance flows (http-01) against a directory on loopback"
)]
pub struct Args {
    /// The ACME directory URL (loopback only), e.g. https://localhost:14000/acme/machine/directory.
    #[arg(long)]
    directory: String,
    /// How many issuance flows to run.
    #[arg(long, default_value_t = 100)]
    flows: u64,
    /// How many flows run at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// EAB key id, for CAs that require external account binding. Given several times (each
    /// with its `--eab-hmac`, in the same order), new accounts take the keys in turn, as
    /// machines that each hold their own key would, instead of all binding through one.
    #[arg(long, requires = "eab_hmac", allow_hyphen_values = true)]
    eab_kid: Vec<String>,
    /// EAB HMAC key, base64url: it begins with '-' one time in 64, which is a value here, not
    /// an option.
    #[arg(long, requires = "eab_kid", allow_hyphen_values = true)]
    eab_hmac: Vec<String>,
    /// Key of the certificates requested (the account key is always P-256).
    #[arg(long, value_enum, default_value_t = KeyType::P256)]
    key_type: KeyType,
    /// The identifier ordered: an IP address (loopback only) or a DNS name the CA resolves to
    /// this machine.
    #[arg(long, default_value = "127.0.0.1")]
    identifier: String,
    /// Port of the generator's http-01 responder on 127.0.0.1: the port the CA validates on.
    #[arg(long, default_value_t = 5002)]
    http01_port: u16,
    /// PEM file of CA certificates to trust for the directory's HTTPS.
    #[arg(long)]
    ca_root: Option<PathBuf>,
    /// Accept any HTTPS certificate (for Pebble's test certificate, say).
    #[arg(long)]
    insecure: bool,
    /// The server's process id: report its CPU seconds per issuance and its RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// One account per worker, made before the clock starts, instead of newAccount in every flow.
    #[arg(long)]
    reuse_accounts: bool,
    /// Shortest wait between two polls, in milliseconds, whatever Retry-After says.
    #[arg(long, default_value_t = 50)]
    poll_floor_ms: u64,
    /// Longest wait between two polls, in milliseconds, whatever Retry-After says.
    #[arg(long, default_value_t = 10_000)]
    retry_after_cap_ms: u64,
    /// Polls of one authorization or order before the flow gives up.
    #[arg(long, default_value_t = 100)]
    max_polls: u32,
    /// `lean`: as lego, no poll whose answer an earlier answer already gave (an authorization
    /// whose challenge was answered `valid`, an order whose authorizations are all valid).
    /// `every`: each authorization polled after its challenge and the order until `ready`, as
    /// before the thirteenth run (BENCHMARKS.md): the same requests per flow on every server.
    #[arg(long, value_enum, default_value_t = Polls::Lean)]
    polls: Polls,
    /// The whole run stops after this many seconds; unfinished flows count as `(timeout)`.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Start no more flows once this many have failed (0: no limit). A server that stops
    /// answering then ends the run after about one request timeout.
    #[arg(long, default_value_t = 0)]
    max_failures: u64,
    /// Timeout of one HTTP request, in seconds.
    #[arg(long, default_value_t = 30)]
    request_timeout_s: u64,
    /// A name for this run, copied into the report.
    #[arg(long)]
    label: Option<String>,
    /// Threads of the generator's runtime (the command line's; `run` uses its caller's). One
    /// thread spends the least CPU per flow, and so takes the least from a server on the same
    /// cores (BENCHMARKS.md, twelfth run): 0.51 to 0.61 ms per issuance there, so one thread
    /// keeps up with about 1600 issuances a second.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// After the flows, this many OCSP requests (POST) about the first certificate issued, at
    /// `--concurrency`, to the responder its Authority Information Access names; the report's
    /// `ocsp` gives their rate, latency and the server's CPU per response.
    #[arg(long, default_value_t = 0)]
    ocsp_requests: u64,
}

/// The runtime `--threads` asks for: one thread, or a pool of that many workers.
pub fn runtime(args: &Args) -> Result<tokio::runtime::Runtime> {
    if args.threads == 0 || args.threads > MAX_THREADS {
        bail!("--threads must be between 1 and {MAX_THREADS}");
    }
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut pool = tokio::runtime::Builder::new_multi_thread();
        pool.worker_threads(args.threads);
        pool
    };
    Ok(builder.enable_all().build()?)
}

#[derive(Serialize)]
struct RunSettings {
    polls: Polls,
    poll_floor_ms: u64,
    retry_after_cap_ms: u64,
    max_polls: u32,
    timeout_s: u64,
    request_timeout_s: u64,
    max_failures: u64,
    threads: usize,
}

#[derive(Serialize)]
pub struct Report {
    label: Option<String>,
    directory: String,
    identifier: String,
    key_type: KeyType,
    reuse_accounts: bool,
    pub flows: u64,
    concurrency: usize,
    pub succeeded: u64,
    failed: u64,
    not_started: u64,
    /// Why flows were left unstarted, when some were.
    stopped_early: Option<String>,
    elapsed_s: f64,
    issuances_per_s: f64,
    /// Whole-flow latency of the successful flows.
    flow_latency: Option<LatencySummary>,
    /// Every request made, by endpoint (the directory and any up-front accounts included).
    endpoints: BTreeMap<&'static str, LatencySummary>,
    /// The newNonce requests that opened the workers' connections before the clock started.
    warm_up: Option<LatencySummary>,
    /// Failed flows by cause.
    errors: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, String>,
    bad_nonce_retries: u64,
    authz_already_valid: u64,
    http01_served: u64,
    http01_unknown: u64,
    server: Option<ProcessUsage>,
    generator: ProcessUsage,
    /// The OCSP phase, when `--ocsp-requests` asked for one.
    ocsp: Option<OcspPhase>,
    settings: RunSettings,
}

#[derive(Serialize)]
struct OcspPhase {
    #[serde(flatten)]
    measured: ocsp::OcspReport,
    /// The server's CPU over the phase, per response answered, in microseconds.
    server_cpu_us_per_response: Option<f64>,
}

fn parse_identifier(text: &str) -> Result<Identifier> {
    match text.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(Identifier::Ip(ip)),
        Ok(ip) => {
            bail!("--identifier {ip}: the CA would validate on that address; only loopback addresses are allowed")
        }
        Err(_) if !text.is_empty() && !text.contains('/') && !text.contains(':') => {
            Ok(Identifier::Dns(text.to_ascii_lowercase()))
        }
        Err(_) => bail!("--identifier {text:?} is neither an IP address nor a DNS name"),
    }
}

fn decode_base64url(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    URL_SAFE_NO_PAD.decode(text).or_else(|_| URL_SAFE.decode(text)).context("--eab-hmac is not base64url")
}

fn http_client(args: &Args) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .timeout(Duration::from_secs(args.request_timeout_s))
        .pool_max_idle_per_host(args.concurrency)
        .user_agent(concat!("dualca-bench/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &args.ca_root {
        let pem = std::fs::read(path).with_context(|| format!("reading --ca-root {}", path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).context("--ca-root is not PEM")?;
        if roots.is_empty() {
            bail!("--ca-root {} holds no certificate", path.display());
        }
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    if args.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    Ok(builder.build()?)
}

async fn fetch_directory(http: &reqwest::Client, url: &str, samples: &mut Samples) -> Result<Directory> {
    let parsed = url::Url::parse(url).context("--directory is not a URL")?;
    acme::ensure_loopback(&parsed).map_err(|e| anyhow::anyhow!("--directory: {e}"))?;
    let started = Instant::now();
    let response = http.get(parsed).send().await.with_context(|| format!("fetching the directory {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    samples.record(Endpoint::Directory, started.elapsed());
    if !status.is_success() {
        bail!("the directory {url} answered HTTP {}", status.as_u16());
    }
    let directory: Directory = serde_json::from_slice(&body).context("the directory is not an RFC 8555 directory")?;
    for endpoint in [&directory.new_nonce, &directory.new_account, &directory.new_order] {
        acme::ensure_loopback(&url::Url::parse(endpoint)?).map_err(|e| anyhow::anyhow!("directory: {e}"))?;
    }
    Ok(directory)
}

/// What the workers share: the flow counter and the two limits that end a run early.
struct Plan {
    next: AtomicU64,
    flows: u64,
    deadline: Instant,
    failures: AtomicU64,
    /// 0: no limit.
    max_failures: u64,
}

impl Plan {
    /// Why no more flows start, if they don't.
    fn stop_reason(&self) -> Option<&'static str> {
        if Instant::now() >= self.deadline {
            Some("the run's --timeout-s passed")
        } else if self.max_failures > 0 && self.failures.load(Ordering::Relaxed) >= self.max_failures {
            Some("--max-failures flows failed")
        } else {
            None
        }
    }
}

async fn worker(mut session: Session, plan: Arc<Plan>, account: Option<Account>) -> Samples {
    // Bounded: every turn takes a flow number, and there are `flows` of them.
    loop {
        let index = plan.next.fetch_add(1, Ordering::Relaxed);
        if index >= plan.flows {
            break;
        }
        if plan.stop_reason().is_some() {
            session.samples.not_started += 1;
            continue;
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout_at(plan.deadline.into(), session.issue(account.as_ref())).await;
        match outcome {
            Ok(Ok(())) => {
                session.samples.succeeded += 1;
                session.samples.flows.push(stats::micros(started.elapsed()));
                continue;
            }
            Ok(Err(e)) => session.samples.fail(e.cause(), e.to_string()),
            Err(_) => session.samples.fail("(timeout)".into(), "the run's --timeout-s ended the flow".into()),
        }
        plan.failures.fetch_add(1, Ordering::Relaxed);
    }
    session.samples
}

pub async fn run(args: &Args) -> Result<Report> {
    if args.flows == 0 || args.flows > MAX_FLOWS {
        bail!("--flows must be between 1 and {MAX_FLOWS}");
    }
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency must be between 1 and {MAX_CONCURRENCY}");
    }
    if args.timeout_s == 0 || args.max_polls == 0 {
        bail!("--timeout-s and --max-polls must be positive");
    }
    if args.ocsp_requests > MAX_FLOWS * 10 {
        bail!("--ocsp-requests must be at most {}", MAX_FLOWS * 10);
    }
    let identifier = parse_identifier(&args.identifier)?;
    if args.eab_kid.len() != args.eab_hmac.len() {
        bail!("--eab-kid and --eab-hmac must be given the same number of times");
    }
    let eab = args
        .eab_kid
        .iter()
        .zip(&args.eab_hmac)
        .map(|(kid, hmac)| Ok(Eab { kid: kid.clone(), hmac_key: decode_base64url(hmac)? }))
        .collect::<Result<Vec<_>>>()?;
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let ticks = procfs::clock_ticks_per_second();

    let http = http_client(args)?;
    let mut setup = Samples::default();
    let directory = fetch_directory(&http, &args.directory, &mut setup).await?;
    let (responder, responder_task) = http01::start(args.http01_port).await?;
    let settings = acme::Settings {
        identifier: identifier.clone(),
        key_type: args.key_type,
        eab,
        poll_floor: Duration::from_millis(args.poll_floor_ms),
        retry_after_cap: Duration::from_millis(args.retry_after_cap_ms),
        max_polls: args.max_polls,
        polls: args.polls,
    };
    let client = Arc::new(Client::new(http, directory, responder.clone(), settings));
    let workers = usize::try_from(args.flows).unwrap_or(usize::MAX).min(args.concurrency);

    let mut accounts: Vec<Option<Account>> = Vec::with_capacity(workers);
    if args.reuse_accounts {
        let mut session = Session::new(client.clone());
        for n in 0..workers {
            let account =
                session.new_account().await.map_err(|e| anyhow::anyhow!("newAccount {} of {workers}: {e}", n + 1))?;
            accounts.push(Some(account));
        }
        setup.merge(session.samples);
    } else {
        accounts.resize_with(workers, || None);
    }

    // Every worker's connection is opened, and its first nonce taken, before the clock starts,
    // all at once (the client's pool opens one connection per request under way). Otherwise
    // the first request of every worker is a TLS handshake, all of them at the same moment: a
    // start-up burst that is not the steady state the per-request latencies measure, and whose
    // 32 newNonce samples were the worst endpoint's p99 of both servers (BENCHMARKS.md,
    // eleventh run). The warm-up's latencies are reported apart.
    let warming: Vec<_> = (0..workers)
        .map(|_| {
            let mut session = Session::new(client.clone());
            tokio::spawn(async move {
                let warmed = session.warm_up().await;
                (session, warmed)
            })
        })
        .collect();
    let mut sessions = Vec::with_capacity(workers);
    let mut warm_up = Samples::default();
    for handle in warming {
        let (mut session, warmed) = handle.await.context("a warm-up panicked")?;
        warmed.map_err(|e| anyhow::anyhow!("warm-up newNonce: {e}"))?;
        warm_up.merge(std::mem::take(&mut session.samples));
        sessions.push(session);
    }
    let warm_up = warm_up.endpoints.remove(&stats::Endpoint::NewNonce).and_then(|mut v| LatencySummary::of(&mut v));

    let server_before = server_pid.as_deref().map(procfs::snapshot).transpose().context("--server-pid")?;
    let self_before = procfs::snapshot("self")?;
    let started = Instant::now();
    let plan = Arc::new(Plan {
        next: AtomicU64::new(0),
        flows: args.flows,
        deadline: started + Duration::from_secs(args.timeout_s),
        failures: AtomicU64::new(0),
        max_failures: args.max_failures,
    });
    let handles: Vec<_> = sessions
        .into_iter()
        .zip(accounts)
        .map(|(session, account)| tokio::spawn(worker(session, plan.clone(), account)))
        .collect();
    let mut samples = setup;
    for handle in handles {
        samples.merge(handle.await.context("a worker panicked")?);
    }
    let elapsed = started.elapsed();
    let self_after = procfs::snapshot("self")?;
    let server = match (&server_pid, &server_before) {
        (Some(pid), Some(before)) => {
            let after = procfs::snapshot(pid).with_context(|| format!("the server (pid {pid}) after the run"))?;
            Some(procfs::usage(pid, before, &after, ticks, samples.succeeded))
        }
        _ => None,
    };
    responder_task.abort();
    let ocsp = if args.ocsp_requests > 0 {
        let chain = client
            .first_chain
            .get()
            .ok_or_else(|| anyhow::anyhow!("--ocsp-requests: no flow was issued a certificate"))?;
        let target = ocsp::Target::of_chain(chain).context("--ocsp-requests")?;
        let before = server_pid.as_deref().map(procfs::snapshot).transpose().context("--server-pid")?;
        let measured = ocsp::run(&client.http, target, args.ocsp_requests, args.concurrency).await;
        let server_cpu_us_per_response = match (&server_pid, &before) {
            (Some(pid), Some(before)) if measured.ok > 0 => {
                let after = procfs::snapshot(pid).with_context(|| format!("the server (pid {pid}) after OCSP"))?;
                let usage = procfs::usage(pid, before, &after, ticks, measured.ok);
                Some(usage.cpu_s * 1e6 / measured.ok as f64)
            }
            _ => None,
        };
        Some(OcspPhase { measured, server_cpu_us_per_response })
    } else {
        None
    };

    let mut endpoints = BTreeMap::new();
    for (endpoint, mut values) in std::mem::take(&mut samples.endpoints) {
        if let Some(summary) = LatencySummary::of(&mut values) {
            endpoints.insert(endpoint.name(), summary);
        }
    }
    let failed = samples.failed();
    Ok(Report {
        label: args.label.clone(),
        directory: args.directory.clone(),
        identifier: identifier.to_string(),
        key_type: args.key_type,
        reuse_accounts: args.reuse_accounts,
        flows: args.flows,
        concurrency: args.concurrency,
        succeeded: samples.succeeded,
        failed,
        not_started: samples.not_started,
        stopped_early: (samples.not_started > 0).then(|| plan.stop_reason().unwrap_or("?").to_string()),
        elapsed_s: elapsed.as_secs_f64(),
        issuances_per_s: stats::rate(samples.succeeded, elapsed),
        flow_latency: LatencySummary::of(&mut samples.flows),
        endpoints,
        warm_up,
        errors: samples.failures,
        error_examples: samples.failure_examples,
        bad_nonce_retries: samples.bad_nonce_retries,
        authz_already_valid: samples.authz_already_valid,
        http01_served: responder.served(),
        http01_unknown: responder.unknown(),
        server,
        generator: procfs::usage(&std::process::id().to_string(), &self_before, &self_after, ticks, samples.succeeded),
        ocsp,
        settings: RunSettings {
            polls: args.polls,
            poll_floor_ms: args.poll_floor_ms,
            retry_after_cap_ms: args.retry_after_cap_ms,
            max_polls: args.max_polls,
            timeout_s: args.timeout_s,
            request_timeout_s: args.request_timeout_s,
            max_failures: args.max_failures,
            threads: args.threads,
        },
    })
}

/// A unit enum's name as the JSON report spells it (`p256`, `lean`).
fn wire_name(value: impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "?".into())
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(|| "?".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
}

fn usage_line(who: &str, usage: &ProcessUsage) -> String {
    let per = usage.cpu_ms_per_issuance.map_or_else(|| "-".into(), |ms| format!("{ms:.2} ms"));
    format!(
        "{who} (pid {}): CPU {:.2} s, {per} per issuance; peak RSS (VmHWM) {}, RSS now {}\n",
        usage.pid,
        usage.cpu_s,
        mib(usage.vm_hwm_kb),
        mib(usage.vm_rss_kb)
    )
}

pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let accounts = if r.reuse_accounts { "one account per worker" } else { "newAccount in every flow" };
    let _ = writeln!(out, "directory   {}", r.directory);
    let _ = writeln!(
        out,
        "flows       {} requested, {} succeeded, {} failed, {} not started; concurrency {}; {} key; {}; {}; {} polls",
        r.flows,
        r.succeeded,
        r.failed,
        r.not_started,
        r.concurrency,
        wire_name(r.key_type),
        r.identifier,
        accounts,
        wire_name(r.settings.polls)
    );
    let _ = writeln!(out, "elapsed     {:.2} s, {:.1} issuances/s", r.elapsed_s, r.issuances_per_s);
    if let Some(reason) = &r.stopped_early {
        let _ = writeln!(out, "stopped     {} flows not started: {reason}", r.not_started);
    }
    if let Some(f) = &r.flow_latency {
        let _ = writeln!(
            out,
            "flow        p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms
        );
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "endpoint", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for endpoint in Endpoint::ALL {
        if let Some(s) = r.endpoints.get(endpoint.name()) {
            let _ = writeln!(
                out,
                "{:<12} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                endpoint.name(),
                s.count,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms
            );
        }
    }
    out.push('\n');
    if r.errors.is_empty() {
        out.push_str("errors      none\n");
    } else {
        out.push_str("errors (failed flows by cause):\n");
        for (cause, n) in &r.errors {
            let example = r.error_examples.get(cause).map(String::as_str).unwrap_or("");
            let _ = writeln!(out, "  {n:>6}  {cause}  e.g. {example}");
        }
    }
    let _ = writeln!(
        out,
        "retries     {} badNonce; {} authorizations already valid; http-01 answered {} (other requests {})",
        r.bad_nonce_retries, r.authz_already_valid, r.http01_served, r.http01_unknown
    );
    if let Some(server) = &r.server {
        out.push_str(&usage_line("server", server));
    }
    out.push_str(&usage_line("generator", &r.generator));
    if let Some(phase) = &r.ocsp {
        let o = &phase.measured;
        let _ = writeln!(
            out,
            "\nocsp        {} requests to {}: {} ok, {} failed; {:.2} s, {:.0} responses/s",
            o.requests, o.url, o.ok, o.failed, o.elapsed_s, o.responses_per_s
        );
        if let Some(l) = &o.latency {
            let _ = writeln!(
                out,
                "            p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        }
        if let Some(us) = phase.server_cpu_us_per_response {
            let _ = writeln!(out, "            server CPU {us:.1} µs per response");
        }
        for (cause, n) in &o.errors {
            let _ = writeln!(out, "  {n:>6}  {cause}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_loopback_ips_or_dns_names() {
        assert_eq!(parse_identifier("127.0.0.1").unwrap(), Identifier::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_identifier("[::1]").unwrap(), Identifier::Ip("::1".parse().unwrap()));
        assert_eq!(parse_identifier("Web1.Example.Test").unwrap(), Identifier::Dns("web1.example.test".into()));
        assert!(parse_identifier("10.0.0.5").is_err());
        assert!(parse_identifier("http://x").is_err());
    }

    /// A base64url key that begins with '-' is the flag's value, not another flag.
    #[test]
    fn eab_values_may_begin_with_a_hyphen() {
        use clap::Parser;
        let args = Args::try_parse_from([
            "dualca-bench",
            "--directory",
            "https://localhost:14000/acme/machine/directory",
            "--eab-kid",
            "-kid",
            "--eab-hmac",
            "-Qx9_key",
        ])
        .unwrap();
        assert_eq!(args.eab_kid, ["-kid"]);
        assert_eq!(args.eab_hmac, ["-Qx9_key"]);
    }

    /// Several EAB keys are given as repeated pairs, in order.
    #[test]
    fn eab_keys_may_be_repeated() {
        use clap::Parser;
        let args = Args::try_parse_from([
            "dualca-bench",
            "--directory",
            "https://localhost:14000/acme/machine/directory",
            "--eab-kid=k1",
            "--eab-hmac=AQID",
            "--eab-kid=k2",
            "--eab-hmac=AQI",
        ])
        .unwrap();
        assert_eq!(args.eab_kid, ["k1", "k2"]);
        assert_eq!(args.eab_hmac, ["AQID", "AQI"]);
    }

    /// One thread by default (the least CPU per flow), a pool when asked; none is refused.
    #[test]
    fn the_runtime_has_the_threads_asked_for() {
        use clap::Parser;
        use tokio::runtime::RuntimeFlavor;
        let with = |extra: &[&str]| {
            let mut argv = vec!["dualca-bench", "--directory", "https://localhost:14000/acme/machine/directory"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap()
        };
        let one = runtime(&with(&[])).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let pool = runtime(&with(&["--threads", "3"])).unwrap();
        assert_eq!(pool.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(pool.metrics().num_workers(), 3);
        for refused in ["0", "257"] {
            let error = runtime(&with(&["--threads", refused])).unwrap_err().to_string();
            assert_eq!(error, "--threads must be between 1 and 256");
        }
    }

    #[test]
    fn eab_keys_decode_with_or_without_padding() {
        assert_eq!(decode_base64url("AQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(decode_base64url("AQI=").unwrap(), vec![1, 2]);
        assert!(decode_base64url("not base64!").is_err());
    }
}
