//! Latency samples and their summaries. Percentiles use the nearest-rank method on the whole
//! sorted sample, with no interpolation and no binning: every request of a run is kept, so the
//! p99 is one of the latencies that was actually observed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The requests of a flow, by the name the report gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Directory,
    NewNonce,
    NewAccount,
    NewOrder,
    Authz,
    Challenge,
    Poll,
    Finalize,
    Certificate,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Directory,
        Endpoint::NewNonce,
        Endpoint::NewAccount,
        Endpoint::NewOrder,
        Endpoint::Authz,
        Endpoint::Challenge,
        Endpoint::Poll,
        Endpoint::Finalize,
        Endpoint::Certificate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Directory => "directory",
            Endpoint::NewNonce => "newNonce",
            Endpoint::NewAccount => "newAccount",
            Endpoint::NewOrder => "newOrder",
            Endpoint::Authz => "authz",
            Endpoint::Challenge => "challenge",
            Endpoint::Poll => "poll",
            Endpoint::Finalize => "finalize",
            Endpoint::Certificate => "certificate",
        }
    }
}

/// The value at percentile `p` (0–100] of an ascending slice: the smallest sample such that at
/// least p % of the samples are less than or equal to it. `None` for an empty slice.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summary of one set of latencies, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl LatencySummary {
    /// Sorts `micros` in place. `None` when there are no samples.
    pub fn of(micros: &mut [u64]) -> Option<LatencySummary> {
        micros.sort_unstable();
        let total: u128 = micros.iter().map(|&m| u128::from(m)).sum();
        Some(LatencySummary {
            count: micros.len(),
            p50_ms: ms(percentile(micros, 50.0)?),
            p90_ms: ms(percentile(micros, 90.0)?),
            p99_ms: ms(percentile(micros, 99.0)?),
            max_ms: ms(*micros.last()?),
            mean_ms: total as f64 / micros.len() as f64 / 1000.0,
        })
    }
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What one worker (or the whole run) observed.
#[derive(Debug, Default)]
pub struct Samples {
    pub endpoints: BTreeMap<Endpoint, Vec<u64>>,
    /// Whole-flow latencies of successful flows.
    pub flows: Vec<u64>,
    pub succeeded: u64,
    /// Failed flows, by cause: the short ACME problem type (`badNonce`, `rejectedIdentifier`, …)
    /// or a bracketed cause that is not a problem document (`(timeout)`, `(transport)`).
    pub failures: BTreeMap<String, u64>,
    pub not_started: u64,
    pub bad_nonce_retries: u64,
    /// Authorizations that were already valid when the flow fetched them.
    pub authz_already_valid: u64,
    /// One example message per failure cause, for the report.
    pub failure_examples: BTreeMap<String, String>,
}

impl Samples {
    pub fn record(&mut self, endpoint: Endpoint, elapsed: Duration) {
        self.endpoints.entry(endpoint).or_default().push(micros(elapsed));
    }

    pub fn fail(&mut self, cause: String, example: String) {
        *self.failures.entry(cause.clone()).or_default() += 1;
        self.failure_examples.entry(cause).or_insert(example);
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn merge(&mut self, other: Samples) {
        for (endpoint, mut values) in other.endpoints {
            self.endpoints.entry(endpoint).or_default().append(&mut values);
        }
        self.flows.extend(other.flows);
        self.succeeded += other.succeeded;
        for (cause, n) in other.failures {
            *self.failures.entry(cause).or_default() += n;
        }
        for (cause, example) in other.failure_examples {
            self.failure_examples.entry(cause).or_insert(example);
        }
        self.not_started += other.not_started;
        self.bad_nonce_retries += other.bad_nonce_retries;
        self.authz_already_valid += other.authz_already_valid;
    }
}

/// Issuances per second over the measured wall time; 0 for an empty interval.
pub fn rate(successes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        successes as f64 / secs
    } else {
        0.0
    }
}

/// `total / successes`, or `None` when nothing succeeded.
pub fn per_issuance(total: f64, successes: u64) -> Option<f64> {
    (successes > 0).then(|| total / successes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 90.0), Some(90));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 100.0), Some(100));
        // Ten samples: p99 is the largest one, p50 the fifth.
        let ten: Vec<u64> = (1..=10).map(|v| v * 10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(50));
        assert_eq!(percentile(&ten, 99.0), Some(100));
        assert_eq!(percentile(&[7], 1.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_and_converts_to_milliseconds() {
        let mut samples = vec![3000, 1000, 2000, 4000];
        let summary = LatencySummary::of(&mut samples).unwrap();
        assert_eq!(
            summary,
            LatencySummary { count: 4, p50_ms: 2.0, p90_ms: 4.0, p99_ms: 4.0, max_ms: 4.0, mean_ms: 2.5 }
        );
        assert_eq!(LatencySummary::of(&mut []), None);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_first_example() {
        let mut a = Samples::default();
        a.record(Endpoint::NewOrder, Duration::from_millis(2));
        a.fail("badNonce".into(), "first".into());
        a.succeeded = 3;
        let mut b = Samples::default();
        b.record(Endpoint::NewOrder, Duration::from_micros(1500));
        b.fail("badNonce".into(), "second".into());
        b.fail("(timeout)".into(), "slow".into());
        b.succeeded = 2;
        a.merge(b);
        assert_eq!(a.succeeded, 5);
        assert_eq!(a.failed(), 3);
        assert_eq!(a.failures["badNonce"], 2);
        assert_eq!(a.failure_examples["badNonce"], "first");
        assert_eq!(a.endpoints[&Endpoint::NewOrder], vec![2000, 1500]);
    }

    #[test]
    fn rates_and_costs_per_issuance() {
        assert_eq!(rate(50, Duration::from_secs(2)), 25.0);
        assert_eq!(rate(50, Duration::ZERO), 0.0);
        assert_eq!(per_issuance(3.0, 1500), Some(0.002));
        assert_eq!(per_issuance(3.0, 0), None);
    }
}
