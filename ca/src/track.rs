use std::fmt;
use std::str::FromStr;

/// The two lifecycles the CA serves. Every account, order, certificate and audit event belongs
/// to exactly one track, and nothing crosses between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Track {
    Machine,
    Human,
}

impl Track {
    pub const ALL: [Track; 2] = [Track::Machine, Track::Human];

    pub fn as_str(self) -> &'static str {
        match self {
            Track::Machine => "machine",
            Track::Human => "human",
        }
    }
}

impl fmt::Display for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Track {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "machine" => Ok(Track::Machine),
            "human" => Ok(Track::Human),
            other => Err(format!("unknown track {other:?}: expected machine or human")),
        }
    }
}
