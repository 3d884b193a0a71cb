//! `ibm-ipsec ike decode FILE [--json]`: prints one IKE message (a raw UDP payload, with or
//! without the 4-byte non-ESP marker of port 4500) as text or JSON. The encrypted part of
//! SK/SKF payloads is shown by size only; everything before it is decoded.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ike::wire::{
    parse_chain, strip_non_esp_marker, IdType, Identification, Message, Payload, PayloadType,
    TrafficSelector, HEADER_LEN,
};
use serde_json::{json, Value};

/// Arguments of `ike decode`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ibm-ipsec ike decode msg.bin
  ibm-ipsec ike decode --json msg.bin | jq .payloads
  ibm-ipsec ike decode --inner IDi ike/tests/data/strongswan/<capture>.plain")]
pub struct DecodeArgs {
    /// File holding one IKE message: the UDP payload as captured (e.g. exported from
    /// Wireshark as raw bytes); a leading non-ESP marker is detected and skipped.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Decode FILE as a decrypted payload chain (the plaintext of SK/SKF, without IV,
    /// padding and ICV) whose first payload is of this type: a name such as `IDi`, `SA`, `N`,
    /// or a number (the SK payload's next-payload field).
    #[arg(long, value_name = "FIRST_PAYLOAD", value_parser = parse_payload_type)]
    pub inner: Option<PayloadType>,
}

fn parse_payload_type(s: &str) -> Result<PayloadType, String> {
    if let Ok(n) = s.parse::<u8>() {
        return Ok(PayloadType::from(n));
    }
    let wanted = match s {
        "Ni" | "Nr" => "Nonce",
        other => other,
    };
    (0..=u8::MAX)
        .map(PayloadType::from)
        .find(|t| t.name().is_some_and(|n| n.eq_ignore_ascii_case(wanted)))
        .ok_or_else(|| {
            format!("unknown payload type {s:?} (use a name such as IDi, SA, N, or a number)")
        })
}

/// A decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Whether the datagram started with the non-ESP marker (it came from port 4500).
    pub non_esp_marker: bool,
    /// The message.
    pub message: Message,
}

/// Decodes a datagram. A leading four zero octets are taken as the non-ESP marker unless the
/// bytes as they are form a message whose length field matches (an initiator SPI may start
/// with zero octets).
pub fn decode(datagram: &[u8]) -> Result<Decoded, ike::wire::Error> {
    let length_matches = |b: &[u8]| {
        b.get(24..28)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize == b.len())
            .unwrap_or(false)
    };
    let (non_esp_marker, bytes) = match strip_non_esp_marker(datagram) {
        Some(rest) if !length_matches(datagram) || length_matches(rest) => (true, rest),
        _ => (false, datagram),
    };
    Ok(Decoded {
        non_esp_marker,
        message: Message::parse(bytes)?,
    })
}

