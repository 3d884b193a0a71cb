//! The control protocol: one JSON object per line, one request and one response per
//! connection. Every message carries [`PROTOCOL_VERSION`] so a CLI and a daemon from
//! different releases fail with a clear message instead of misreading each other.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Bumped whenever a message changes incompatibly (2: `Up`, and status rows from real SAs).
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest line either side accepts; a status report for thousands of SAs fits easily.
pub const MAX_LINE: usize = 1 << 20;

/// What a client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Bring up an IKE SA and a CHILD_SA with a peer (or report the existing ones); answered
    /// with [`Response::Up`] once the CHILD_SA is installed in the datapath.
    Up {
        /// The peer's IKE address.
        peer: IpAddr,
        /// How to authenticate and what to protect.
        options: Box<UpOptions>,
    },
    /// Delete the IKE SA (and its CHILD_SAs) with one peer, or with every peer.
    Down {
        /// Which SAs.
        target: DownTarget,
    },
    /// Report the daemon, its datapath, its identity and every SA.
    Status,
}

/// The peers a `Down` request applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownTarget {
    /// One peer by address.
    Peer(IpAddr),
    /// Every peer.
    All,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The CHILD_SA with the peer is installed.
    Up(Box<UpSummary>),
    /// The SAs with these peers were deleted (empty for `Down{All}` with no peers).
    Down {
        /// Peers whose SAs were deleted.
        deleted: Vec<IpAddr>,
    },
    /// The answer to [`Request::Status`].
    Status(Box<StatusReport>),
    /// The request failed.
    Error(ErrorReply),
}

/// A failed request: a machine-readable kind and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, for scripts.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

/// Failure classes a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No SA exists with the named peer.
    UnknownPeer,
    /// The request line was not a request of this protocol version.
    BadRequest,
    /// The client and the daemon speak different protocol versions.
    VersionMismatch,
    /// The client's user may not control this daemon.
    PermissionDenied,
    /// The daemon is stopping and takes no more requests.
    ShuttingDown,
    /// The request's options are unusable (bad selector, unreadable key file, …).
    InvalidOptions,
    /// IKE with the peer failed (no answer, authentication, proposals, …).
    IkeFailed,
    /// The SAs were negotiated but the datapath could not install them.
    DatapathFailed,
}

/// How `up` authenticates and what it protects. Paths are read by the daemon (both run as
/// root on the same host), so no key material crosses the control socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpOptions {
    /// `--psk-file`: authenticate both ends with the pre-shared key in this file (0600).
    #[serde(default)]
    pub psk_file: Option<String>,
    /// `--cert`: our certificate chain (PEM, leaf first), with `key`.
    #[serde(default)]
    pub cert: Option<String>,
    /// `--key`: the certificate's private key (PKCS#8 PEM).
    #[serde(default)]
    pub key: Option<String>,
    /// `--ca`: root CA file(s) the peer's chain must lead to.
    #[serde(default)]
    pub ca: Vec<String>,
    /// `--local-id`: our IKE identity (default: the certificate subject, or our address).
    #[serde(default)]
    pub local_id: Option<String>,
    /// `--remote-id`: the identity the peer must prove (default: any the credentials allow).
    #[serde(default)]
    pub remote_id: Option<String>,
    /// `--selector`: `tcp/2049`, `udp`, `icmp` … (protocol and the peer's port); empty
    /// protects all traffic with the peer.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// `--mode`: `transport` (default) or `tunnel`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `--rekey-seconds`: rekey the IKE SA and CHILD_SA this often (default: the daemon's,
    /// else 3600 as IBM configures).
    #[serde(default)]
    pub rekey_seconds: Option<u64>,
    /// `--ike-rekey-seconds`: rekey the IKE SA on its own schedule instead (default:
    /// `rekey_seconds`), so a test can rekey a CHILD_SA well before any IKE SA rekey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_rekey_seconds: Option<u64>,
}

