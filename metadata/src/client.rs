//! Client for the identity API: an access token, then a certificate chain for a CSR.
//!
//! Connect errors, timeouts and 5xx/429 answers are retried a bounded number of times with
//! exponential backoff; any other 4xx is final, because sending the same request again cannot
//! change the answer. A 401 on the certificate call gets one fresh token.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::Full;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::api::{
    self, Api, CertificateRequest, CertificateResponse, ErrorBody, TokenRequest, TokenResponse,
};
use crate::transport::{Endpoint, TransportError};
use crate::{Error, Step};

/// The metadata service's address on every VPC instance.
pub const DEFAULT_URL: &str = "http://169.254.169.254";

/// Most certificates a response may hold (leaf plus intermediates).
const MAX_CHAIN: usize = 8;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries per request, at least 1.
    pub attempts: u32,
    /// Wait before the first retry; doubles on each further retry.
    pub initial_backoff: Duration,
    /// Upper bound of a single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How to reach the metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `http://169.254.169.254` by default; `https://…` needs a CA to verify against.
    pub base_url: String,
    /// Current (`/identity/v1`) or legacy (`/instance_identity/v1`) paths.
    pub api: Api,
    /// PEM file of the CA that signed the service's https certificate; without it the system
    /// bundle is used, and without that https is refused (never unverified).
    pub ca_file: Option<PathBuf>,
    /// Per-address TCP connect timeout.
    pub connect_timeout: Duration,
    /// Deadline for one whole request (connect, send, read the answer).
    pub request_timeout: Duration,
    /// Retries for connect errors and 5xx.
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_URL.to_string(),
            api: Api::Current,
            ca_file: None,
            connect_timeout: Duration::from_millis(1500),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// A bearer token; the secret never appears in `Debug` and is wiped on drop.
pub struct AccessToken {
    secret: Zeroizing<String>,
    lifetime: Duration,
    obtained: Instant,
}

impl AccessToken {
    /// Whether the token still has at least `margin` of life at `now`.
    pub fn is_fresh(&self, now: Instant, margin: Duration) -> bool {
        now.saturating_duration_since(self.obtained) + margin < self.lifetime
    }

    /// The lifetime the service granted.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// A certificate chain as issued: the leaf first, then the intermediate(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The leaf certificate, PEM.
    pub leaf_pem: String,
    /// Intermediate certificates, PEM, nearest to the leaf first.
    pub intermediates_pem: Vec<String>,
    /// The service's id for the certificate.
    pub id: Option<String>,
    /// RFC 3339 creation time as the service reported it.
    pub created_at: Option<String>,
    /// RFC 3339 expiry time as the service reported it.
    pub expires_at: Option<String>,
    /// Lifetime in seconds as the service reported it.
    pub expires_in: Option<u32>,
}

/// Talks to one metadata service.
pub struct Client {
    endpoint: Endpoint,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish()
    }
}

/// What one attempt produced, before deciding whether to retry.
enum Attempt {
    Answer(StatusCode, Bytes),
    Failed(TransportError),
}

