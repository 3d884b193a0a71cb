//! One HTTP/1.1 request per connection, straight to the metadata service: no proxy (the
//! service is link-local, and a proxy would see the bearer token), a short connect timeout,
//! an overall deadline, a bounded response body, and TLS verified against a configured CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::Error;

/// Largest response body we read: the real answers are a few kilobytes.
const MAX_BODY: usize = 256 * 1024;

/// System CA bundles tried when https is configured without `metadata_ca_file`
/// (Debian/Ubuntu, RHEL/Fedora, SUSE). IBM's installer puts the service's CA there.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
];

/// Where a request failed before an HTTP status arrived.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// Name resolution, connect refused/unreachable, connect timeout, reset, overall timeout:
    /// worth retrying.
    Unreachable(String),
    /// TLS handshake failure (almost always verification): not worth retrying.
    Tls(String),
    /// The answer was too large or malformed HTTP.
    Protocol(String),
}

/// A response: status and the whole (bounded) body.
pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    trust: String,
}

/// The metadata service's base URL, resolved into what a request needs.
pub(crate) struct Endpoint {
    /// `scheme://authority` plus any base path, without a trailing slash.
    base: String,
    host: String,
    port: u16,
    authority: HeaderValue,
    tls: Option<Tls>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Endpoint {
    pub(crate) fn new(
        base_url: &str,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: base_url.to_string(),
            reason: reason.into(),
        };
        let uri: Uri = base_url.parse().map_err(|e| bad(&format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(bad(&format!("scheme {other:?} (expected http or https)"))),
            None => return Err(bad("no scheme (expected http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed in the base URL"));
        }
        let path = uri.path().trim_end_matches('/');
        let base = format!(
            "{}://{}{}",
            if https { "https" } else { "http" },
            authority,
            path
        );
        let authority =
            HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&e.to_string()))?;
        let tls = if https {
            Some(tls_setup(base_url, &host, ca_file)?)
        } else {
            None
        };
        Ok(Endpoint {
            base,
            host,
            port,
            authority,
            tls,
            connect_timeout,
            request_timeout,
        })
    }

    /// The full URL of `path_and_query`, for messages.
    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// The host, for messages.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Which trust anchors verify the service (`None` for plain http).
    pub(crate) fn trust(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.trust.as_str())
    }

    /// Sends one request and reads the whole answer, all within the request timeout.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<RawResponse, TransportError> {
        match tokio::time::timeout(self.request_timeout, self.send_inner(request)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Unreachable(format!(
                "no complete answer within {} ms",
                self.request_timeout.as_millis()
            ))),
        }
    }

    /// Builds a request for `path_and_query` below the base URL with the Host header set.
    pub(crate) fn request(&self, method: Method, path_and_query: &str) -> http::request::Builder {
        // HTTP/1.1 origin-form: the path below any base path; the Host header carries the rest.
        let base_path = self
            .base
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        Request::builder()
            .method(method)
            .uri(format!("{base_path}{path_and_query}"))
            .header(http::header::HOST, self.authority.clone())
    }

    async fn send_inner(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<RawResponse, TransportError> {
        let tcp = self.connect().await?;
        match &self.tls {
            None => exchange(tcp, request).await,
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| TransportError::Tls(e.to_string()))?;
                exchange(stream, request).await
            }
        }
    }

    async fn connect(&self) -> Result<TcpStream, TransportError> {
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::lookup_host((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| TransportError::Unreachable(format!("resolving {} timed out", self.host)))?
        .map_err(|e| TransportError::Unreachable(format!("resolving {}: {e}", self.host)))?
        .collect();
        let mut last = format!("{} resolved to no address", self.host);
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // Requests are tiny; don't let Nagle hold the body back.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = format!("connecting to {addr}: {e}"),
                Err(_) => {
                    last = format!(
                        "connecting to {addr}: no answer within {} ms",
                        self.connect_timeout.as_millis()
                    )
                }
            }
        }
        Err(TransportError::Unreachable(last))
    }
}

