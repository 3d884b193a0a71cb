//! A real HTTP server that speaks the identity API, for tests, the demo and the lab. It is
//! never a default anywhere: something must start it and point a client at it.
//!
//! It behaves as `shared/metadata-api.md` describes the service: `Metadata-Flavor: ibm` on the
//! token call (400 `missing_field` otherwise), a valid unexpired bearer token on the
//! certificate call (401 `unauthenticated`), `expires_in` ranges (400 `invalid_value`), the CSR
//! rules (400 naming the rule), the instance id as the subject CN, `certificates: [leaf,
//! intermediate]`, errors as `{"errors":[…],"status_code":N,"trace":…}`, the legacy paths for
//! older version dates, 404 for anything else. [`ServerControl`] injects faults.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

pub use crate::test_ca::tls_identity;

use crate::api::{self, CertificateResponse, ErrorBody, ErrorTarget, ServiceError, TokenResponse};
use crate::timestamp::rfc3339;
use crate::Error;

/// Largest request body accepted (a 4096-bit CSR is under 2 KiB of PEM).
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Most live tokens kept; the oldest are dropped beyond this.
const MAX_TOKENS: usize = 10_000;
/// Most connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// The oldest version date the service documents.
const OLDEST_VERSION: &str = "2022-03-01";
/// File in the state directory that receives the root CA, for clients to verify against.
pub const ROOT_CA_FILE: &str = "metadata-test-root-ca.pem";

/// Why a CSR could not be turned into a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueError {
    /// The CSR breaks one of the service's rules; the message names the rule (400).
    Rejected(String),
    /// The CA itself failed (500).
    Internal(String),
}

/// What signs the certificates: the test root → intermediate chain.
pub trait Issuer: Send + Sync + 'static {
    /// Validates `csr_pem` against the service's rules and issues a leaf with subject CN
    /// `common_name` valid from `not_before` for `lifetime`. Returns PEM certificates, the leaf
    /// first, then the intermediate(s).
    fn issue(
        &self,
        csr_pem: &str,
        common_name: &str,
        not_before: SystemTime,
        lifetime: Duration,
    ) -> Result<Vec<String>, IssueError>;

    /// The root CA certificate, PEM, that the issued chains lead to.
    fn root_ca_pem(&self) -> String;
}

/// The server's own certificate for https, like the real service's secure endpoint.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The server certificate chain, PEM, leaf first.
    pub chain_pem: String,
    /// The server's private key, PKCS#8 DER.
    pub key_pkcs8_der: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The instance id used when none is configured.
pub const DEFAULT_INSTANCE_ID: &str = "0717_a1b2c3d4-0000-4000-8000-00000000test";

/// Settings of a test server.
#[derive(Debug, Clone)]
pub struct TestServerConfig {
    /// Written into each certificate's subject CN, as the real service writes the instance id.
    pub instance_id: String,
    /// Where to write the root CA ([`ROOT_CA_FILE`]); nothing is written when `None`.
    pub state_dir: Option<PathBuf>,
    /// Serve https with this identity instead of plain http.
    pub tls: Option<TlsIdentity>,
    /// Issue certificates with this lifetime instead of the requested one
    /// ([`ServerControl::set_certificate_lifetime`]).
    pub certificate_lifetime: Option<Duration>,
}

impl Default for TestServerConfig {
    fn default() -> Self {
        TestServerConfig {
            instance_id: DEFAULT_INSTANCE_ID.to_string(),
            state_dir: None,
            tls: None,
            certificate_lifetime: None,
        }
    }
}

#[derive(Debug, Default)]
struct Faults {
    fail_next: u32,
    fail_status: u16,
    delay: Duration,
    disabled: bool,
    expired_tokens: bool,
    certificate_lifetime: Option<Duration>,
}

struct Shared {
    instance_id: String,
    issuer: Arc<dyn Issuer>,
    tokens: Mutex<HashMap<String, SystemTime>>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    issued: AtomicU64,
    rng: SystemRandom,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind, still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fault injection and counters of a running [`TestServer`]; cheap to clone.
#[derive(Clone)]
pub struct ServerControl {
    shared: Arc<Shared>,
}

impl ServerControl {
    /// Answer the next `n` requests with `status` (a 5xx, say) and a `service_error` body.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut f = lock(&self.shared.faults);
        f.fail_next = n;
        f.fail_status = status;
    }

