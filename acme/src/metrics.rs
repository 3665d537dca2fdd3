//! The ACME front end's Prometheus metrics, in the default registry that `/metrics` gathers.

use std::sync::LazyLock;

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};

pub static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "dualca_acme_request_duration_seconds",
        "ACME request latency by track, route and status",
        &["track", "route", "status"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .expect("valid metric")
});

pub static ISSUANCES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("dualca_issuances_total", "Certificates issued through ACME", &["track", "profile"])
        .expect("valid metric")
});

pub static REVOCATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "dualca_acme_revocations_total",
        "Certificates revoked through ACME revokeCert",
        &["track"]
    )
    .expect("valid metric")
});

pub static VALIDATION_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "dualca_validation_failures_total",
        "Failed challenge validations by challenge type and problem",
        &["challenge", "problem"]
    )
    .expect("valid metric")
});

pub static EMAIL_REPLIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "dualca_email_replies_total",
        "RFC 8823 replies taken by the SMTP intake, by outcome",
        &["outcome"]
    )
    .expect("valid metric")
});
