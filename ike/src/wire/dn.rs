//! Distinguished names as text: what an `ID_DER_ASN1_DN` identity (RFC 7296 §3.5) looks like
//! in logs, `status` and failure messages.
//!
//! The DER is a `Name` (RFC 5280 §4.1.2.4): a SEQUENCE of RDNs, each a SET of
//! (OID, value) pairs. The text uses RFC 4514's attribute syntax and escaping (§2.3, §2.4:
//! short names for the usual types, dotted OIDs otherwise, `#` and the hex of the BER
//! encoding for values that are not strings, `+` between the pairs of a multi-valued RDN),
//! with the RDNs in the order they are encoded, separated by `, ` — the order OpenSSL and
//! strongSwan print and the one operators write in `--remote-id` (`C=US, O=IBM, CN=host`).
//!
//! The input comes from the peer: every length is checked against the input, nesting and
//! counts are bounded, and anything malformed is a typed [`Error`]; callers fall back to hex.

use core::fmt::Write as _;

use super::error::{Error, Result};

/// Most RDNs accepted in one name (certificates carry a handful).
pub const MAX_RDNS: usize = 64;
/// Most attribute/value pairs in one RDN.
pub const MAX_ATTRIBUTES_PER_RDN: usize = 16;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;

/// The text of a DER `Name`, e.g. `C=US, O=IBM, OU=Storage, CN=share`.
pub fn dn_to_string(der: &[u8]) -> Result<String> {
    let (tag, rdns, rest) = tlv(der)?;
    expect(tag, TAG_SEQUENCE, "DN")?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes {
            what: "DN",
            len: rest.len(),
        });
    }
    let mut out = String::new();
    let mut input = rdns;
    let mut count = 0;
    while !input.is_empty() {
        count += 1;
        if count > MAX_RDNS {
            return Err(Error::TooMany {
                what: "RDNs in a DN",
                max: MAX_RDNS,
            });
        }
        let (tag, set, rest) = tlv(input)?;
        expect(tag, TAG_SET, "RDN")?;
        input = rest;
        if count > 1 {
            out.push_str(", ");
        }
        rdn(set, &mut out)?;
    }
    Ok(out)
}

/// One RDN's `type=value` pairs joined by `+`.
fn rdn(mut set: &[u8], out: &mut String) -> Result<()> {
    if set.is_empty() {
        return Err(Error::BadLength {
            what: "RDN (empty SET)",
            len: 0,
        });
    }
    let mut n = 0;
    while !set.is_empty() {
        n += 1;
        if n > MAX_ATTRIBUTES_PER_RDN {
            return Err(Error::TooMany {
                what: "attributes in an RDN",
                max: MAX_ATTRIBUTES_PER_RDN,
            });
        }
        let (tag, atv, rest) = tlv(set)?;
        expect(tag, TAG_SEQUENCE, "AttributeTypeAndValue")?;
        set = rest;
        let (tag, oid, value) = tlv(atv)?;
        expect(tag, TAG_OID, "attribute type")?;
        let (value_tag, content, after) = tlv(value)?;
        if !after.is_empty() {
            return Err(Error::TrailingBytes {
                what: "AttributeTypeAndValue",
                len: after.len(),
            });
        }
        if n > 1 {
            out.push('+');
        }
        match attribute_name(oid) {
            Some(name) => out.push_str(name),
            None => out.push_str(&dotted_oid(oid)?),
        }
        out.push('=');
        match string_value(value_tag, content) {
            Some(text) => escape_into(&text, out),
            None => {
                // RFC 4514 §2.4: `#` and the hex of the value's whole encoding.
                out.push('#');
                for b in value {
                    let _ = write!(out, "{b:02x}");
                }
            }
        }
    }
    Ok(())
}

fn expect(tag: u8, want: u8, what: &'static str) -> Result<()> {
    if tag == want {
        Ok(())
    } else {
        Err(Error::BadValue {
            what,
            value: u32::from(tag),
        })
    }
}

