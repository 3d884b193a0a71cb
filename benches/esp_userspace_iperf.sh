#!/usr/bin/env bash
# iperf3 throughput (one TCP stream, RUNS × SECONDS each), all in the same run:
#   1. strongSwan 5.9.8's userspace path: two charon instances in namespaces, kernel-libipsec,
#      tunnel mode, ESP in UDP, AES-256-GCM (tests/examples/strongswan_iperf.rs, which uses the
#      lab harness in tests/src),
#   2. plain veth between two namespaces,
#   3. our userspace ESP datapath, transport mode, ESP in UDP 4500 (AES-256-GCM),
#   4. the same with raw ESP (IP protocol 50),
#   5. ours in tunnel mode, ESP in UDP 4500 (what strongSwan's path does),
# then prints the medians and the ratios (ours / strongSwan, ours / veth).
#
#   sudo benches/esp_userspace_iperf.sh [RUNS] [SECONDS]        (default 3 × 10 s)
#
# Needs root, iproute2, iperf3, nftables and strongSwan (scripts/install-deps). Leaves
# nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
A=espbenchA-$$
B=espbenchB-$$
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ "$(id -u)" != 0 ]; then
    echo "esp_userspace_iperf: needs root (network namespaces, TUN)" >&2
    exit 1
fi

cargo build --quiet --release -p esp --example userspace_peer
cargo build --quiet --release -p ibm-ipsec-tests --example strongswan_iperf
BIN=$CARGO_TARGET_DIR/release/examples/userspace_peer
SWAN=$CARGO_TARGET_DIR/release/examples/strongswan_iperf

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

# Prints one line for a set of runs and leaves the median in MED.
report() {
    local label=$1
    shift
    MED=$(printf '%s\n' "$@" | median)
    printf '%-44s runs %-22s median %6s Mbit/s\n' "$label" "$*" "$MED"
}

measure() {
    local label=$1
    local values=()
    for _ in $(seq "$RUNS"); do values+=("$(run_iperf)"); done
    report "$label" "${values[@]}"
}

# Runs our datapath in both namespaces while the given measurement runs. Each side's stdin is
# a pipe we hold; closing it makes the process shut down cleanly (TUN, rules, routes).
# MODE is `udp`, `raw` or `udp tunnel` (userspace_peer's options).
with_datapath() {
    local mode=$1 label=$2
    # shellcheck disable=SC2086 # MODE is a list of options
    exec {fa}> >(ip netns exec "$A" "$BIN" 10.77.0.1 10.77.0.2 a $mode 2>/dev/null)
    local pa=$!
    # shellcheck disable=SC2086
    exec {fb}> >(ip netns exec "$B" "$BIN" 10.77.0.2 10.77.0.1 b $mode 2>/dev/null)
    local pb=$!
    sleep 1
    measure "$label"
    exec {fa}>&- {fb}>&-
    wait "$pa" "$pb" 2>/dev/null || true
}

ratio() { python3 -c "print(round($1 / $2, 1))"; }
percent() { python3 -c "print(round(100 * $1 / $2, 1))"; }

echo "iperf3, 1 TCP stream, $RUNS × ${SECONDS_PER_RUN} s, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
mapfile -t swan < <("$SWAN" "$RUNS" "$SECONDS_PER_RUN")
if [ "${#swan[@]}" -ne "$RUNS" ]; then
    echo "esp_userspace_iperf: strongSwan reference run failed (got: ${swan[*]})" >&2
    exit 1
fi
report "strongSwan kernel-libipsec, tunnel, UDP 4500" "${swan[@]}"
SWAN_MED=$MED
measure "plain veth"
VETH_MED=$MED
with_datapath udp "ours, transport, ESP in UDP 4500"
UDP_MED=$MED
with_datapath raw "ours, transport, raw ESP (proto 50)"
RAW_MED=$MED
with_datapath "udp tunnel" "ours, tunnel, ESP in UDP 4500"
TUN_MED=$MED
echo "ours (UDP 4500) / strongSwan: $(ratio "$UDP_MED" "$SWAN_MED")×   ours (raw ESP) / strongSwan: $(ratio "$RAW_MED" "$SWAN_MED")×   ours (tunnel) / strongSwan: $(ratio "$TUN_MED" "$SWAN_MED")×"
echo "share of plain veth: ours (UDP 4500) $(percent "$UDP_MED" "$VETH_MED") %, strongSwan $(percent "$SWAN_MED" "$VETH_MED") %"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