    /// Delay every answer by `delay` (zero to stop).
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared.faults).delay = delay;
    }

    /// Behave as an instance whose metadata service is disabled: 403 `unauthorized`.
    pub fn set_disabled(&self, disabled: bool) {
        lock(&self.shared.faults).disabled = disabled;
    }

    /// Hand out tokens that are already expired (a clock skew between client and service).
    pub fn issue_expired_tokens(&self, expired: bool) {
        lock(&self.shared.faults).expired_tokens = expired;
    }

    /// Issue certificates valid for `lifetime` whatever the client asked for (`None`: what it
    /// asked for). A service may grant less than requested, and shorter than the API's 300 s
    /// floor lets tests watch several renewals in a minute; clients must follow the issued
    /// certificate's notAfter.
    pub fn set_certificate_lifetime(&self, lifetime: Option<Duration>) {
        lock(&self.shared.faults).certificate_lifetime = lifetime;
    }

    /// Make every token issued so far expired.
    pub fn expire_tokens(&self) {
        let past = SystemTime::UNIX_EPOCH;
        for expiry in lock(&self.shared.tokens).values_mut() {
            *expiry = past;
        }
    }

    /// Requests received so far (including failed ones).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Certificates issued so far.
    pub fn certificates_issued(&self) -> u64 {
        self.shared.issued.load(Ordering::Relaxed)
    }
}

/// A running test server.
pub struct TestServer {
    addr: SocketAddr,
    https: bool,
    control: ServerControl,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    root_ca_path: Option<PathBuf>,
}

impl TestServer {
    /// Binds `listen` (port 0 picks a free port), writes the root CA into the state directory
    /// and starts serving on the current tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        config: TestServerConfig,
        issuer: Arc<dyn Issuer>,
    ) -> Result<TestServer, Error> {
        let root_ca_path = match &config.state_dir {
            Some(dir) => {
                let path = dir.join(ROOT_CA_FILE);
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&path, issuer.root_ca_pem()))
                    .map_err(|source| Error::Io {
                        action: "writing",
                        path: path.clone(),
                        source,
                    })?;
                Some(path)
            }
            None => None,
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::TestServer(format!("binding {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::TestServer(format!("local address: {e}")))?;
        let shared = Arc::new(Shared {
            instance_id: if config.instance_id.is_empty() {
                DEFAULT_INSTANCE_ID.to_string()
            } else {
                config.instance_id.clone()
            },
            issuer,
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults {
                certificate_lifetime: config.certificate_lifetime,
                ..Faults::default()
            }),
            requests: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            rng: SystemRandom::new(),
        });
        let acceptor = match &config.tls {
            Some(identity) => Some(tls_acceptor(identity)?),
            None => None,
        };
        let https = acceptor.is_some();
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), acceptor, stop));
        Ok(TestServer {
            addr,
            https,
            control: ServerControl { shared },
            shutdown,
            task,
            root_ca_path,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (or `https://` with TLS), for [`crate::ClientConfig::base_url`].
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Where the root CA was written, if a state directory was given.
    pub fn root_ca_path(&self) -> Option<&PathBuf> {
        self.root_ca_path.as_ref()
    }

    /// Fault injection and counters.
    pub fn control(&self) -> &ServerControl {
        &self.control
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Serves until the accept loop ends (it only ends on [`Self::shutdown`] or a fatal
    /// listener error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

fn tls_acceptor(identity: &TlsIdentity) -> Result<TlsAcceptor, Error> {
    let chain = CertificateDer::pem_slice_iter(identity.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::TestServer(format!("server certificate chain: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8_der.to_vec()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| Error::TestServer(format!("TLS setup: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("metadata test server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve(stream, peer, shared).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => serve(tls, peer, shared).await,
                    Err(e) => tracing::debug!("metadata test server: TLS from {peer}: {e}"),
                },
            }
            drop(permit);
        });
    }
}

async fn serve<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("metadata test server: connection from {peer}: {e}");
    }
}

/// An error answer in the service's shape.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    target: Option<(&'static str, &'static str)>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            code,
            message: message.into(),
            target: None,
        }
    }

    fn on(mut self, kind: &'static str, name: &'static str) -> Self {
        self.target = Some((kind, name));
        self
    }
}

