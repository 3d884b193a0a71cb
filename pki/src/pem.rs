//! PEM documents (RFC 7468): the blocks in a file, certificates in PEM or DER, and encoding.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::{Error, Result};

/// Largest PEM/DER input we read: root CA bundles are tens of kilobytes.
pub const MAX_INPUT_LEN: usize = 1 << 20;

/// Most certificates we take from one input (a chain, a region bundle, a system CA bundle).
pub const MAX_CERTIFICATES: usize = 1000;

/// One decoded PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    /// The type label, e.g. `CERTIFICATE` or `PRIVATE KEY`.
    pub label: String,
    /// The decoded DER bytes.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Blocks may hold private keys: never print their contents.
        f.debug_struct("Block")
            .field("label", &self.label)
            .field("len", &self.der.len())
            .finish()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.der);
    }
}

/// Every `-----BEGIN X-----` … `-----END X-----` block in `input`, in order. Text outside
/// blocks (OpenSSL's `subject=` lines, comments) is ignored, as OpenSSL does.
pub fn blocks(input: &[u8]) -> Result<Vec<Block>> {
    if input.len() > MAX_INPUT_LEN {
        return Err(Error::Pem(format!(
            "input longer than {MAX_INPUT_LEN} bytes"
        )));
    }
    let text = std::str::from_utf8(input).map_err(|_| Error::Pem("not UTF-8 text".into()))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let label_end = after
            .find("-----")
            .ok_or_else(|| Error::Pem("unterminated BEGIN line".into()))?;
        let label = &after[..label_end];
        if label.len() > 64 || label.contains('\n') {
            return Err(Error::Pem("malformed BEGIN line".into()));
        }
        let body_and_rest = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_and_rest
            .find(&end_marker)
            .ok_or_else(|| Error::Pem(format!("no `{end_marker}` line")))?;
        let body = &body_and_rest[..body_end];
        if body.contains(':') {
            return Err(Error::Pem(format!(
                "`{label}` has RFC 1421 headers (an encrypted key?); not supported"
            )));
        }
        // The text may be a private key: wipe the copy once decoded.
        let b64: zeroize::Zeroizing<String> =
            zeroize::Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
        let der = STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| Error::Pem(format!("`{label}` base64: {e}")))?;
        out.push(Block {
            label: label.to_string(),
            der,
        });
        rest = &body_and_rest[body_end + end_marker.len()..];
    }
    Ok(out)
}

/// The certificates in `input`: every `CERTIFICATE` block of a PEM file (other blocks are
/// ignored), or, when the input is not PEM, the input itself as one DER certificate.
pub fn certificates(input: &[u8]) -> Result<Vec<Vec<u8>>> {
    if input.len() > MAX_INPUT_LEN {
        return Err(Error::Pem(format!(
            "input longer than {MAX_INPUT_LEN} bytes"
        )));
    }
    if !looks_like_pem(input) {
        return Ok(vec![input.to_vec()]);
    }
    let certs: Vec<Vec<u8>> = blocks(input)?
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE" || b.label == "X509 CERTIFICATE")
        .map(|b| b.der.clone())
        .collect();
    if certs.len() > MAX_CERTIFICATES {
        return Err(Error::Pem(format!(
            "{} certificates, more than the {MAX_CERTIFICATES} we accept",
            certs.len()
        )));
    }
    Ok(certs)
}

/// Whether the input contains a PEM BEGIN line (DER starts with a SEQUENCE tag instead).
pub fn looks_like_pem(input: &[u8]) -> bool {
    input.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Encodes DER as a PEM block with 64-character lines and LF line endings.
pub fn encode(label: &str, der: &[u8]) -> String {
    // Callers encode private keys too: wipe the intermediate text.
    let b64 = zeroize::Zeroizing::new(STANDARD.encode(der));
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_noise_between_blocks() {
        let a = encode("CERTIFICATE", &[0x30, 0x03, 1, 2, 3]);
        let b = encode("PRIVATE KEY", &[9; 100]);
        let text = format!("subject=CN=x\n{a}# comment\n{b}trailing\n");
        let got = blocks(text.as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].label, "CERTIFICATE");
        assert_eq!(got[0].der, vec![0x30, 0x03, 1, 2, 3]);
        assert_eq!(got[1].der, vec![9; 100]);
        assert_eq!(
            certificates(text.as_bytes()).unwrap(),
            vec![vec![0x30, 0x03, 1, 2, 3]]
        );
        assert!(!format!("{:?}", got[1]).contains("9, 9"));
    }

    #[test]
    fn der_input_is_one_certificate() {
        assert_eq!(certificates(&[0x30, 0x00]).unwrap(), vec![vec![0x30, 0x00]]);
    }

    #[test]
    fn malformed_pem_is_an_error() {
        assert!(blocks(b"-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
        assert!(blocks(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").is_err());
        assert!(blocks(b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n-----END X-----\n").is_err());
        assert!(blocks(&vec![b'a'; MAX_INPUT_LEN + 1]).is_err());
    }
}
