//! Writes the interop suite's test PKI ([`TestPki`]: RSA-4096 root → intermediate → leaves,
//! the client's like a metadata certificate: no CN, SAN only, valid 1 h) into a directory,
//! for the VM suite (`scripts/vm/xfrm-test` runs this on the host before the guest boots:
//! RSA-4096 keys are generated, or taken from the suite's key cache, at host speed).
//!
//! Files: `root.crt`, `int.crt`, `share.crt`/`share.key`, `client.crt`/`client.key`,
//! `share-chain.pem` and `client-chain.pem` (leaf then intermediate), `ca-bundle.pem`, and
//! `client.subject` (the client's subject DN as strongSwan prints it).
//!
//! For the NFS scenario's metadata identity, made here for the same reason: `metadata-ca/`,
//! a test CA for `ibm-ipsec metadata-test-server --state-dir` (its `ca/` directory), and
//! `instance-host.key`, an RSA-4096 host key (from the suite's key cache) that the client
//! daemon finds in its `state_dir` as a host does after its first mount.
//!
//! `cargo run -p ibm-ipsec-tests --example vm_pki -- DIR`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use ibm_ipsec_tests::TestPki;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: vm_pki DIR");
        return ExitCode::from(2);
    };
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let pki = TestPki::generate(&dir)?;
        pki.chain_file(&pki.share)?;
        pki.chain_file(&pki.client)?;
        pki.ca_bundle()?;
        let subject = dir.join("client.subject");
        std::fs::write(&subject, format!("{}\n", pki.client.subject))
            .map_err(|e| format!("{}: {e}", subject.display()))?;

        let ca_dir = dir.join("metadata-ca");
        std::fs::create_dir_all(&ca_dir)?;
        pki::ca::TestCa::generate(SystemTime::now())?.save(&ca_dir)?;
        let now = SystemTime::now();
        let instance = pki.issue(
            "vm-instance",
            "/C=US/O=ibm-ipsec test/CN=unused",
            None,
            now,
            now + Duration::from_secs(3600),
        )?;
        pki::HostKey::load(&instance.key)?.save(&dir.join("instance-host.key"))?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            println!("vm_pki: test PKI in {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vm_pki: {e}");
            ExitCode::FAILURE
        }
    }
}