impl Client {
    /// Checks the URL and sets up TLS; makes no request.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        if config.retry.attempts == 0 {
            return Err(Error::InvalidSetting {
                what: "retry attempts",
                message: "must be at least 1".into(),
            });
        }
        let endpoint = Endpoint::new(
            &config.base_url,
            config.ca_file.as_deref(),
            config.connect_timeout,
            config.request_timeout,
        )?;
        Ok(Client { endpoint, config })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Which trust anchors verify the service; `None` for plain http.
    pub fn trust(&self) -> Option<&str> {
        self.endpoint.trust()
    }

    /// `PUT …/token`: a bearer token valid for `expires_in` seconds (5–3600).
    pub async fn token(&self, expires_in: u32) -> Result<AccessToken, Error> {
        check_range("token lifetime", expires_in, api::TOKEN_LIFETIME_RANGE)?;
        let path = self.path(self.config.api.token_path());
        let body = serde_json::to_vec(&TokenRequest {
            expires_in: Some(expires_in),
        })
        .map_err(|e| Error::InvalidSetting {
            what: "request body",
            message: e.to_string(),
        })?;
        let started = Instant::now();
        let response: TokenResponse = self
            .call(Step::Token, Method::PUT, &path, None, body)
            .await?;
        if response.access_token.is_empty() {
            return Err(self.bad(Step::Token, &path, 200, "access_token is empty"));
        }
        let granted = response.expires_in.unwrap_or(expires_in);
        Ok(AccessToken {
            secret: Zeroizing::new(response.access_token),
            lifetime: Duration::from_secs(u64::from(granted)),
            obtained: started,
        })
    }

    /// `POST …/certificates`: the chain for `csr_pem`, valid for `expires_in` seconds
    /// (300–3600).
    pub async fn certificate(
        &self,
        token: &AccessToken,
        csr_pem: &str,
        expires_in: u32,
    ) -> Result<IssuedCertificate, Error> {
        check_range(
            "certificate lifetime",
            expires_in,
            api::CERTIFICATE_LIFETIME_RANGE,
        )?;
        let path = self.path(self.config.api.certificates_path());
        let body = serde_json::to_vec(&CertificateRequest {
            csr: csr_pem.to_string(),
            expires_in: Some(expires_in),
        })
        .map_err(|e| Error::InvalidSetting {
            what: "request body",
            message: e.to_string(),
        })?;
        let response: CertificateResponse = self
            .call(Step::Certificate, Method::POST, &path, Some(token), body)
            .await?;
        self.chain(&path, response)
    }

    /// Token, then certificate; if the certificate call says the token is no longer valid
    /// (401), one fresh token is fetched and the call repeated.
    pub async fn fetch_certificate(
        &self,
        csr_pem: &str,
        expires_in: u32,
    ) -> Result<IssuedCertificate, Error> {
        let token = self.token(api::DEFAULT_TOKEN_LIFETIME).await?;
        match self.certificate(&token, csr_pem, expires_in).await {
            Err(Error::Service { status: 401, .. }) => {
                tracing::info!("metadata service no longer accepts the token; fetching a new one");
                let token = self.token(api::DEFAULT_TOKEN_LIFETIME).await?;
                self.certificate(&token, csr_pem, expires_in).await
            }
            other => other,
        }
    }

    fn path(&self, operation: &str) -> String {
        format!("{operation}?version={}", self.config.api.version())
    }

    fn bad(&self, step: Step, path: &str, status: u16, reason: &str) -> Error {
        Error::BadResponse {
            step,
            url: self.endpoint.url(path),
            status,
            reason: reason.to_string(),
        }
    }

    fn chain(&self, path: &str, response: CertificateResponse) -> Result<IssuedCertificate, Error> {
        let bad = |reason: &str| self.bad(Step::Certificate, path, 200, reason);
        if response.certificates.is_empty() {
            return Err(bad("certificates is empty"));
        }
        if response.certificates.len() > MAX_CHAIN {
            return Err(bad(&format!("more than {MAX_CHAIN} certificates")));
        }
        if let Some(i) = response
            .certificates
            .iter()
            .position(|pem| !pem.trim_start().starts_with("-----BEGIN CERTIFICATE-----"))
        {
            return Err(bad(&format!("certificates[{i}] is not a PEM certificate")));
        }
        let mut certificates = response.certificates.into_iter();
        let leaf_pem = certificates.next().unwrap_or_default();
        Ok(IssuedCertificate {
            leaf_pem,
            intermediates_pem: certificates.collect(),
            id: response.id,
            created_at: response.created_at,
            expires_at: response.expires_at,
            expires_in: response.expires_in,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        step: Step,
        method: Method,
        path: &str,
        token: Option<&AccessToken>,
        body: Vec<u8>,
    ) -> Result<T, Error> {
        let url = self.endpoint.url(path);
        let body = Bytes::from(body);
        let policy = self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self
                .attempt(method.clone(), path, token, body.clone())
                .await?;
            let retryable = match &outcome {
                Attempt::Failed(TransportError::Unreachable(_)) => true,
                Attempt::Failed(_) => false,
                Attempt::Answer(status, _) => {
                    status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
                }
            };
            if retryable && attempt < policy.attempts {
                let wait = policy.backoff(attempt);
                tracing::warn!(
                    url = %url,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "metadata request failed ({}); retrying",
                    describe(&outcome)
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return match outcome {
                Attempt::Failed(TransportError::Unreachable(reason)) => Err(Error::Unreachable {
                    step,
                    url,
                    host: self.endpoint.host().to_string(),
                    attempts: attempt,
                    reason,
                }),
                Attempt::Failed(TransportError::Tls(reason)) => Err(Error::Tls {
                    step,
                    url,
                    trust: self.endpoint.trust().unwrap_or("nothing").to_string(),
                    reason,
                }),
                Attempt::Failed(TransportError::Protocol(reason)) => Err(Error::BadResponse {
                    step,
                    url,
                    status: 0,
                    reason,
                }),
                Attempt::Answer(status, body) if status.is_success() => {
                    serde_json::from_slice(&body).map_err(|e| Error::BadResponse {
                        step,
                        url,
                        status: status.as_u16(),
                        reason: format!("not the expected JSON: {e}"),
                    })
                }
                Attempt::Answer(status, body) => Err(service_error(
                    step,
                    url,
                    status,
                    &body,
                    attempt,
                    self.endpoint.host(),
                )),
            };
        }
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        token: Option<&AccessToken>,
        body: Bytes,
    ) -> Result<Attempt, Error> {
        let mut builder = self
            .endpoint
            .request(method, path)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/json")
            .header(api::FLAVOR_HEADER, api::FLAVOR_VALUE);
        if let Some(token) = token {
            let mut value =
                http::HeaderValue::from_str(&format!("Bearer {}", token.secret.as_str())).map_err(
                    |_| Error::BadResponse {
                        step: Step::Token,
                        url: self.endpoint.url(self.config.api.token_path()),
                        status: 200,
                        reason: "access_token holds characters not allowed in a header".into(),
                    },
                )?;
            value.set_sensitive(true);
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let request = builder.body(Full::new(body)).map_err(|e| Error::BadUrl {
            url: self.endpoint.url(path),
            reason: e.to_string(),
        })?;
        Ok(match self.endpoint.send(request).await {
            Ok(response) => Attempt::Answer(response.status, response.body),
            Err(e) => Attempt::Failed(e),
        })
    }
}

fn describe(outcome: &Attempt) -> String {
    match outcome {
        Attempt::Answer(status, _) => format!("HTTP {}", status.as_u16()),
        Attempt::Failed(
            TransportError::Unreachable(r) | TransportError::Tls(r) | TransportError::Protocol(r),
        ) => r.clone(),
    }
}

fn check_range(
    what: &'static str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<(), Error> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidSetting {
            what,
            message: format!("{value} s is outside {}–{} s", range.start(), range.end()),
        })
    }
}