/// Runs the command: output on stdout; on failure one line on stderr and exit code 1.
pub fn run(args: &DecodeArgs) -> ExitCode {
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    if let Some(first) = args.inner {
        return match parse_chain(&bytes, first) {
            Ok(payloads) if args.json => {
                println!("{:#}", chain_json(first, &payloads));
                ExitCode::SUCCESS
            }
            Ok(payloads) => {
                print!("{}", chain_text(first, &payloads));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: {}: not a valid IKEv2 payload chain: {e}",
                    args.file.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    match decode(&bytes) {
        Ok(d) if args.json => {
            println!("{:#}", to_json(&d));
            ExitCode::SUCCESS
        }
        Ok(d) => {
            print!("{}", to_text(&d));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: {}: not a valid IKEv2 message: {e}",
                args.file.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// An identity as text; a DER distinguished name is shown in RFC 4514 form when it decodes.
fn id_text(id: &Identification) -> String {
    if id.id_type == IdType::DerAsn1Dn {
        if let Ok(name) = <x509_cert::name::Name as der::Decode>::from_der(&id.data) {
            return format!("{}:{name}", id.id_type);
        }
    }
    id.to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The payload's short name as RFC 7296 writes it; Nonce is Ni in requests, Nr in responses
/// (`None`: direction unknown).
fn type_name(p: &Payload, response: Option<bool>) -> String {
    match p {
        Payload::Nonce(_) if response == Some(true) => "Nr".into(),
        Payload::Nonce(_) if response == Some(false) => "Ni".into(),
        other => other.payload_type().to_string(),
    }
}

fn selector_json(s: &TrafficSelector) -> Value {
    match s {
        TrafficSelector::Range(r) => json!({
            "ts_type": r.ts_type().to_string(),
            "ip_protocol": r.ip_protocol,
            "start_port": r.start_port,
            "end_port": r.end_port,
            "start_addr": r.start_addr.to_string(),
            "end_addr": r.end_addr.to_string(),
        }),
        TrafficSelector::Other { ts_type, data, .. } => {
            json!({"ts_type": ts_type.to_string(), "data": hex(data)})
        }
    }
}

fn payload_json(p: &Payload, response: Option<bool>) -> Value {
    let mut v = match p {
        Payload::Sa(sa) => json!({
            "proposals": sa.proposals.iter().map(|p| json!({
                "number": p.number,
                "protocol": p.protocol.to_string(),
                "spi": hex(&p.spi),
                "transforms": p.transforms.iter().map(|t| {
                    let mut t_json = json!({"type": t.transform_type.to_string(), "id": t.id_name()});
                    if let Some(bits) = t.key_length() {
                        t_json["key_length"] = bits.into();
                    }
                    t_json
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        Payload::Ke(ke) => {
            json!({"group": ke.dh_group.to_string(), "length": ke.data.len(), "data": hex(&ke.data)})
        }
        Payload::IdI(id) | Payload::IdR(id) => {
            json!({"id_type": id.id_type.to_string(), "id": id_text(id)})
        }
        Payload::Cert(c) => json!({"encoding": c.encoding.to_string(), "length": c.data.len()}),
        Payload::CertReq(c) => json!({
            "encoding": c.encoding.to_string(),
            "authorities": c.authority_hashes().map(|h| h.map(hex).collect::<Vec<_>>()).unwrap_or_default(),
        }),
        Payload::Auth(a) => json!({"method": a.method.to_string(), "length": a.data.len()}),
        Payload::Nonce(n) => json!({"length": n.0.len(), "data": hex(&n.0)}),
        Payload::Notify(n) => {
            let mut v = json!({
                "notify": n.notify_type.to_string(),
                "error": n.notify_type.is_error(),
                "protocol": n.protocol.to_string(),
                "spi": hex(&n.spi),
                "data": hex(&n.data),
            });
            if let Some(h) = n.hash_algorithms() {
                v["hash_algorithms"] = h.iter().map(|a| a.to_string()).collect::<Vec<_>>().into();
            }
            v
        }
        Payload::Delete(d) => {
            json!({"protocol": d.protocol.to_string(), "spis": d.spis.iter().map(|s| hex(s)).collect::<Vec<_>>()})
        }
        Payload::VendorId(vid) => json!({"data": hex(&vid.0), "vendor": vid.known_name()}),
        Payload::TsI(ts) | Payload::TsR(ts) => {
            json!({"selectors": ts.selectors.iter().map(selector_json).collect::<Vec<_>>()})
        }
        Payload::Sk(sk) => {
            json!({"next_payload": sk.next_payload.to_string(), "length": sk.body.len()})
        }
        Payload::Skf(f) => json!({
            "fragment_number": f.fragment_number,
            "total_fragments": f.total_fragments,
            "next_payload": f.next_payload.to_string(),
            "length": f.body.len(),
        }),
        Payload::Cp(cp) => json!({
            "cfg_type": cp.cfg_type.to_string(),
            "attributes": cp.attributes.iter().map(|a| json!({"type": a.attribute_type.to_string(), "value": hex(&a.value)})).collect::<Vec<_>>(),
        }),
        Payload::Unknown(u) => json!({"critical": u.critical, "length": u.body.len()}),
    };
    v["type"] = type_name(p, response).into();
    v
}

/// The JSON form: `{"exchange", "initiator_spi", "responder_spi", "message_id", "flags",
/// "length", "non_esp_marker", "payloads": [{"type": ..., ...}]}`.
pub fn to_json(d: &Decoded) -> Value {
    let h = &d.message.header;
    let response = Some(h.flags.response());
    json!({
        "exchange": h.exchange_type.to_string(),
        "initiator_spi": format!("{:016x}", h.initiator_spi),
        "responder_spi": format!("{:016x}", h.responder_spi),
        "message_id": h.message_id,
        "flags": h.flags.names().collect::<Vec<_>>(),
        "length": h.length,
        "non_esp_marker": d.non_esp_marker,
        "payloads": d.message.payloads.iter().map(|p| payload_json(p, response)).collect::<Vec<_>>(),
    })
}

fn payload_line(p: &Payload) -> String {
    match p {
        Payload::Sa(sa) => sa
            .proposals
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        Payload::Ke(ke) => format!("{}, {} bytes", ke.dh_group, ke.data.len()),
        Payload::IdI(id) | Payload::IdR(id) => id_text(id),
        Payload::Cert(c) => format!("{}, {} bytes", c.encoding, c.data.len()),
        Payload::CertReq(c) => match c.authority_hashes() {
            Some(h) => format!("{}, {} CA hash(es)", c.encoding, h.count()),
            None => format!("{}, {} bytes", c.encoding, c.authorities.len()),
        },
        Payload::Auth(a) => format!("{}, {} bytes", a.method, a.data.len()),
        Payload::Nonce(n) => format!("{} bytes {}", n.0.len(), hex(&n.0)),
        Payload::Notify(n) => {
            let mut s = n.notify_type.to_string();
            if !n.spi.is_empty() {
                let _ = write!(s, " {} SPI {}", n.protocol, hex(&n.spi));
            }
            match n.hash_algorithms() {
                Some(h) => {
                    let names: Vec<_> = h.iter().map(|a| a.to_string()).collect();
                    let _ = write!(s, " {}", names.join(","));
                }
                None if !n.data.is_empty() => {
                    let _ = write!(s, " {}", hex(&n.data));
                }
                None => {}
            }
            s
        }
        Payload::Delete(d) => {
            let spis: Vec<_> = d.spis.iter().map(|s| hex(s)).collect();
            format!("{} {}", d.protocol, spis.join(" "))
                .trim_end()
                .to_string()
        }
        Payload::VendorId(v) => match v.known_name() {
            Some(n) => format!("{} ({n})", hex(&v.0)),
            None => hex(&v.0),
        },
        Payload::TsI(ts) | Payload::TsR(ts) => ts
            .selectors
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        Payload::Sk(sk) => format!(
            "encrypted, {} bytes (IV, ciphertext, ICV), first inner payload {}",
            sk.body.len(),
            sk.next_payload
        ),
        Payload::Skf(f) => {
            let mut s = format!(
                "fragment {}/{}, {} bytes encrypted",
                f.fragment_number,
                f.total_fragments,
                f.body.len()
            );
            if f.next_payload != PayloadType::NoNextPayload {
                let _ = write!(s, ", first inner payload {}", f.next_payload);
            }
            s
        }
        Payload::Cp(cp) => {
            let attrs: Vec<_> = cp
                .attributes
                .iter()
                .map(|a| a.attribute_type.to_string())
                .collect();
            format!("{} {}", cp.cfg_type, attrs.join(" "))
        }
        Payload::Unknown(u) => format!(
            "{} bytes{}",
            u.body.len(),
            if u.critical {
                ", CRITICAL (receiver must answer UNSUPPORTED_CRITICAL_PAYLOAD)"
            } else {
                ""
            }
        ),
    }
}

/// The text form.
pub fn to_text(d: &Decoded) -> String {
    let h = &d.message.header;
    let response = h.flags.response();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {}, message id {}, {} bytes{}",
        h.exchange_type,
        if response { "response" } else { "request" },
        h.message_id,
        h.length,
        if d.non_esp_marker {
            " (after non-ESP marker)"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "  initiator SPI  {:016x}", h.initiator_spi);
    let _ = writeln!(s, "  responder SPI  {:016x}", h.responder_spi);
    let _ = writeln!(s, "  flags          {}", h.flags);
    let _ = writeln!(
        s,
        "payloads ({} bytes after the {HEADER_LEN}-byte header):",
        h.length as usize - HEADER_LEN
    );
    for p in &d.message.payloads {
        let _ = writeln!(
            s,
            "  {:<8} {}",
            type_name(p, Some(response)),
            payload_line(p)
        );
    }
    s
}

/// JSON for a decrypted chain: `{"first_payload": ..., "payloads": [...]}`.
pub fn chain_json(first: PayloadType, payloads: &[Payload]) -> Value {
    json!({
        "first_payload": first.to_string(),
        "payloads": payloads.iter().map(|p| payload_json(p, None)).collect::<Vec<_>>(),
    })
}

/// Text for a decrypted chain.
pub fn chain_text(first: PayloadType, payloads: &[Payload]) -> String {
    let mut s = format!(
        "decrypted payload chain starting with {first}, {} payloads:\n",
        payloads.len()
    );
    for p in payloads {
        let _ = writeln!(s, "  {:<8} {}", type_name(p, None), payload_line(p));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike::wire::{
        prepend_non_esp_marker, ExchangeType, Flags, Header, Nonce, Notify, NotifyType,
    };

    fn sample(initiator_spi: u64) -> Vec<u8> {
        Message::new(Header::new(
            ExchangeType::IkeSaInit,
            initiator_spi,
            0,
            0,
            Flags::INITIATOR,
        ))
        .with(Nonce(vec![1; 16]))
        .with(Notify::new(NotifyType::NatDetectionSourceIp).with_data(vec![2; 20]))
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn detects_the_non_esp_marker() {
        let plain = sample(0x1122334455667788);
        let d = decode(&plain).unwrap();
        assert!(!d.non_esp_marker);
        let d2 = decode(&prepend_non_esp_marker(&plain)).unwrap();
        assert!(d2.non_esp_marker);
        assert_eq!(d.message, d2.message);
        // An SPI that starts with four zero octets is not mistaken for a marker.
        let zero_spi = sample(0x0000_0000_5566_7788);
        assert!(!decode(&zero_spi).unwrap().non_esp_marker);
        assert!(
            decode(&prepend_non_esp_marker(&zero_spi))
                .unwrap()
                .non_esp_marker
        );
    }

    #[test]
    fn json_and_text_name_things() {
        let d = decode(&sample(1)).unwrap();
        let v = to_json(&d);
        assert_eq!(v["exchange"], "IKE_SA_INIT");
        assert_eq!(v["initiator_spi"], "0000000000000001");
        assert_eq!(v["flags"], json!(["I"]));
        assert_eq!(v["payloads"][0]["type"], "Ni");
        assert_eq!(v["payloads"][1]["type"], "N");
        assert_eq!(v["payloads"][1]["notify"], "NAT_DETECTION_SOURCE_IP");
        let t = to_text(&d);
        assert!(t.starts_with("IKE_SA_INIT request, message id 0"), "{t}");
        assert!(t.contains("NAT_DETECTION_SOURCE_IP"), "{t}");
    }

    #[test]
    fn distinguished_names_print_as_text() {
        // SEQUENCE { SET { SEQUENCE { OID 2.5.4.3 (CN), UTF8String "share" } } }
        let der = [
            0x30, 0x10, 0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x05, b's',
            b'h', b'a', b'r', b'e',
        ];
        let id = Identification::der_asn1_dn(der.to_vec());
        assert_eq!(id_text(&id), "ID_DER_ASN1_DN:CN=share");
        let bad = Identification::der_asn1_dn(vec![0x30, 0x05]);
        assert_eq!(id_text(&bad), "ID_DER_ASN1_DN:3005");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let b = sample(1);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err());
        }
    }
}
