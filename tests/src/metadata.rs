//! The metadata test server (`ibm-ipsec metadata-test-server`) in a lab host, as the instance
//! sees the real service: on 169.254.169.254:80 inside the client's namespace
//! (`DESIGN.md`, test lab). Its test CA also issues the file server's certificate, so both
//! ends trust one root, as in the demo.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pki::ca::{LeafOptions, SanEntry, TestCa, Validity};
use pki::{HostKey, KeySize};

use crate::error::{LabError, Result};
use crate::netns::Host;
use crate::pki::Identity;
use crate::process::{wait_until, workspace_binary, LabProcess};

/// Where instances reach the metadata service.
pub const METADATA_IP: &str = "169.254.169.254";

/// A running metadata test server; stopped when dropped.
#[derive(Debug)]
pub struct MetadataServer {
    process: LabProcess,
    state_dir: PathBuf,
    url: String,
}

/// A certificate issued by the server's CA for a peer that is not an instance (the file
/// server): the leaf alone (what charon loads) and leaf + intermediate (what our daemon's
/// `--cert` takes).
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// Leaf certificate, key and subject.
    pub identity: Identity,
    /// Leaf followed by the intermediate CA, PEM.
    pub chain: PathBuf,
}

impl MetadataServer {
    /// Adds 169.254.169.254/32 to `host`'s loopback and serves there on port 80, keeping its
    /// CA in `state_dir`. With `cert_lifetime` every certificate lives that long whatever the
    /// client asked for (the test-only `--cert-lifetime-seconds`: renewals within seconds).
    pub fn start(
        host: &Host,
        state_dir: &Path,
        cert_lifetime: Option<Duration>,
    ) -> Result<MetadataServer> {
        host.add_address(&format!("{METADATA_IP}/32"), "lo")?;
        let secs = cert_lifetime.map(|d| d.as_secs().to_string());
        let mut extra = Vec::new();
        if let Some(s) = &secs {
            extra.extend(["--cert-lifetime-seconds", s.as_str()]);
        }
        MetadataServer::start_at(host, &format!("{METADATA_IP}:80"), state_dir, &extra)
    }

    /// Serves on `listen` (`ADDR:PORT`) inside `host` with extra server arguments; returns
    /// once it says it listens (up to 30 s: the CA's keys are generated on first start).
    pub fn start_at(
        host: &Host,
        listen: &str,
        state_dir: &Path,
        extra: &[&str],
    ) -> Result<MetadataServer> {
        let bin = workspace_binary("ibm-ipsec")?;
        let bin = bin.to_string_lossy();
        let state = state_dir.to_string_lossy();
        let mut args = vec![
            bin.as_ref(),
            "metadata-test-server",
            "--listen",
            listen,
            "--state-dir",
            state.as_ref(),
        ];
        args.extend_from_slice(extra);
        let mut process = host.spawn(&args)?;
        let listening = wait_until(
            "the metadata test server to listen",
            Duration::from_secs(30),
            || process.output().contains("listening on") || !process.is_running(),
        );
        if listening.is_err() || !process.is_running() {
            return Err(process.died());
        }
        let url = match listen.strip_suffix(":80") {
            Some(addr) => format!("http://{addr}"),
            None => format!("http://{listen}"),
        };
        Ok(MetadataServer {
            process,
            state_dir: state_dir.to_owned(),
            url,
        })
    }

    /// `http://ADDR[:PORT]`, for `metadata_url` in share.conf.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The root CA every certificate it issues chains to.
    pub fn root_ca(&self) -> PathBuf {
        // metadata::test_server::ROOT_CA_FILE
        self.state_dir.join("metadata-test-root-ca.pem")
    }

    /// Writes the intermediate CA to `dir/metadata-intermediate-ca.pem` (charon's `x509ca`).
    pub fn intermediate_ca(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("metadata-intermediate-ca.pem");
        write(&path, &self.ca()?.intermediate_pem())?;
        Ok(path)
    }

    /// A client `share.conf` in `dir` (created) pointing at this server, asking for 300 s
    /// certificates (the API's floor), with a 2048-bit host key (RSA-4096 generation takes
    /// seconds in a debug build) kept in `dir`, plus `extra` lines.
    pub fn client_conf(&self, dir: &Path, extra: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
        let path = dir.join("share.conf");
        write(
            &path,
            &format!(
                "metadata_url = {}\ncertificate_duration_seconds = 300\nkey_bits = 2048\n\
                 state_dir = {}\n{extra}",
                self.url,
                dir.display()
            ),
        )?;
        Ok(path)
    }

    /// A file server identity issued by this server's CA: subject `C=US, O=ibm-ipsec tests,
    /// CN=<name> <ip>`, SAN `IP:<ip>`, RSA-2048, valid from 5 minutes ago for an hour; files
    /// `<name>-cert.pem`, `<name>-chain.pem` and `<name>-key.pem` in `dir`.
    pub fn issue_peer(&self, dir: &Path, name: &str, ip: Ipv4Addr) -> Result<PeerIdentity> {
        let ca = self.ca()?;
        let pki_err = |e: pki::Error| LabError::Usage(format!("issuing {name}'s certificate: {e}"));
        let key = HostKey::generate(KeySize::Rsa2048).map_err(pki_err)?;
        let subject = format!("C=US, O=ibm-ipsec tests, CN={name} {ip}");
        let leaf = ca
            .issue_for_key(
                key.public_key_info_der(),
                &subject.replace(", ", ","),
                Validity::starting_at(
                    SystemTime::now() - Duration::from_secs(300),
                    Duration::from_secs(3600),
                ),
                &LeafOptions {
                    sans: vec![SanEntry::Ip(IpAddr::V4(ip))],
                    ..LeafOptions::default()
                },
            )
            .map_err(pki_err)?;
        let leaf_pem = pki::pem::encode("CERTIFICATE", &leaf);
        let cert = dir.join(format!("{name}-cert.pem"));
        let chain = dir.join(format!("{name}-chain.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        write(&cert, &leaf_pem)?;
        write(&chain, &(leaf_pem.clone() + &ca.intermediate_pem()))?;
        key.save(&key_path).map_err(pki_err)?;
        Ok(PeerIdentity {
            identity: Identity {
                cert,
                key: key_path,
                subject,
                san: None,
            },
            chain,
        })
    }

    /// Everything the server printed.
    pub fn log(&self) -> String {
        self.process.output()
    }

    fn ca(&self) -> Result<TestCa> {
        TestCa::load(&self.state_dir.join("ca"))
            .map_err(|e| LabError::Usage(format!("the metadata test server's CA: {e}")))
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io(path, e))
}
