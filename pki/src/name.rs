//! Distinguished names: parsing `C=US,O=…` strings, printing them for people, and comparing
//! the DN an IKE peer claims (ID_DER_ASN1_DN) with a certificate's subject.

use std::fmt::Write as _;

use const_oid::db::rfc4519;
use const_oid::ObjectIdentifier;
use der::asn1::{Any, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use crate::error::{Error, Result};

/// Longest subject string we parse; real subjects are a few hundred bytes.
const MAX_SUBJECT_LEN: usize = 4096;

/// The attribute types we know by short name, with RFC 5280 Appendix A upper bounds.
const KNOWN: &[(&str, ObjectIdentifier, usize)] = &[
    ("C", rfc4519::C, 2),
    ("ST", rfc4519::ST, 128),
    ("L", rfc4519::L, 128),
    ("O", rfc4519::O, 64),
    ("OU", rfc4519::OU, 64),
    ("CN", rfc4519::CN, 64),
    ("SERIALNUMBER", rfc4519::SERIAL_NUMBER, 64),
    ("DC", rfc4519::DC, 63),
    ("UID", rfc4519::UID, 256),
    ("EMAILADDRESS", const_oid::db::rfc3280::EMAIL_ADDRESS, 255),
];

/// Short name of an attribute type for display (`CN`, `O`, …), or its dotted OID.
pub(crate) fn attribute_name(oid: &ObjectIdentifier) -> String {
    match KNOWN.iter().find(|(_, o, _)| o == oid) {
        Some(("EMAILADDRESS", _, _)) => "emailAddress".to_string(),
        Some(("SERIALNUMBER", _, _)) => "serialNumber".to_string(),
        Some((short, _, _)) => (*short).to_string(),
        None => oid.to_string(),
    }
}

/// Parses `C=US,ST=IL,O=IBM Corporation` (or OpenSSL's `/C=US/ST=IL/O=…`) into a [`Name`]
/// with one attribute per RDN, in the order written. `\,` escapes a comma in a value.
///
/// Any attribute from the small set we know by name is accepted here; the metadata
/// service's stricter rules are applied by [`crate::CsrSubject`].
pub fn parse_dn(text: &str) -> Result<Name> {
    let text = text.trim();
    if text.len() > MAX_SUBJECT_LEN {
        return Err(Error::InvalidSubject(format!(
            "longer than {MAX_SUBJECT_LEN} bytes"
        )));
    }
    let (separator, body) = match text.strip_prefix('/') {
        Some(rest) => ('/', rest),
        None => (',', text),
    };
    let mut rdns = Vec::new();
    for part in split_escaped(body, separator) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=').ok_or_else(|| {
            Error::InvalidSubject(format!("`{part}` is not of the form KEY=VALUE"))
        })?;
        let key = key.trim();
        let value = value.trim();
        let (_, oid, max) = KNOWN
            .iter()
            .find(|(short, _, _)| short.eq_ignore_ascii_case(key))
            .ok_or_else(|| Error::InvalidSubject(format!("unknown attribute `{key}`")))?;
        if value.is_empty() {
            return Err(Error::InvalidSubject(format!("`{key}` has an empty value")));
        }
        if value.chars().count() > *max {
            return Err(Error::InvalidSubject(format!(
                "`{key}` is longer than {max} characters (RFC 5280 upper bound)"
            )));
        }
        let value = encode_value(*oid, value)
            .map_err(|e| Error::InvalidSubject(format!("`{key}={value}`: {e}")))?;
        let atv = AttributeTypeAndValue { oid: *oid, value };
        let set = SetOfVec::try_from(vec![atv])?;
        rdns.push(RelativeDistinguishedName(set));
    }
    Ok(RdnSequence(rdns))
}

/// Splits on `sep` except where escaped with a backslash; removes the escapes.
fn split_escaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c == sep => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// Country codes are PrintableString (RFC 5280 Appendix A, X520countryName); everything else
/// is UTF8String, as OpenSSL writes them with its default `utf8only` string mask.
fn encode_value(oid: ObjectIdentifier, value: &str) -> der::Result<Any> {
    if oid == rfc4519::C || oid == rfc4519::DC || oid == const_oid::db::rfc3280::EMAIL_ADDRESS {
        if oid == rfc4519::C
            && (value.len() != 2 || !value.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(Tag::PrintableString.value_error());
        }
        if oid == rfc4519::C {
            return Any::encode_from(&PrintableStringRef::new(value)?);
        }
        return Any::encode_from(&der::asn1::Ia5StringRef::new(value)?);
    }
    Any::encode_from(&Utf8StringRef::new(value)?)
}

