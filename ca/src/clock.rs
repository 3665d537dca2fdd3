use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

/// The CA's notion of now. Production uses the system clock; tests may move it forward to
/// expire orders or reach reminder dates without waiting.
#[derive(Debug, Default)]
pub struct Clock {
    offset_seconds: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_seconds.load(Ordering::Relaxed))
    }

    /// Unix seconds, the form timestamps take in storage.
    pub fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    pub fn advance(&self, by: time::Duration) {
        self.offset_seconds.fetch_add(by.whole_seconds(), Ordering::Relaxed);
    }
}

pub fn from_unix(ts: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 with second precision, as ACME objects carry timestamps.
pub fn rfc3339(ts: i64) -> String {
    let t = from_unix(ts);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
