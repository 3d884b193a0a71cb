//! NAT detection (RFC 7296 §2.23): SHA-1 over SPIs, address and port.

use std::net::{IpAddr, SocketAddr};

use ring::digest;

/// `SHA-1(SPIi | SPIr | IP | Port)` as carried in NAT_DETECTION_*_IP notifies.
pub(super) fn hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> [u8; 20] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_input() {
        let a: SocketAddr = "10.0.0.1:500".parse().unwrap();
        let h = hash(1, 2, a);
        assert_ne!(h, hash(1, 3, a));
        assert_ne!(h, hash(1, 2, "10.0.0.1:4500".parse().unwrap()));
        assert_ne!(h, hash(1, 2, "10.0.0.2:500".parse().unwrap()));
        assert_eq!(h, hash(1, 2, a));
    }
}