/// One DER TLV: (tag, contents, what follows). Only low tag numbers and definite lengths of
/// up to four octets are DER for a name.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let truncated = |need: usize| Error::Truncated {
        what: "DER element",
        need,
        have: input.len(),
    };
    let (&tag, rest) = input.split_first().ok_or_else(|| truncated(2))?;
    if tag & 0x1f == 0x1f {
        return Err(Error::BadValue {
            what: "DER tag (high tag number)",
            value: u32::from(tag),
        });
    }
    let (&first, rest) = rest.split_first().ok_or_else(|| truncated(2))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return Err(Error::BadValue {
                what: "DER length",
                value: u32::from(first),
            });
        }
        let bytes = rest.get(..octets).ok_or_else(|| truncated(2 + octets))?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[octets..])
    };
    if len > rest.len() {
        return Err(Error::Truncated {
            what: "DER element",
            need: len,
            have: rest.len(),
        });
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Short names (RFC 4514 §3 and the usual additions) by encoded OID.
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x0c] => "title",
        [0x55, 0x04, 0x2a] => "GN",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// `2.5.4.97` style; arcs beyond 64 bits or a truncated arc are errors.
fn dotted_oid(oid: &[u8]) -> Result<String> {
    let bad = || Error::BadValue {
        what: "OBJECT IDENTIFIER",
        value: oid.len().try_into().unwrap_or(u32::MAX),
    };
    if oid.is_empty() || oid.last().is_some_and(|b| b & 0x80 != 0) {
        return Err(bad());
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        if value > (u64::MAX >> 7) {
            return Err(bad());
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    let mut text = String::new();
    for (i, arc) in arcs.iter().enumerate() {
        if i == 0 {
            // X.690 §8.19.4: the first subidentifier packs the first two arcs.
            let (a, b) = match *arc {
                v if v < 40 => (0, v),
                v if v < 80 => (1, v - 40),
                v => (2, v - 80),
            };
            let _ = write!(text, "{a}.{b}");
        } else {
            let _ = write!(text, ".{arc}");
        }
    }
    Ok(text)
}

/// The text of the directory string types in use; `None` for other types or bad encodings.
fn string_value(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, VisibleString.
        0x0c | 0x13 | 0x16 | 0x1a => core::str::from_utf8(content).ok().map(str::to_owned),
        // TeletexString: Latin-1 in practice.
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e => {
            if content.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UCS-4BE.
        0x1c => {
            if content.len() % 4 != 0 {
                return None;
            }
            content
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping: the special characters anywhere, `#` and space at the start, space
/// at the end, and control characters as `\XX` per UTF-8 octet (so no log line breaks).
fn escape_into(text: &str, out: &mut String) {
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\{b:02X}");
            }
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `C=US, ST=IL, O=IBM Corporation, OU=IBM Software Group, CN=0717_abc` as OpenSSL
    /// encodes it (C as PrintableString, the others UTF8String).
    fn ibm_dn() -> Vec<u8> {
        let mut rdns = Vec::new();
        for (oid, tag, value) in [
            (0x06u8, 0x13u8, "US"),
            (0x08, 0x0c, "IL"),
            (0x0a, 0x0c, "IBM Corporation"),
            (0x0b, 0x0c, "IBM Software Group"),
            (0x03, 0x0c, "0717_abc"),
        ] {
            rdns.extend(rdn_der(&[0x55, 0x04, oid], tag, value.as_bytes()));
        }
        wrap(0x30, &rdns)
    }

    fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend((content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    fn rdn_der(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut atv = wrap(0x06, oid);
        atv.extend(wrap(tag, value));
        wrap(0x31, &wrap(0x30, &atv))
    }

    #[test]
    fn an_ibm_subject_reads_as_people_write_it() {
        assert_eq!(
            dn_to_string(&ibm_dn()).unwrap(),
            "C=US, ST=IL, O=IBM Corporation, OU=IBM Software Group, CN=0717_abc"
        );
    }

    #[test]
    fn strongswan_fixture_subject() {
        // The responder certificate subject of ike/tests/strongswan_fixtures.rs' capture:
        // C=CH, O=strongSwan, CN=moon.strongswan.org (encoded by hand here).
        let mut rdns = rdn_der(&[0x55, 0x04, 0x06], 0x13, b"CH");
        rdns.extend(rdn_der(&[0x55, 0x04, 0x0a], 0x13, b"strongSwan"));
        rdns.extend(rdn_der(&[0x55, 0x04, 0x03], 0x13, b"moon.strongswan.org"));
        assert_eq!(
            dn_to_string(&wrap(0x30, &rdns)).unwrap(),
            "C=CH, O=strongSwan, CN=moon.strongswan.org"
        );
    }

    #[test]
    fn special_characters_unknown_types_and_multi_valued_rdns() {
        let mut rdns = rdn_der(&[0x55, 0x04, 0x03], 0x0c, b" #a,b+c\"d\\e;<f> ");
        // 2.5.4.97 (organizationIdentifier) is not in the table: dotted.
        rdns.extend(rdn_der(&[0x55, 0x04, 0x61], 0x0c, b"VATDE-1"));
        // A value that is not a string: `#` + hex of its encoding.
        rdns.extend(rdn_der(&[0x55, 0x04, 0x0b], 0x02, &[0x01, 0x00]));
        // One RDN with two pairs, a BMPString and a control character.
        let mut atv1 = wrap(0x06, &[0x55, 0x04, 0x0b]);
        atv1.extend(wrap(0x1e, &[0x00, b'd', 0x00, 0xe9, 0x00, b'v']));
        let mut atv2 = wrap(
            0x06,
            &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        );
        atv2.extend(wrap(0x13, b"x\ny"));
        let mut set = wrap(0x30, &atv1);
        set.extend(wrap(0x30, &atv2));
        rdns.extend(wrap(0x31, &set));
        assert_eq!(
            dn_to_string(&wrap(0x30, &rdns)).unwrap(),
            "CN=\\ #a\\,b\\+c\\\"d\\\\e\\;\\<f\\>\\ , 2.5.4.97=VATDE-1, OU=#02020100, \
             OU=dév+UID=x\\0Ay"
        );
        assert_eq!(dn_to_string(&[0x30, 0x00]).unwrap(), "", "the empty DN");
    }

    #[test]
    fn malformed_names_are_typed_errors() {
        let good = ibm_dn();
        for cut in 0..good.len() {
            assert!(dn_to_string(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            dn_to_string(&trailing),
            Err(Error::TrailingBytes { .. })
        ));
        for bad in [
            &[0x31, 0x00][..],                     // not a SEQUENCE
            &[0x30, 0x02, 0x31, 0x00],             // empty RDN
            &[0x30, 0x80, 0x00, 0x00],             // indefinite length
            &[0x30, 0x85, 1, 0, 0, 0, 0],          // five length octets
            &[0x1f, 0x01, 0x00],                   // high tag number
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], // longer than the input
            &[0x30, 0x04, 0x31, 0x02, 0x06, 0x00], // ATV not a SEQUENCE
        ] {
            assert!(dn_to_string(bad).is_err(), "{bad:02x?}");
        }
        // An OID whose last octet continues, and one with an arc over 64 bits.
        let mut unknown = rdn_der(&[0x55, 0x84], 0x0c, b"x");
        assert!(dn_to_string(&wrap(0x30, &unknown)).is_err());
        unknown = rdn_der(
            &[0xff; 11]
                .iter()
                .chain(&[0x01])
                .copied()
                .collect::<Vec<_>>(),
            0x0c,
            b"x",
        );
        assert!(dn_to_string(&wrap(0x30, &unknown)).is_err());
        // Too many RDNs.
        let many: Vec<u8> = (0..=MAX_RDNS)
            .flat_map(|_| rdn_der(&[0x55, 0x04, 0x03], 0x0c, b"x"))
            .collect();
        assert!(matches!(
            dn_to_string(&wrap(0x30, &many)),
            Err(Error::TooMany { .. })
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep: every prefix and every single-byte corruption.
        let good = ibm_dn();
        for i in 0..good.len() {
            for v in [0x00, 0x7f, 0x80, 0x81, 0xff] {
                let mut m = good.clone();
                m[i] = v;
                let _ = dn_to_string(&m);
            }
        }
    }
}
