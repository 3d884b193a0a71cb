#!/usr/bin/env bash
# iperf3 throughput (one TCP stream, RUNS × SECONDS) between two network namespaces over
#   1. plain veth,
#   2. our userspace ESP datapath, transport mode, ESP in UDP 4500 (AES-256-GCM),
#   3. the same with raw ESP (IP protocol 50),
# printing each median and its ratio to strongSwan's userspace path (kernel-libipsec, tunnel
# mode). strongSwan's figure is taken from STRONGSWAN_MBITS (default: the 470 Mbit/s middle of
# the 449–497 range measured on this project's machines, see shared/strongswan-lab.md);
# `cargo run -p ibm-ipsec-tests --example strongswan_reference` measures it afresh.
#
#   sudo benches/esp_userspace_iperf.sh [RUNS] [SECONDS]
#
# Needs root, iproute2 and iperf3 (scripts/install-deps). Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
STRONGSWAN_MBITS=${STRONGSWAN_MBITS:-470}
A=espbenchA-$$
B=espbenchB-$$
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ "$(id -u)" != 0 ]; then
    echo "esp_userspace_iperf: needs root (network namespaces, TUN)" >&2
    exit 1
fi

cargo build --quiet --release -p esp --example userspace_peer
BIN=$CARGO_TARGET_DIR/release/examples/userspace_peer

cleanup() {
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip -n "$A" link add va type veth peer name vb netns "$B"
ip -n "$A" addr add 10.77.0.1/24 dev va
ip -n "$B" addr add 10.77.0.2/24 dev vb
ip -n "$A" link set va up
ip -n "$B" link set vb up

# One iperf3 run; prints the receiver's Mbit/s.
run_iperf() {
    ip netns exec "$B" iperf3 -s -1 -B 10.77.0.2 >/dev/null 2>&1 &
    local server=$!
    sleep 0.5
    ip netns exec "$A" iperf3 -c 10.77.0.2 -t "$SECONDS_PER_RUN" -J |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))'
    wait "$server" || true
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

measure() {
    local label=$1
    local values=()
    for _ in $(seq "$RUNS"); do values+=("$(run_iperf)"); done
    local med
    med=$(printf '%s\n' "${values[@]}" | median)
    printf '%-34s runs %-28s median %6s Mbit/s  (%s× strongSwan userspace)\n' \
        "$label" "${values[*]}" "$med" \
        "$(python3 -c "print(round($med / $STRONGSWAN_MBITS, 1))")"
}

# Runs our datapath in both namespaces while the given measurement runs. Each side's stdin is
# a pipe we hold; closing it makes the process shut down cleanly (TUN, rules, routes).
with_datapath() {
    local mode=$1 label=$2
    exec {fa}> >(ip netns exec "$A" "$BIN" 10.77.0.1 10.77.0.2 a "$mode" 2>/dev/null)
    local pa=$!
    exec {fb}> >(ip netns exec "$B" "$BIN" 10.77.0.2 10.77.0.1 b "$mode" 2>/dev/null)
    local pb=$!
    sleep 1
    measure "$label"
    exec {fa}>&- {fb}>&-
    wait "$pa" "$pb" 2>/dev/null || true
}

echo "iperf3, 1 TCP stream, $RUNS × ${SECONDS_PER_RUN} s, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
measure "plain veth"
with_datapath udp "userspace ESP, transport, UDP 4500"
with_datapath raw "userspace ESP, transport, raw ESP"
echo "strongSwan kernel-libipsec (tunnel, ESP in UDP): $STRONGSWAN_MBITS Mbit/s reference"
