use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// One line per event on stderr, as text or JSON; `RUST_LOG` narrows or widens it. Text is
/// coloured only when stderr is a terminal: escape codes in a log file or a journal are noise
/// for whoever greps it.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
