//! UDP encapsulation of ESP for NAT traversal (RFC 3948).
//!
//! On port 4500 three things share one socket: ESP packets (first four bytes are the SPI,
//! never zero), IKE messages behind a four-byte zero non-ESP marker, and one-byte NAT
//! keepalives (0xFF).

use crate::header::ESP_HEADER_LEN;
use crate::{Error, Result};

/// The IKE/ESP NAT-T port (RFC 3948 §1, RFC 7296 §2.23).
pub const NAT_T_PORT: u16 = 4500;
/// Prefix of IKE messages on the NAT-T port (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The NAT keepalive datagram payload (RFC 3948 §2.3).
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;

/// What a datagram received on the NAT-T port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulated<'a> {
    /// An ESP packet, from the SPI on.
    Esp(&'a [u8]),
    /// An IKE message, with the non-ESP marker removed.
    Ike(&'a [u8]),
    /// A NAT keepalive; drop it.
    Keepalive,
}

/// Tells ESP, IKE and keepalives apart in a UDP payload received on port 4500.
pub fn classify(payload: &[u8]) -> Result<Encapsulated<'_>> {
    match payload {
        [0xff] => Ok(Encapsulated::Keepalive),
        [0, 0, 0, 0, ike @ ..] => Ok(Encapsulated::Ike(ike)),
        esp if esp.len() >= ESP_HEADER_LEN => Ok(Encapsulated::Esp(esp)),
        _ => Err(Error::NotEncapsulatedEsp),
    }
}

/// Writes an IKE message with the non-ESP marker in front into `out`; returns the length.
pub fn frame_ike(ike: &[u8], out: &mut [u8]) -> Result<usize> {
    let needed = NON_ESP_MARKER.len() + ike.len();
    if out.len() < needed {
        return Err(Error::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    out[..4].copy_from_slice(&NON_ESP_MARKER);
    out[4..needed].copy_from_slice(ike);
    Ok(needed)
}

/// Writes a UDP header for `payload_len` bytes of ESP into `buf`, with a zero checksum: ESP
/// carries its own integrity check and RFC 3948 §2.1 lets IPv4 senders omit the UDP
/// checksum. (IPv6 needs a real checksum; the datapath sends through kernel UDP sockets,
/// which compute it.)
pub fn write_udp_header(
    buf: &mut [u8],
    src_port: u16,
    dst_port: u16,
    payload_len: usize,
) -> Result<()> {
    let available = buf.len();
    let h = buf.get_mut(..UDP_HEADER_LEN).ok_or(Error::BufferTooSmall {
        needed: UDP_HEADER_LEN,
        available,
    })?;
    let len = u16::try_from(UDP_HEADER_LEN + payload_len)
        .map_err(|_| Error::PayloadTooLarge(payload_len))?;
    h[0..2].copy_from_slice(&src_port.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6..8].copy_from_slice(&[0, 0]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(&[0xff]), Ok(Encapsulated::Keepalive));
        assert_eq!(
            classify(&[0, 0, 0, 0, 1, 2]),
            Ok(Encapsulated::Ike(&[1, 2]))
        );
        let esp = [0, 0, 0x10, 0, 0, 0, 0, 1];
        assert_eq!(classify(&esp), Ok(Encapsulated::Esp(&esp)));
        assert_eq!(classify(&[]), Err(Error::NotEncapsulatedEsp));
        assert_eq!(classify(&[0xfe]), Err(Error::NotEncapsulatedEsp));
        assert_eq!(classify(&[0, 0, 0]), Err(Error::NotEncapsulatedEsp));
        assert_eq!(classify(&[1, 2, 3, 4, 5]), Err(Error::NotEncapsulatedEsp));
        assert_eq!(
            classify(&[0xff, 0, 0, 0, 0, 0, 0, 0]),
            Ok(Encapsulated::Esp(&[0xff, 0, 0, 0, 0, 0, 0, 0]))
        );
    }

    #[test]
    fn framing() {
        let mut out = [0u8; 10];
        assert_eq!(frame_ike(b"ikev2!", &mut out), Ok(10));
        assert_eq!(classify(&out), Ok(Encapsulated::Ike(b"ikev2!")));
        assert!(frame_ike(b"ikev2!!", &mut out).is_err());
        let mut h = [0u8; 8];
        write_udp_header(&mut h, 4500, 4500, 100).unwrap();
        assert_eq!(h, [0x11, 0x94, 0x11, 0x94, 0, 108, 0, 0]);
        assert!(write_udp_header(&mut h, 1, 2, 70000).is_err());
    }
}
