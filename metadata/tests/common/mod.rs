//! Shared by the integration tests: a test server on a loopback port issuing from the pki
//! crate's test CA, CSRs that follow and break the service's rules, raw HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use metadata::test_server::{TestServer, TestServerConfig, DEFAULT_INSTANCE_ID};
use metadata::IssuedCertificate;
use pki::ca::TestCa;
use pki::{build_csr, CsrSubject, HostKey, KeySize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One CA for the whole test binary: generating it costs two RSA key generations.
pub static CA: LazyLock<Arc<TestCa>> =
    LazyLock::new(|| Arc::new(TestCa::generate(SystemTime::now()).unwrap()));

static KEY: LazyLock<HostKey> = LazyLock::new(|| HostKey::generate(KeySize::Rsa2048).unwrap());

/// A CSR as the IBM mount helper makes it.
pub static GOOD_CSR: LazyLock<String> = LazyLock::new(|| {
    let subject = CsrSubject::parse(CsrSubject::IBM_DEFAULT).unwrap();
    build_csr(&KEY, &subject).unwrap().to_pem()
});

/// A CSR whose subject carries a Common Name, which the service refuses.
pub static CSR_WITH_CN: LazyLock<String> = LazyLock::new(|| {
    let der = pki::ca::forge_csr(&KEY, "C=US,O=IBM Corporation,CN=my-host", &[], None).unwrap();
    pki::pem::encode("CERTIFICATE REQUEST", &der)
});

pub async fn start() -> (TestServer, tempfile::TempDir) {
    start_with(TestServerConfig::default()).await
}

pub async fn start_with(config: TestServerConfig) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = TestServerConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..config
    };
    let issuer: Arc<TestCa> = CA.clone();
    let server = TestServer::start("127.0.0.1:0".parse().unwrap(), config, issuer)
        .await
        .unwrap();
    (server, dir)
}

/// The leaf has CN = the instance id, the CSR's subject, the requested lifetime, and chains
/// to the test root through the intermediate (checked with openssl when it is installed).
pub fn check_issued(issued: &IssuedCertificate, lifetime: u32) {
    let der = pki::pem::certificates(issued.leaf_pem.as_bytes())
        .unwrap()
        .remove(0);
    let info = pki::CertificateInfo::from_der(&der).unwrap();
    let subject = &info.subject;
    assert!(
        subject.contains(&format!("CN={DEFAULT_INSTANCE_ID}")),
        "{subject}"
    );
    assert!(subject.contains("O=IBM Corporation"), "{subject}");
    assert!(!info.is_ca);
    let (not_before, not_after) = (info.not_before, info.not_after);
    assert_eq!(
        not_after.duration_since(not_before).unwrap(),
        Duration::from_secs(lifetime.into())
    );
    assert_eq!(issued.intermediates_pem, vec![CA.intermediate_pem()]);

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let root = write("root.pem", &CA.root_pem());
    let intermediate = write("intermediate.pem", &issued.intermediates_pem[0]);
    let leaf = write("leaf.pem", &issued.leaf_pem);
    openssl_verify(&root, &intermediate, &leaf);
}

fn openssl_verify(root: &Path, intermediate: &Path, leaf: &Path) {
    let output = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(intermediate)
        .arg(leaf)
        .output();
    match output {
        Err(e) => eprintln!("skipping the openssl chain check: cannot run openssl: {e}"),
        Ok(out) => assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
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
