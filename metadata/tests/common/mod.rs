//! Shared by the integration tests: a test server on a loopback port, CSRs, raw HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use metadata::test_server::{IssueError, Issuer, TestServer, TestServerConfig};
use metadata::IssuedCertificate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Stand-in CA until the pki crate's test CA is wired in: answers with PEM-shaped blocks and
/// rejects the CSR marked as carrying a Common Name.
struct StandInIssuer;

impl Issuer for StandInIssuer {
    fn issue(
        &self,
        csr: &str,
        cn: &str,
        _: SystemTime,
        _: Duration,
    ) -> Result<Vec<String>, IssueError> {
        if csr.contains("with-cn") {
            return Err(IssueError::Rejected(
                "the CSR has a Common Name; the service sets it".into(),
            ));
        }
        Ok(vec![
            format!("-----BEGIN CERTIFICATE-----\n{cn}\n-----END CERTIFICATE-----\n"),
            "-----BEGIN CERTIFICATE-----\nintermediate\n-----END CERTIFICATE-----\n".into(),
        ])
    }

    fn root_ca_pem(&self) -> String {
        "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n".into()
    }
}

pub static GOOD_CSR: LazyLock<String> = LazyLock::new(|| {
    "-----BEGIN CERTIFICATE REQUEST-----\ngood\n-----END CERTIFICATE REQUEST-----\n".into()
});
pub static CSR_WITH_CN: LazyLock<String> = LazyLock::new(|| {
    "-----BEGIN CERTIFICATE REQUEST-----\nwith-cn\n-----END CERTIFICATE REQUEST-----\n".into()
});

pub async fn start() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = TestServerConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..TestServerConfig::default()
    };
    let server = TestServer::start(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Arc::new(StandInIssuer),
    )
    .await
    .unwrap();
    (server, dir)
}

pub fn check_issued(issued: &IssuedCertificate, _lifetime: u32) {
    assert!(issued
        .leaf_pem
        .contains(&metadata::test_server::DEFAULT_INSTANCE_ID));
}

/// One HTTP/1.1 request over a fresh connection; returns the status and the body.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
