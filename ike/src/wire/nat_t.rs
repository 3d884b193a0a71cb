//! Telling IKE from ESP on UDP port 4500 (RFC 3948 §2, RFC 7296 §2.23).
//!
//! IKE messages on port 4500 are prefixed with four zero octets (the non-ESP marker) where an
//! ESP packet has its non-zero SPI; a lone 0xFF octet is a NAT-keepalive.

use super::error::{Error, Result};

/// The non-ESP marker.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What arrived on a UDP-encapsulation socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// An IKE message, marker removed.
    Ike(&'a [u8]),
    /// An ESP packet (starting with its SPI).
    Esp(&'a [u8]),
    /// A NAT-keepalive (RFC 3948 §2.3): ignore.
    Keepalive,
}

/// Classifies a datagram received on port 4500.
pub fn classify_udp4500(datagram: &[u8]) -> Result<Udp4500<'_>> {
    if datagram == [0xff] {
        return Ok(Udp4500::Keepalive);
    }
    match strip_non_esp_marker(datagram) {
        Some(ike) => Ok(Udp4500::Ike(ike)),
        None if datagram.len() >= 4 => Ok(Udp4500::Esp(datagram)),
        None => Err(Error::Truncated {
            what: "UDP-encapsulated packet",
            need: 4,
            have: datagram.len(),
        }),
    }
}

/// The IKE message after a leading non-ESP marker, or `None` if there is none.
pub fn strip_non_esp_marker(datagram: &[u8]) -> Option<&[u8]> {
    datagram.strip_prefix(&NON_ESP_MARKER[..])
}

/// The datagram to send on port 4500 for an IKE message.
pub fn prepend_non_esp_marker(message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(message.len() + NON_ESP_MARKER.len());
    v.extend_from_slice(&NON_ESP_MARKER);
    v.extend_from_slice(message);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify_udp4500(&[0xff]).unwrap(), Udp4500::Keepalive);
        assert_eq!(
            classify_udp4500(&[0, 0, 0, 0, 9]).unwrap(),
            Udp4500::Ike(&[9])
        );
        assert_eq!(
            classify_udp4500(&[0, 0, 1, 0, 9]).unwrap(),
            Udp4500::Esp(&[0, 0, 1, 0, 9])
        );
        assert!(classify_udp4500(&[1, 2]).is_err());
        assert_eq!(
            strip_non_esp_marker(&prepend_non_esp_marker(&[1, 2])),
            Some(&[1u8, 2][..])
        );
    }
}
