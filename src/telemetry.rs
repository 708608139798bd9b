//! Logging: human-readable or JSON lines on standard error, filtered by `RUST_LOG`
//! (default `info`). Standard output is left for what a command prints as its result.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}

/// One line for a fatal error: each distinct cause once (many errors repeat their source's
/// text in their own), and a hint when the cause is a certificate we do not trust.
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|previous| previous.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    let mut line = parts.join(": ");
    if is_untrusted_certificate(&line) {
        line.push_str(
            " — the server's TLS certificate was not trusted: give the CA that signed it with \
             `sslrootcert=/path/to/ca.pem` in DATABASE_URL, or name a CA bundle that holds it in \
             SSL_CERT_FILE (README: TLS)",
        );
    }
    line
}

/// Whether an error's text is rustls refusing the peer's certificate.
pub fn is_untrusted_certificate(text: &str) -> bool {
    text.contains("invalid peer certificate") || text.contains("UnknownIssuer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error with configuration: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("invalid peer certificate: UnknownIssuer")]
    struct Inner;

    #[test]
    fn each_cause_is_told_once_with_a_hint_for_an_untrusted_certificate() {
        let error = anyhow::Error::new(Outer(Inner)).context("cannot apply database migrations");
        let line = describe_error(&error);
        assert_eq!(line.matches("UnknownIssuer").count(), 1, "{line}");
        assert!(line.starts_with("cannot apply database migrations: error with configuration: invalid peer certificate"), "{line}");
        assert!(line.contains("sslrootcert="), "{line}");
    }
}