/// The text of a directory string value, if it is one of the string types in use.
pub(crate) fn value_text(value: &Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => {
            std::str::from_utf8(bytes).ok().map(str::to_string)
        }
        // T.61 in practice carries Latin-1.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// `C=US, O=IBM Corporation, CN=0717_…` — the order the RDNs appear in the certificate
/// (OpenSSL's and strongSwan's habit), not RFC 4514's reversed order.
pub fn display_name(name: &Name) -> String {
    let mut out = String::new();
    for (i, rdn) in name.0.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, atv) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let _ = write!(out, "{}=", attribute_name(&atv.oid));
            match value_text(&atv.value) {
                Some(text) => out.push_str(&escape(&text)),
                None => {
                    out.push('#');
                    for b in atv.value.value() {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ',' | '+' | '\\' | '"' | '<' | '>' | ';') {
            out.push('\\');
        }
        if c.is_control() {
            let _ = write!(out, "\\{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Displays the DN held in DER bytes, or says it is malformed.
pub fn display_name_der(der: &[u8]) -> String {
    match Name::from_der(der) {
        Ok(name) => display_name(&name),
        Err(_) => "<malformed DN>".to_string(),
    }
}

/// Whether two DNs name the same entity: byte-equal DER, or the same attribute types in the
/// same order with values equal after RFC 5280 §7.1-style folding (case and runs of spaces),
/// so a PrintableString and a UTF8String holding the same text compare equal.
pub fn names_match(a: &Name, b: &Name) -> bool {
    if let (Ok(da), Ok(db)) = (a.to_der(), b.to_der()) {
        if da == db {
            return true;
        }
    }
    if a.0.len() != b.0.len() {
        return false;
    }
    a.0.iter().zip(b.0.iter()).all(|(ra, rb)| {
        ra.0.len() == rb.0.len()
            && ra.0.iter().zip(rb.0.iter()).all(|(x, y)| {
                x.oid == y.oid
                    && match (value_text(&x.value), value_text(&y.value)) {
                        (Some(s), Some(t)) => fold(&s) == fold(&t),
                        _ => x.value == y.value,
                    }
            })
    })
}

fn fold(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether the name holds an attribute of this type anywhere.
pub(crate) fn has_attribute(name: &Name, oid: ObjectIdentifier) -> bool {
    name.0
        .iter()
        .any(|rdn| rdn.0.iter().any(|atv| atv.oid == oid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comma_and_slash_forms_alike() {
        let a = parse_dn("C=US,ST=IL,L=Chicago,O=IBM Corporation,OU=IBM Software Group").unwrap();
        let b = parse_dn("/C=US/ST=IL/L=Chicago/O=IBM Corporation/OU=IBM Software Group").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            display_name(&a),
            "C=US, ST=IL, L=Chicago, O=IBM Corporation, OU=IBM Software Group"
        );
    }

    #[test]
    fn escaped_comma_stays_in_value() {
        let n = parse_dn(r"O=Acme\, Inc.,C=DE").unwrap();
        assert_eq!(display_name(&n), r"O=Acme\, Inc., C=DE");
    }

    #[test]
    fn country_is_printable_string_others_utf8() {
        let n = parse_dn("C=US,O=Zürich AG").unwrap();
        assert_eq!(n.0[0].0.get(0).unwrap().value.tag(), Tag::PrintableString);
        assert_eq!(n.0[1].0.get(0).unwrap().value.tag(), Tag::Utf8String);
        assert_eq!(display_name(&n), "C=US, O=Zürich AG");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "C=USA",
            "C=1X",
            "O",
            "X=1",
            "O=",
            &format!("O={}", "a".repeat(65)),
        ] {
            assert!(
                matches!(parse_dn(bad), Err(Error::InvalidSubject(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn match_folds_case_space_and_string_type() {
        let a = parse_dn("C=US,O=IBM  Corporation").unwrap();
        let b = parse_dn("C=us,O=ibm corporation").unwrap();
        assert!(names_match(&a, &b));
        let c = parse_dn("C=US,O=IBM").unwrap();
        assert!(!names_match(&a, &c));
        let d = parse_dn("O=IBM Corporation,C=US").unwrap();
        assert!(!names_match(&a, &d), "order matters");
    }
}