/// What `up` reports once the CHILD_SA is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpSummary {
    /// The peer's IKE address.
    pub peer: IpAddr,
    /// Our IKE address.
    pub local: IpAddr,
    /// Initiator IKE SPI, hex.
    pub ike_spi_i: String,
    /// Responder IKE SPI, hex.
    pub ike_spi_r: String,
    /// Inbound ESP SPI, hex.
    pub spi_in: String,
    /// Outbound ESP SPI, hex.
    pub spi_out: String,
    /// IKE SA algorithms (`aes256-sha384-prfsha384-ecp384`).
    pub ike_algorithms: String,
    /// CHILD_SA algorithm (`aes256gcm16`).
    pub esp_algorithm: String,
    /// `transport` or `tunnel`.
    pub mode: String,
    /// `udp 4500 -> 4500` when ESP is UDP-encapsulated, `none` otherwise.
    pub encap: String,
    /// The datapath holding the CHILD_SA.
    pub datapath: DatapathKind,
    /// The peer's authenticated identity.
    pub remote_id: String,
    /// Traffic selectors, as `local === remote`.
    pub selectors: String,
    /// Milliseconds from the request to the installed CHILD_SA (0 when it already existed).
    pub elapsed_ms: u64,
    /// The SAs already existed; nothing was negotiated.
    pub existing: bool,
}

/// A request being sent, with its version.
#[derive(Serialize)]
struct RequestOut<'a> {
    version: u32,
    request: &'a Request,
}

/// A request received: the body stays untyped until the version is known to match.
#[derive(Deserialize)]
struct RequestEnvelope {
    version: u32,
    request: serde_json::Value,
}

/// A response on the wire, with its version.
#[derive(Debug, Serialize, Deserialize)]
struct ResponseEnvelope {
    version: u32,
    response: Response,
}

/// Everything `ibm-ipsec status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon process.
    pub daemon: DaemonInfo,
    /// Which ESP datapath the daemon uses and why.
    pub datapath: DatapathInfo,
    /// The certificate the daemon authenticates with, when it has one.
    pub identity: Option<IdentityInfo>,
    /// The last failure to get or renew the certificate, while it is unresolved.
    #[serde(default)]
    pub identity_error: Option<String>,
    /// Where the certificate is requested from, when the daemon requests one itself.
    #[serde(default)]
    pub identity_service: Option<String>,
    /// One row per IKE SA (ONTAP's `security ipsec show-ikesa`).
    pub ike_sas: Vec<IkeSaStatus>,
    /// One row per CHILD_SA (ONTAP's `security ipsec show-ipsecsa`).
    pub child_sas: Vec<ChildSaStatus>,
    /// Peers whose SAs were lost: their traffic is held (never sent in clear) and the next
    /// packet to them, or `up`, negotiates new SAs.
    #[serde(default)]
    pub held_peers: Vec<IpAddr>,
}

/// The daemon process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Process id.
    pub pid: u32,
    /// Package version.
    pub version: String,
    /// Start time, seconds since the Unix epoch.
    pub started_unix: u64,
    /// The control socket it listens on.
    pub control: String,
    /// IKE listen addresses (`--listen`), empty for an initiator-only daemon.
    pub listen: Vec<String>,
}

/// The ESP datapath in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatapathInfo {
    /// The one in use.
    pub kind: DatapathKind,
    /// What `--datapath` asked for.
    pub requested: DatapathRequest,
    /// Why this one: the probe's verdict or the operator's choice.
    pub reason: String,
}

/// The ESP datapaths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatapathKind {
    /// Kernel XFRM SAs and policies.
    Kernel,
    /// ibm-ipsec's own TUN-based ESP.
    Userspace,
}

/// `--datapath auto|kernel|userspace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DatapathRequest {
    /// Kernel when the probe succeeds, userspace otherwise.
    Auto,
    /// Kernel only; fail when it is unusable.
    Kernel,
    /// Userspace only.
    Userspace,
}

/// The daemon's own certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// Leaf subject DN.
    pub subject: String,
    /// Leaf issuer DN.
    pub issuer: String,
    /// Leaf notAfter, seconds since the Unix epoch.
    pub not_after_unix: u64,
    /// Where it came from (file paths or the metadata URL).
    pub source: String,
    /// When it will be renewed (metadata identities only).
    #[serde(default)]
    pub renewal: Option<String>,
    /// The same renewal time, seconds since the Unix epoch.
    #[serde(default)]
    pub renewal_unix: Option<u64>,
}

