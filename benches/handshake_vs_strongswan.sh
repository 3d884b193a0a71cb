#!/usr/bin/env bash
# IKE handshake benchmark, ours vs strongSwan 5.9.8, side by side in one run
# (tests/examples/handshake_vs_strongswan.rs on the lab harness in tests/src):
#   - start → CHILD_SA installed: `ibm-ipsec up` vs `swanctl --initiate`, same charon responder;
#   - IKE_SA_INIT → last IKE_AUTH packet on the wire (tcpdump), both directions;
#   - responder CPU per IKE_SA + CHILD_SA set-up and tear-down (serial loop, /proc utime+stime),
#     ours (`ibm-ipsec daemon --listen`) vs charon, driven by the same charon initiator;
#   - responder resident memory with 1 SA up and after SETUPS set-ups.
# RSA-4096 chain, metadata-style client certificate, aes256-sha384-ecp384, encap = yes,
# aes256gcm16, tunnel mode (strongSwan's kernel-libipsec refuses transport).
#
#   sudo benches/handshake_vs_strongswan.sh [RUNS=7] [CPU_SECONDS=30] [SETUPS=1000] [SIDES=both]
#
# SIDES=strongswan measures strongSwan alone. Needs root, iproute2, tcpdump, openssl and
# strongSwan (scripts/install-deps). Leaves nothing behind (the lab removes its namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "handshake_vs_strongswan: needs root (network namespaces)" >&2
    exit 1
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --bin ibm-ipsec
cargo build --quiet --release -p ibm-ipsec-tests --example handshake_vs_strongswan
exec "$CARGO_TARGET_DIR/release/examples/handshake_vs_strongswan" "${1:-7}" "${2:-30}" "${3:-1000}" "${4:-both}"