/// Turns an HTTP error answer into an [`Error::Service`] with the service's own code and
/// message and a hint at the fix.
fn service_error(
    step: Step,
    url: String,
    status: StatusCode,
    body: &[u8],
    attempts: u32,
    host: &str,
) -> Error {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|b| b.errors.first());
    let code = first.map(|e| e.code.clone()).filter(|c| !c.is_empty());
    let message = first
        .map(|e| e.message.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| {
            // Not the documented shape (a proxy or another server answered): show a bounded,
            // printable excerpt so the user sees who it was.
            let text: String = String::from_utf8_lossy(body)
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            (!text.trim().is_empty()).then_some(text)
        });
    let trace = parsed.as_ref().and_then(|b| b.trace.clone());
    let hint = hint(step, status.as_u16(), code.as_deref(), attempts, host);
    let hint = match trace {
        Some(trace) if !trace.is_empty() => format!("{hint} (trace {trace})"),
        _ => hint,
    };
    Error::Service {
        step,
        url,
        status: status.as_u16(),
        code,
        message,
        attempts,
        hint,
    }
}

fn hint(step: Step, status: u16, code: Option<&str>, attempts: u32, host: &str) -> String {
    match (status, code, step) {
        (403, _, _) => "enable the metadata service on this instance (instance settings: metadata \
                        service on), then try again"
            .into(),
        (401, _, Step::Token) => "the service refused to issue a token; check that the metadata \
                                  service is enabled for this instance"
            .into(),
        (401, _, Step::Certificate) => "the access token was refused or has expired; a fresh \
                                        token was or will be requested"
            .into(),
        (404, _, _) => format!(
            "{host} does not offer this API path: set metadata_api = legacy for a service \
             older than version {}, or current for a newer one",
            api::CURRENT_VERSION
        ),
        (400, Some("invalid_value"), Step::Certificate) => {
            "check certificate_duration_seconds (300–3600) and that the CSR has no Common Name, \
             no extensions and no CA request"
                .into()
        }
        (400, _, Step::Certificate) => {
            "the CSR may carry only C, ST, L, O and OU in its subject and no extensions".into()
        }
        (400, _, Step::Token) => "the token request was malformed; this is a bug in ibm-ipsec or \
                                  the service changed its API"
            .into(),
        (429, _, _) | (500..=599, _, _) => format!(
            "the metadata service kept failing after {attempts} attempt(s); try again later"
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        let waits: Vec<u128> = (1..=6).map(|r| p.backoff(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700, 700]);
        assert_eq!(p.backoff(200), Duration::from_millis(700));
    }

    #[test]
    fn service_error_reads_the_documented_body() {
        let body = br#"{"errors":[{"code":"unauthorized","message":"metadata service is not enabled"}],"status_code":403,"trace":"t-1"}"#;
        let e = service_error(
            Step::Token,
            "http://h/x".into(),
            StatusCode::FORBIDDEN,
            body,
            1,
            "h",
        );
        let text = e.to_string();
        assert!(
            text.contains("HTTP 403 unauthorized: metadata service is not enabled"),
            "{text}"
        );
        assert!(
            text.contains("enable the metadata service on this instance"),
            "{text}"
        );
        assert!(text.contains("trace t-1"), "{text}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn service_error_shows_a_foreign_body_bounded() {
        let body = format!("<html>{}</html>", "x".repeat(1000));
        let e = service_error(
            Step::Certificate,
            "u".into(),
            StatusCode::BAD_GATEWAY,
            body.as_bytes(),
            4,
            "h",
        );
        let Error::Service { message, code, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(code, &None);
        assert_eq!(message.as_ref().unwrap().chars().count(), 200);
        assert!(e.to_string().contains("gave up after 4 attempts"));
    }

    #[test]
    fn token_freshness_and_debug() {
        let now = Instant::now();
        let t = AccessToken {
            secret: Zeroizing::new("abc".into()),
            lifetime: Duration::from_secs(300),
            obtained: now,
        };
        assert!(t.is_fresh(now + Duration::from_secs(200), Duration::from_secs(30)));
        assert!(!t.is_fresh(now + Duration::from_secs(280), Duration::from_secs(30)));
        assert!(!format!("{t:?}").contains("abc"));
    }

    #[test]
    fn out_of_range_lifetimes_are_refused_before_any_request() {
        let client = Client::new(ClientConfig::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(client.token(4)).unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");
        let token = AccessToken {
            secret: Zeroizing::new("abc".into()),
            lifetime: Duration::from_secs(300),
            obtained: Instant::now(),
        };
        let err = rt
            .block_on(client.certificate(&token, "csr", 3601))
            .unwrap_err();
        assert!(err.to_string().contains("outside 300–3600"), "{err}");
    }
}