/// One IKE SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeSaStatus {
    /// Peer address.
    pub peer: IpAddr,
    /// Local address.
    pub local: IpAddr,
    /// `connecting`, `established`, `rekeying`, `deleting`.
    pub state: String,
    /// Initiator SPI, hex.
    pub spi_i: String,
    /// Responder SPI, hex.
    pub spi_r: String,
    /// `aes256-sha384-ecp384` style suite name.
    pub algorithms: String,
    /// The peer's authenticated identity.
    pub remote_id: String,
    /// Next rekey, seconds since the Unix epoch.
    pub rekey_unix: Option<u64>,
    /// The notAfter of the certificate the peer authenticated with, seconds since the Unix
    /// epoch (`null` with a shared key).
    pub peer_cert_expiry_unix: Option<u64>,
    /// That certificate's subject DN (`C=US, O=…, CN=…`).
    #[serde(default)]
    pub peer_cert_subject: Option<String>,
    /// That certificate's issuer DN.
    #[serde(default)]
    pub peer_cert_issuer: Option<String>,
    /// That certificate's serial number, hex.
    #[serde(default)]
    pub peer_cert_serial: Option<String>,
    /// NAT detection found a NAT in front of this host: NAT-T keepalives go to the peer
    /// every `nat_keepalive_secs` when nothing else does.
    #[serde(default)]
    pub behind_nat: bool,
    /// The keepalive interval in use behind a NAT (`null`: none).
    #[serde(default)]
    pub nat_keepalive_secs: Option<u64>,
}

/// One CHILD_SA (both directions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaStatus {
    /// Peer address.
    pub peer: IpAddr,
    /// Inbound SPI, hex.
    pub spi_in: String,
    /// Outbound SPI, hex.
    pub spi_out: String,
    /// `transport` or `tunnel`.
    pub mode: String,
    /// `aes256gcm16` style transform name.
    pub algorithm: String,
    /// Traffic selectors, as `local === remote`.
    pub selectors: String,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Next rekey, seconds since the Unix epoch.
    pub rekey_unix: Option<u64>,
}

/// One request line (with its trailing newline).
pub fn encode_request(request: &Request) -> Vec<u8> {
    encode(&RequestOut {
        version: PROTOCOL_VERSION,
        request,
    })
}

/// One response line (with its trailing newline).
pub fn encode_response(response: &Response) -> Vec<u8> {
    encode(&ResponseEnvelope {
        version: PROTOCOL_VERSION,
        response: response.clone(),
    })
}

fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no I/O.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Parses a request line. The version is checked before the body, so a newer client's
/// unknown request is reported as a version mismatch rather than as garbage.
pub fn decode_request(line: &[u8]) -> Result<Request, ErrorReply> {
    let envelope: RequestEnvelope = serde_json::from_slice(line).map_err(|e| ErrorReply {
        kind: ErrorKind::BadRequest,
        message: format!("not a control request: {e}"),
    })?;
    if envelope.version != PROTOCOL_VERSION {
        return Err(ErrorReply {
            kind: ErrorKind::VersionMismatch,
            message: format!(
                "client speaks control protocol version {}, this daemon speaks {PROTOCOL_VERSION}; \
                 use the ibm-ipsec binary of the same release as the daemon",
                envelope.version
            ),
        });
    }
    serde_json::from_value(envelope.request).map_err(|e| ErrorReply {
        kind: ErrorKind::BadRequest,
        message: format!("unknown or malformed request: {e}"),
    })
}

