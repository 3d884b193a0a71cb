//! End to end: `ibm-ipsec metadata-test-server` as a real process, and clients against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use metadata::{Client, ClientConfig};
use pki::{build_csr, CsrSubject, HostKey, KeySize};

const BIN: &str = env!("CARGO_BIN_EXE_ibm-ipsec");

/// A running `metadata-test-server`, killed on drop.
struct ServerProcess {
    child: Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(state_dir: &Path) -> ServerProcess {
    let mut child = Command::new(BIN)
        .args([
            "metadata-test-server",
            "--listen",
            "127.0.0.1:0",
            "--instance-id",
            "0717_cli-test",
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("metadata test server listening on ")
        .unwrap()
        .to_string();
    let second = lines.next().unwrap().unwrap();
    assert_eq!(
        second,
        format!(
            "root CA: {}",
            state_dir.join("metadata-test-root-ca.pem").display()
        )
    );
    ServerProcess { child, url }
}

#[test]
fn test_server_process_issues_chains_to_the_root_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let key = HostKey::generate(KeySize::Rsa2048).unwrap();
    let csr = build_csr(&key, &CsrSubject::parse(CsrSubject::IBM_DEFAULT).unwrap()).unwrap();
    let client = Client::new(ClientConfig {
        base_url: server.url.clone(),
        ..ClientConfig::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issued = rt
        .block_on(client.fetch_certificate(&csr.to_pem(), 300))
        .unwrap();
    assert_eq!(issued.expires_in, Some(300));

    // The CA is kept in the state directory, so a restarted server issues under the same root.
    let root = std::fs::read_to_string(dir.path().join("metadata-test-root-ca.pem")).unwrap();
    drop(server);
    let again = start_server(dir.path());
    let root_again = std::fs::read_to_string(dir.path().join("metadata-test-root-ca.pem")).unwrap();
    assert_eq!(root, root_again);
    let client = Client::new(ClientConfig {
        base_url: again.url.clone(),
        ..ClientConfig::default()
    })
    .unwrap();
    let reissued = rt
        .block_on(client.fetch_certificate(&csr.to_pem(), 300))
        .unwrap();
    assert_eq!(reissued.intermediates_pem, issued.intermediates_pem);
}
