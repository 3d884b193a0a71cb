//! The crate's one error type. Every failure that reaches a user names the URL, the HTTP status
//! and the service's own error code and message, and says what to do next.

use std::path::PathBuf;

/// Which call to the metadata service was being made; it decides the exit-code class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `PUT …/token`: obtaining an access token.
    Token,
    /// `POST …/certificates`: exchanging the CSR for a certificate chain.
    Certificate,
}

impl Step {
    fn request(self) -> &'static str {
        match self {
            Step::Token => "the token request",
            Step::Certificate => "the certificate request",
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configured metadata URL cannot be used.
    #[error("metadata URL {url:?} is not usable: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// https was asked for but no trust anchor could be set up; we never fall back to an
    /// unverified connection.
    #[error("cannot verify the metadata service at {url}: {reason}")]
    TlsSetup {
        /// The URL as configured.
        url: String,
        /// What is missing or broken, and what to configure.
        reason: String,
    },

    /// No HTTP answer at all: connection refused, timed out, reset, name not resolved.
    #[error(
        "metadata service at {url} is unreachable ({reason}; {attempts} attempt(s)): check that \
         the metadata service is enabled for this instance and that {host} is reachable \
         without a proxy"
    )]
    Unreachable {
        /// The call that was being made.
        step: Step,
        /// The full request URL.
        url: String,
        /// The host part of the URL, for the hint.
        host: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last transport error.
        reason: String,
    },

    /// The TLS handshake failed, typically because the service's certificate does not chain
    /// to the configured CA.
    #[error(
        "TLS handshake with the metadata service at {url} failed: {reason} (trusting {trust}); \
         set metadata_ca_file to the CA that signed the service's certificate"
    )]
    Tls {
        /// The call that was being made.
        step: Step,
        /// The full request URL.
        url: String,
        /// Which trust anchors were in use.
        trust: String,
        /// The TLS error.
        reason: String,
    },

    /// The service answered with an HTTP error status.
    #[error("{}", service_text(*.step, url, *.status, code.as_deref(), message.as_deref(), *.attempts, hint))]
    Service {
        /// The call that was being made.
        step: Step,
        /// The full request URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The service's error code (`errors[0].code`), if the body had one.
        code: Option<String>,
        /// The service's error message (`errors[0].message`), if the body had one.
        message: Option<String>,
        /// How many times the request was sent (more than one only for 5xx/429).
        attempts: u32,
        /// What the user can do about it.
        hint: String,
    },

    /// The service answered 2xx but the body is not what the API promises.
    #[error(
        "metadata service at {url} answered {} with HTTP {status} but an unusable body: {reason}",
        step.request()
    )]
    BadResponse {
        /// The call that was being made.
        step: Step,
        /// The full request URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// What was wrong with the body.
        reason: String,
    },

    /// A configuration file line is wrong.
    #[error("{origin}:{line}: {message}")]
    Config {
        /// The file (or other origin) being parsed.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// A configuration value given outside a file (flag, API) is out of range.
    #[error("invalid {what}: {message}")]
    InvalidSetting {
        /// The setting's name.
        what: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// Reading or writing a local file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "writing" …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The test server could not start or issue.
    #[error("metadata test server: {0}")]
    TestServer(String),
}

fn service_text(
    step: Step,
    url: &str,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
    attempts: u32,
    hint: &str,
) -> String {
    let mut out = format!(
        "metadata service at {url} refused {}: HTTP {status}",
        step.request()
    );
    if let Some(code) = code {
        out.push(' ');
        out.push_str(code);
    }
    if let Some(message) = message {
        out.push_str(": ");
        out.push_str(message);
    }
    if attempts > 1 {
        out.push_str(&format!(" (gave up after {attempts} attempts)"));
    }
    if !hint.is_empty() {
        out.push_str(". ");
        out.push_str(hint);
    }
    out
}

impl Error {
    /// The exit code the IBM mount helper used for this class of failure, which users may
    /// script against: 1 metadata service unreachable, 2 token failed, 3 certificate failed,
    /// 6 anything else (configuration, local files).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Unreachable { .. } | Error::Tls { .. } => 1,
            Error::Service { step, .. } | Error::BadResponse { step, .. } => match step {
                Step::Token => 2,
                Step::Certificate => 3,
            },
            _ => 6,
        }
    }

    /// The HTTP status the service answered with, if it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Service { status, .. } | Error::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The service's error code (`errors[0].code`), if it sent one.
    pub fn service_code(&self) -> Option<&str> {
        match self {
            Error::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_error_names_url_status_code_message_and_hint() {
        let e = Error::Service {
            step: Step::Certificate,
            url: "http://169.254.169.254/identity/v1/certificates?version=2025-08-26".into(),
            status: 400,
            code: Some("invalid_value".into()),
            message: Some("the CSR has a Common Name".into()),
            attempts: 1,
            hint: "remove the CN".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("http://169.254.169.254/identity/v1/certificates"),
            "{text}"
        );
        assert!(
            text.contains("HTTP 400 invalid_value: the CSR has a Common Name"),
            "{text}"
        );
        assert!(text.ends_with(". remove the CN"), "{text}");
        assert!(!text.contains("gave up"), "{text}");
        assert_eq!(e.exit_code(), 3);
        assert_eq!(e.http_status(), Some(400));
        assert_eq!(e.service_code(), Some("invalid_value"));
    }

    #[test]
    fn exit_codes_follow_the_mount_helper() {
        let unreachable = Error::Unreachable {
            step: Step::Certificate,
            url: "u".into(),
            host: "h".into(),
            attempts: 3,
            reason: "connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 1);
        let token = Error::BadResponse {
            step: Step::Token,
            url: "u".into(),
            status: 200,
            reason: "r".into(),
        };
        assert_eq!(token.exit_code(), 2);
        let config = Error::Config {
            origin: "f".into(),
            line: 3,
            message: "m".into(),
        };
        assert_eq!(config.exit_code(), 6);
        assert_eq!(config.to_string(), "f:3: m");
    }
}
