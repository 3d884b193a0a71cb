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

fn ibm_ipsec(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cert_fetch_against_the_test_server_process() {
    use std::os::unix::fs::PermissionsExt;
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path());
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("share.conf");
    std::fs::write(
        &conf,
        "# test\nkey_bits = 2048\ncertificate_duration_seconds = 600\n",
    )
    .unwrap();
    let out_dir = work.path().join("out");
    let out_dir_s = out_dir.to_str().unwrap();
    let conf_s = conf.to_str().unwrap();

    let first = ibm_ipsec(&[
        "cert",
        "fetch",
        "--config",
        conf_s,
        "--metadata-url",
        &server.url,
        "--out-dir",
        out_dir_s,
    ]);
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert!(first.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("config: {conf_s}")), "{stderr}");
    assert!(
        stderr.contains("generating an RSA-2048 host key"),
        "{stderr}"
    );
    assert!(stdout.contains("CN=0717_cli-test"), "{stdout}");
    assert!(stdout.contains("O=IBM Corporation"), "{stdout}");
    assert!(
        stdout.contains("(in 9 min") || stdout.contains("(in 10 min"),
        "{stdout}"
    );
    let key = out_dir.join("host.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let leaf = std::fs::read_to_string(out_dir.join("host.pem")).unwrap();
    let intermediate = std::fs::read_to_string(out_dir.join("intermediate.pem")).unwrap();

    // The written chain verifies against the root the server wrote, by our own `cert show`.
    let roots = work.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::copy(
        server_dir.path().join("metadata-test-root-ca.pem"),
        roots.join("test.pem"),
    )
    .unwrap();
    let chain = work.path().join("chain.pem");
    std::fs::write(&chain, format!("{leaf}{intermediate}")).unwrap();
    let show = ibm_ipsec(&[
        "cert",
        "show",
        chain.to_str().unwrap(),
        "--ca-dir",
        roots.to_str().unwrap(),
    ]);
    assert!(
        show.status.success(),
        "{}{}",
        text(&show.stdout),
        text(&show.stderr)
    );

    // A second fetch reuses the key, on the legacy paths, with a lifetime from the flag.
    let key_before = std::fs::read(&key).unwrap();
    let second = ibm_ipsec(&[
        "cert",
        "fetch",
        "--config",
        conf_s,
        "--metadata-url",
        &server.url,
        "--out-dir",
        out_dir_s,
        "--legacy-api",
        "--expires-in",
        "300",
    ]);
    let (stdout, stderr) = (text(&second.stdout), text(&second.stderr));
    assert!(second.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains("generating"), "{stderr}");
    assert!(
        stdout.contains("(in 4 min") || stdout.contains("(in 5 min"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), key_before);
    assert_ne!(
        std::fs::read_to_string(out_dir.join("host.pem")).unwrap(),
        leaf
    );
}

#[test]
fn cert_fetch_exit_codes_follow_the_mount_helper() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path());
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("share.conf");
    std::fs::write(
        &conf,
        "key_bits=2048\nmetadata_retry_count=1\nmetadata_retry_interval=1\n",
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap();
    let out_dir = work.path().join("out");
    let out_dir_s = out_dir.to_str().unwrap();
    let run = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "cert",
            "fetch",
            "--config",
            conf_s,
            "--metadata-url",
            url,
            "--out-dir",
            out_dir_s,
        ];
        args.extend_from_slice(extra);
        let out = ibm_ipsec(&args);
        (out.status.code(), text(&out.stderr))
    };

    // Nothing listens: 1, "unreachable", after the configured retry.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, stderr) = run(&closed_url, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("unreachable") && stderr.contains("2 attempt(s)"),
        "{stderr}"
    );

    // A path the service does not have: the token call fails with 404 → 2.
    let (code, stderr) = run(&format!("{}/no-such-prefix", server.url), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("HTTP 404 not_found"), "{stderr}");

    // Refused locally before any request (the CSR rule, the lifetime range): generic 6.
    let (code, stderr) = run(&server.url, &["--subject", "C=US,CN=me"]);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("Common Name"), "{stderr}");
    let (code, stderr) = run(&server.url, &["--expires-in", "100"]);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("outside 300–3600"), "{stderr}");

    // https without a CA to verify against is refused, never downgraded (generic 6).
    let (code, stderr) = run(
        &server.url.replace("http://", "https://"),
        &["--metadata-ca-file", "/nonexistent/ca.pem"],
    );
    assert_eq!(code, Some(6), "{stderr}");
    assert!(
        stderr.contains("cannot verify the metadata service"),
        "{stderr}"
    );
}