async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<RawResponse, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| TransportError::Unreachable(format!("HTTP handshake: {e}")))?;
    // The connection task ends when the response is read or the sender is dropped.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| {
            if e.is_parse() || e.is_parse_too_large() {
                TransportError::Protocol(format!("malformed HTTP answer: {e}"))
            } else {
                TransportError::Unreachable(format!("sending the request: {e}"))
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    TransportError::Protocol(format!("answer body larger than {MAX_BODY} bytes"))
                } else {
                    TransportError::Unreachable(format!("reading the answer: {e}"))
                }
            })?
            .to_bytes();
        Ok(RawResponse { status, body })
    }
    .await;
    driver.abort();
    result
}

fn tls_setup(url: &str, host: &str, ca_file: Option<&Path>) -> Result<Tls, Error> {
    let setup_err = |reason: String| Error::TlsSetup {
        url: url.to_string(),
        reason,
    };
    let (path, explicit): (PathBuf, bool) = match ca_file {
        Some(p) => (p.to_path_buf(), true),
        None => match SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
            Some(p) => (p.to_path_buf(), false),
            None => {
                return Err(setup_err(format!(
                    "https needs a CA to verify the service against, and neither \
                     metadata_ca_file is set nor a system CA bundle exists ({}); set \
                     metadata_ca_file, or use http://169.254.169.254",
                    SYSTEM_BUNDLES.join(", ")
                )))
            }
        },
    };
    let mut roots = RootCertStore::empty();
    let iter = CertificateDer::pem_file_iter(&path)
        .map_err(|e| setup_err(format!("reading CA file {}: {e}", path.display())))?;
    for cert in iter {
        let cert = cert.map_err(|e| setup_err(format!("CA file {}: {e}", path.display())))?;
        // A bundle may hold certificates rustls cannot use as anchors; skip those, but an
        // explicit CA file must yield at least one (checked below).
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(setup_err(format!(
            "CA file {} holds no usable certificate{}",
            path.display(),
            if explicit { "" } else { " (system bundle)" }
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|e| setup_err(format!("{host:?} is not a valid TLS server name: {e}")))?;
    let trust = if explicit {
        format!("CA file {}", path.display())
    } else {
        format!("system CA bundle {}", path.display())
    };
    Ok(Tls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
        trust,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Result<Endpoint, Error> {
        Endpoint::new(url, None, Duration::from_secs(1), Duration::from_secs(5))
    }

    #[test]
    fn parses_base_urls() {
        let e = endpoint("http://169.254.169.254").unwrap();
        assert_eq!(e.port, 80);
        assert_eq!(
            e.url("/identity/v1/token?version=x"),
            "http://169.254.169.254/identity/v1/token?version=x"
        );
        let e = endpoint("http://127.0.0.1:8080/").unwrap();
        assert_eq!(e.port, 8080);
        assert_eq!(e.url("/a"), "http://127.0.0.1:8080/a");
        let e = endpoint("http://[::1]:81/prefix/").unwrap();
        assert_eq!(e.host(), "::1");
        assert_eq!(e.url("/a"), "http://[::1]:81/prefix/a");
        let req = e
            .request(Method::GET, "/a?b")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(req.uri(), "/prefix/a?b");
        assert_eq!(req.headers()[http::header::HOST], "[::1]:81");
    }

    #[test]
    fn refuses_unusable_urls() {
        for url in [
            "169.254.169.254",
            "ftp://x",
            "http://",
            "http://u:p@host",
            "http://h/?q=1",
            "http://h h",
        ] {
            assert!(matches!(endpoint(url), Err(Error::BadUrl { .. })), "{url}");
        }
    }

    #[test]
    fn https_with_missing_ca_file_says_so() {
        let err = Endpoint::new(
            "https://169.254.169.254",
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::TlsSetup { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn https_with_empty_ca_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = Endpoint::new(
            "https://h",
            Some(&path),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("no usable certificate"), "{err}");
    }
}