/// Parses a response line.
pub fn decode_response(line: &[u8]) -> Result<Response, Error> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let version: Version = serde_json::from_slice(line)
        .map_err(|e| Error::Protocol(format!("daemon sent a line that is not JSON: {e}")))?;
    if version.version != PROTOCOL_VERSION {
        return Err(Error::Protocol(format!(
            "daemon speaks control protocol version {}, this client speaks {PROTOCOL_VERSION}; \
             restart the daemon from this release",
            version.version
        )));
    }
    let envelope: ResponseEnvelope = serde_json::from_slice(line)
        .map_err(|e| Error::Protocol(format!("malformed response from the daemon: {e}")))?;
    Ok(envelope.response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            daemon: DaemonInfo {
                pid: 42,
                version: "0.1.0".into(),
                started_unix: 1_800_000_000,
                control: "/run/ibm-ipsec/control.sock".into(),
                listen: vec!["10.0.0.1".into()],
            },
            datapath: DatapathInfo {
                kind: DatapathKind::Userspace,
                requested: DatapathRequest::Auto,
                reason: "kernel has no ESP support".into(),
            },
            identity: None,
            identity_error: Some("metadata unreachable".into()),
            identity_service: Some("http://169.254.169.254".into()),
            ike_sas: vec![],
            child_sas: vec![ChildSaStatus {
                peer: "10.0.0.2".parse().unwrap(),
                spi_in: "c0ffee01".into(),
                spi_out: "c0ffee02".into(),
                mode: "transport".into(),
                algorithm: "aes256gcm16".into(),
                selectors: "10.0.0.1/32 === 10.0.0.2/32".into(),
                bytes_in: 1,
                bytes_out: 2,
                packets_in: 3,
                packets_out: 4,
                rekey_unix: Some(1_800_003_600),
            }],
            held_peers: vec!["10.0.0.3".parse().unwrap()],
        }
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Status,
            Request::Up {
                peer: "10.1.2.3".parse().unwrap(),
                options: Box::new(UpOptions {
                    psk_file: Some("/etc/ibm-ipsec/psk".into()),
                    selectors: vec!["tcp/2049".into()],
                    ..UpOptions::default()
                }),
            },
            Request::Down {
                target: DownTarget::All,
            },
            Request::Down {
                target: DownTarget::Peer("10.1.2.3".parse().unwrap()),
            },
            Request::Down {
                target: DownTarget::Peer("fd00::1".parse().unwrap()),
            },
        ] {
            let line = encode_request(&request);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(decode_request(&line).unwrap(), request);
        }
    }

    #[test]
    fn request_wire_form_is_stable() {
        let line = encode_request(&Request::Down {
            target: DownTarget::Peer("10.1.2.3".parse().unwrap()),
        });
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"version\":2,\"request\":{\"type\":\"down\",\"target\":{\"peer\":\"10.1.2.3\"}}}\n"
        );
        assert_eq!(
            decode_request(b"{\"version\":2,\"request\":{\"type\":\"status\"}}").unwrap(),
            Request::Status
        );
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            Response::Status(Box::new(report())),
            Response::Up(Box::new(UpSummary {
                peer: "10.0.0.2".parse().unwrap(),
                local: "10.0.0.1".parse().unwrap(),
                ike_spi_i: "0102030405060708".into(),
                ike_spi_r: "1112131415161718".into(),
                spi_in: "c0ffee01".into(),
                spi_out: "c0ffee02".into(),
                ike_algorithms: "aes256-sha384-prfsha384-ecp384".into(),
                esp_algorithm: "aes256gcm16".into(),
                mode: "transport".into(),
                encap: "udp 4500 -> 4500".into(),
                datapath: DatapathKind::Userspace,
                remote_id: "ip:10.0.0.2".into(),
                selectors: "10.0.0.1/32 === 10.0.0.2/32".into(),
                elapsed_ms: 12,
                existing: false,
            })),
            Response::Down {
                deleted: vec!["10.0.0.2".parse().unwrap()],
            },
            Response::Error(ErrorReply {
                kind: ErrorKind::UnknownPeer,
                message: "no IKE SA with 10.9.9.9".into(),
            }),
        ] {
            let line = encode_response(&response);
            assert_eq!(decode_response(&line).unwrap(), response);
        }
    }

    #[test]
    fn up_options_default_when_absent() {
        let line =
            b"{\"version\":2,\"request\":{\"type\":\"up\",\"peer\":\"10.0.0.9\",\"options\":{}}}";
        assert_eq!(
            decode_request(line).unwrap(),
            Request::Up {
                peer: "10.0.0.9".parse().unwrap(),
                options: Box::default()
            }
        );
    }

    #[test]
    fn garbage_and_unknown_requests_are_bad_requests() {
        for line in [
            &b"hello"[..],
            b"",
            b"{}",
            b"{\"version\":2}",
            b"{\"version\":2,\"request\":{\"type\":\"reboot\"}}",
            b"{\"version\":2,\"request\":{\"type\":\"down\",\"target\":{\"peer\":\"not-an-ip\"}}}",
        ] {
            let err = decode_request(line).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRequest, "{line:?}: {err:?}");
        }
    }

    #[test]
    fn other_versions_are_named() {
        let err =
            decode_request(b"{\"version\":1,\"request\":{\"type\":\"teleport\"}}").unwrap_err();
        assert_eq!(err.kind, ErrorKind::VersionMismatch);
        assert!(err.message.contains("version 1"), "{}", err.message);

        let err = decode_response(b"{\"version\":7,\"response\":{}}").unwrap_err();
        assert!(err.to_string().contains("version 7"), "{err}");
        assert!(decode_response(b"{\"version\":2,\"response\":{\"type\":\"x\"}}").is_err());
        assert!(decode_response(b"\xff").is_err());
    }
}
