//! https to the test server: verified against the configured CA, never silently unverified.

mod common;

use std::time::{Duration, SystemTime};

use common::{start_with, CA, GOOD_CSR};
use metadata::test_server::{tls_identity, TestServerConfig};
use metadata::{Client, ClientConfig, Error, RetryPolicy};
use pki::ca::TestCa;

fn config(url: String, ca_file: std::path::PathBuf) -> ClientConfig {
    ClientConfig {
        base_url: url,
        ca_file: Some(ca_file),
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    }
}

async fn https_server() -> (metadata::test_server::TestServer, tempfile::TempDir) {
    let identity = tls_identity(&CA, "127.0.0.1".parse().unwrap(), SystemTime::now()).unwrap();
    start_with(TestServerConfig {
        tls: Some(identity),
        ..TestServerConfig::default()
    })
    .await
}

#[tokio::test]
async fn https_verified_against_the_test_root() {
    let (server, _dir) = https_server().await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let root = server.root_ca_path().unwrap().clone();
    let client = Client::new(config(server.url(), root.clone())).unwrap();
    assert_eq!(
        client.trust(),
        Some(format!("CA file {}", root.display()).as_str())
    );
    let issued = client.fetch_certificate(&GOOD_CSR, 900).await.unwrap();
    common::check_issued(&issued, 900);
    server.shutdown().await;
}

#[tokio::test]
async fn https_with_the_wrong_ca_fails_loudly_and_is_not_retried() {
    let (server, dir) = https_server().await;
    let other = TestCa::generate(SystemTime::now()).unwrap();
    let other_root = dir.path().join("other-root.pem");
    std::fs::write(&other_root, other.root_pem()).unwrap();
    let client = Client::new(config(server.url(), other_root.clone())).unwrap();
    let err = client.fetch_certificate(&GOOD_CSR, 900).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);
    let text = err.to_string();
    assert!(
        text.contains(&format!("CA file {}", other_root.display())),
        "{text}"
    );
    assert!(text.contains("metadata_ca_file"), "{text}");
    assert_eq!(
        server.control().requests(),
        0,
        "no request crossed an unverified connection"
    );
    server.shutdown().await;
}