enum Operation {
    Token,
    Certificates,
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (delay, injected, disabled) = {
        let mut f = lock(&shared.faults);
        let injected = if f.fail_next > 0 {
            f.fail_next -= 1;
            Some(f.fail_status)
        } else {
            None
        };
        (f.delay, injected, f.disabled)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let result = match (injected, disabled) {
        (Some(status), _) => Err(Failure::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "service_error",
            "injected failure",
        )),
        (None, true) => Err(Failure::new(
            StatusCode::FORBIDDEN,
            "unauthorized",
            "The metadata service is not enabled for this instance.",
        )),
        (None, false) => route(shared, req).await,
    };
    match result {
        Ok(response) => response,
        Err(failure) => error_response(shared, failure),
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Failure> {
    let path = req.uri().path().to_string();
    let (operation, legacy) = match path.as_str() {
        "/identity/v1/token" => (Operation::Token, false),
        "/identity/v1/certificates" => (Operation::Certificates, false),
        "/instance_identity/v1/token" => (Operation::Token, true),
        "/instance_identity/v1/certificates" => (Operation::Certificates, true),
        _ => return Err(not_found(&path)),
    };
    let version = version(req.uri().query())?;
    // From the current API's version date on, the legacy paths are gone; before it, the
    // current paths did not exist yet.
    if legacy == (version.as_str() >= api::CURRENT_VERSION) {
        return Err(not_found(&path));
    }
    let expected = match operation {
        Operation::Token => Method::PUT,
        Operation::Certificates => Method::POST,
    };
    if req.method() != expected {
        return Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            format!(
                "{} is not supported on {path}; use {expected}",
                req.method()
            ),
        ));
    }
    match operation {
        Operation::Token => token(shared, req).await,
        Operation::Certificates => certificates(shared, req).await,
    }
}

fn not_found(path: &str) -> Failure {
    let shown: String = path.chars().take(100).collect();
    Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{shown} was not found"),
    )
}

fn version(query: Option<&str>) -> Result<String, Failure> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("version="))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                "The version parameter is required.",
            )
            .on("parameter", "version")
        })?;
    let b = value.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped || value < OLDEST_VERSION {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("version must be a date (YYYY-MM-DD) on or after {OLDEST_VERSION}"),
        )
        .on("parameter", "version"));
    }
    Ok(value.to_string())
}

/// Reads a JSON object body with only `allowed` fields; an empty body is an empty object.
async fn json_body(
    req: Request<Incoming>,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, Failure> {
    let bytes = Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("request body unreadable or larger than {MAX_REQUEST_BODY} bytes: {e}"),
            )
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("The body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be a JSON object.",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(60).collect();
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("Unknown field {shown:?}."),
        ));
    }
    Ok(map)
}

fn expires_in(
    map: &serde_json::Map<String, Value>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Failure> {
    let invalid = || {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!(
                "expires_in must be between {} and {} seconds.",
                range.start(),
                range.end()
            ),
        )
        .on("field", "expires_in")
    };
    match map.get("expires_in") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            let n = v.as_u64().ok_or_else(invalid)?;
            let n = u32::try_from(n).map_err(|_| invalid())?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(invalid())
            }
        }
    }
}

async fn token(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Failure> {
    match req.headers().get(api::FLAVOR_HEADER) {
        None => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                "The Metadata-Flavor header is required.",
            )
            .on("header", "Metadata-Flavor"))
        }
        Some(v) if v != api::FLAVOR_VALUE => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                "The Metadata-Flavor header must be \"ibm\".",
            )
            .on("header", "Metadata-Flavor"))
        }
        Some(_) => {}
    }
    let body = json_body(req, &["expires_in"]).await?;
    let lifetime = expires_in(
        &body,
        api::DEFAULT_TOKEN_LIFETIME,
        api::TOKEN_LIFETIME_RANGE,
    )?;
    let secret = random_hex(&shared.rng, 32)?;
    let now = SystemTime::now();
    let mut expiry = now + Duration::from_secs(u64::from(lifetime));
    if lock(&shared.faults).expired_tokens {
        expiry = now;
    }
    {
        let mut tokens = lock(&shared.tokens);
        tokens.retain(|_, e| *e > now);
        while tokens.len() >= MAX_TOKENS {
            let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            tokens.remove(&oldest);
        }
        tokens.insert(secret.clone(), expiry);
    }
    let body = TokenResponse {
        access_token: secret,
        created_at: Some(rfc3339(now)),
        expires_at: Some(rfc3339(expiry)),
        expires_in: Some(lifetime),
    };
    Ok(json_response(StatusCode::OK, &body))
}

