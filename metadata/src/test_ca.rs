//! The pki crate's test CA as the test server's [`Issuer`]: CSRs are checked with the same
//! validator that enforces the metadata service's rules, and leaves chain root →
//! intermediate → leaf like the real service's.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use pki::ca::{eku, LeafOptions, SanEntry, TestCa, Validity};
use pki::{HostKey, KeySize};

use crate::test_server::{IssueError, Issuer, TlsIdentity};
use crate::Error;

impl Issuer for TestCa {
    fn issue(
        &self,
        csr_pem: &str,
        common_name: &str,
        not_before: SystemTime,
        lifetime: Duration,
    ) -> Result<Vec<String>, IssueError> {
        let csr = pki::validate_csr(csr_pem.as_bytes()).map_err(|e| match e {
            pki::Error::CsrRule(rule) => IssueError::Rejected(capitalised(&rule.to_string())),
            other => IssueError::Rejected(format!("The CSR is not valid: {other}.")),
        })?;
        let validity = Validity::starting_at(not_before, lifetime);
        let leaf = self
            .issue_from_csr(&csr, common_name, validity, &LeafOptions::default())
            .map_err(|e| IssueError::Internal(e.to_string()))?;
        Ok(vec![
            pki::pem::encode("CERTIFICATE", &leaf),
            self.intermediate_pem(),
        ])
    }

    fn root_ca_pem(&self) -> String {
        self.root_pem()
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// An https identity for the test server at `ip`, issued by `ca` (RSA-2048, serverAuth,
/// valid from a minute before `now` for a day): clients verify it against the CA's root.
pub fn tls_identity(ca: &TestCa, ip: IpAddr, now: SystemTime) -> Result<TlsIdentity, Error> {
    let fail = |e: pki::Error| Error::TestServer(format!("https identity: {e}"));
    let key = HostKey::generate(KeySize::Rsa2048).map_err(fail)?;
    let options = LeafOptions {
        sans: vec![SanEntry::Ip(ip)],
        extended_key_usage: vec![eku::SERVER_AUTH],
    };
    let start = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
    let leaf = ca
        .issue_for_key(
            key.public_key_info_der(),
            "C=US,O=ibm-ipsec test,CN=metadata test server",
            Validity::starting_at(start, Duration::from_secs(86_400)),
            &options,
        )
        .map_err(fail)?;
    Ok(TlsIdentity {
        chain_pem: format!(
            "{}{}",
            pki::pem::encode("CERTIFICATE", &leaf),
            ca.intermediate_pem()
        ),
        key_pkcs8_der: key.to_pkcs8_der(),
    })
}
