//! NAT_DETECTION_SOURCE_IP / NAT_DETECTION_DESTINATION_IP notification data (RFC 7296 §2.23).

use std::net::IpAddr;

use ring::digest;

/// Length of the notification data: a SHA-1 digest.
pub const NAT_DETECTION_HASH_LEN: usize = 20;

/// `SHA-1(SPIi | SPIr | IP address | port)` for one end of the IKE_SA_INIT exchange. In the
/// request SPIr is zero (RFC 7296 §2.23). The address is 4 octets for IPv4, 16 for IPv6, and
/// port is in network order. SHA-1 is what the RFC fixes here; it only needs to be a checksum
/// that an on-path NAT cannot preserve, not collision-resistant.
pub fn nat_detection_hash(
    spi_i: u64,
    spi_r: u64,
    addr: IpAddr,
    port: u16,
) -> [u8; NAT_DETECTION_HASH_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&port.to_be_bytes());
    let mut out = [0u8; NAT_DETECTION_HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an independent computation (Python `hashlib.sha1`), IPv4 and IPv6.
    #[test]
    fn matches_independent_computation() {
        let v4 = nat_detection_hash(0x0102030405060708, 0, "192.0.2.1".parse().unwrap(), 500);
        assert_eq!(hex::encode(v4), "644b4575455bd6fcc1efe2be8162a9218e448e5f");
        let v6 = nat_detection_hash(
            0x0102030405060708,
            0x1112131415161718,
            "2001:db8::1".parse().unwrap(),
            4500,
        );
        assert_eq!(hex::encode(v6), "1ee24423bf8f59515e0265c6d0f08be3d038f7e5");
    }
}