async fn certificates(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Failure> {
    let unauthenticated = |message: &str| {
        Failure::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
            .on("header", "Authorization")
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("The Authorization header is required."))?
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthenticated("The Authorization header must be \"Bearer <access_token>\".")
        })?
        .to_string();
    let now = SystemTime::now();
    match lock(&shared.tokens).get(&token) {
        None => return Err(unauthenticated("The access token is not valid.")),
        Some(expiry) if *expiry <= now => {
            return Err(unauthenticated("The access token has expired."))
        }
        Some(_) => {}
    }
    let body = json_body(req, &["csr", "expires_in"]).await?;
    let csr = match body.get("csr") {
        None | Some(Value::Null) => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                "The csr field is required.",
            )
            .on("field", "csr"))
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "missing_value",
                "The csr field must be a PEM string.",
            )
            .on("field", "csr"))
        }
    };
    let lifetime = expires_in(
        &body,
        api::DEFAULT_CERTIFICATE_LIFETIME,
        api::CERTIFICATE_LIFETIME_RANGE,
    )?;
    let issuer = shared.issuer.clone();
    let cn = shared.instance_id.clone();
    let granted = lock(&shared.faults).certificate_lifetime;
    let (span, lifetime) = match granted {
        Some(span) => (span, u32::try_from(span.as_secs()).unwrap_or(u32::MAX)),
        None => (Duration::from_secs(u64::from(lifetime)), lifetime),
    };
    // RSA signing takes milliseconds: keep it off the reactor.
    let chain = tokio::task::spawn_blocking(move || issuer.issue(&csr, &cn, now, span))
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "service_error",
                format!("issuer task: {e}"),
            )
        })?
        .map_err(|e| match e {
            IssueError::Rejected(message) => {
                Failure::new(StatusCode::BAD_REQUEST, "invalid_value", message).on("field", "csr")
            }
            IssueError::Internal(message) => {
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "service_error", message)
            }
        })?;
    shared.issued.fetch_add(1, Ordering::Relaxed);
    let body = CertificateResponse {
        certificates: chain,
        created_at: Some(rfc3339(now)),
        expires_at: Some(rfc3339(now + span)),
        expires_in: Some(lifetime),
        id: Some(format!("0717-{}", random_hex(&shared.rng, 8)?)),
    };
    Ok(json_response(StatusCode::CREATED, &body))
}

fn random_hex(rng: &SystemRandom, bytes: usize) -> Result<String, Failure> {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf).map_err(|_| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "service_error",
            "random number generator failed",
        )
    })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(shared: &Shared, failure: Failure) -> Response<Full<Bytes>> {
    let trace = random_hex(&shared.rng, 16).unwrap_or_default();
    let body = ErrorBody {
        errors: vec![ServiceError {
            code: failure.code.to_string(),
            message: failure.message,
            more_info: Some("https://cloud.ibm.com/docs/vpc?topic=vpc-imd-about".to_string()),
            target: failure.target.map(|(kind, name)| ErrorTarget {
                name: name.to_string(),
                kind: kind.to_string(),
                value: None,
            }),
        }],
        status_code: Some(failure.status.as_u16()),
        trace: Some(trace),
    };
    json_response(failure.status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_parameter_rules() {
        assert_eq!(
            version(Some("version=2025-08-26")).ok(),
            Some("2025-08-26".to_string())
        );
        assert_eq!(
            version(Some("a=b&version=2022-03-01")).ok(),
            Some("2022-03-01".to_string())
        );
        assert_eq!(version(None).err().map(|f| f.code), Some("missing_field"));
        for bad in [
            "version=2021-12-31",
            "version=yesterday",
            "version=2025-8-26",
            "version=2025-08-2x",
        ] {
            assert_eq!(
                version(Some(bad)).err().map(|f| f.code),
                Some("invalid_value"),
                "{bad}"
            );
        }
    }

    #[test]
    fn expires_in_rules() {
        let map = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let range = api::CERTIFICATE_LIFETIME_RANGE;
        assert_eq!(
            expires_in(&map(json!({})), 3600, range.clone()).ok(),
            Some(3600)
        );
        assert_eq!(
            expires_in(&map(json!({"expires_in": 300})), 3600, range.clone()).ok(),
            Some(300)
        );
        for bad in [
            json!(299),
            json!(3601),
            json!(-1),
            json!("600"),
            json!(1.5),
            json!(u64::MAX),
        ] {
            let f = expires_in(&map(json!({ "expires_in": bad })), 3600, range.clone())
                .err()
                .unwrap();
            assert_eq!(
                (f.status, f.code),
                (StatusCode::BAD_REQUEST, "invalid_value")
            );
        }
    }
}
