#!/usr/bin/env bash
# Captures real IKEv2 exchanges between two strongSwan charons in network namespaces and writes
# them as test fixtures: one raw UDP payload per IKE message plus the keys charon derived.
#
# Usage (root):  tests/captures/capture.sh [OUT_DIR]      default OUT_DIR: ike/tests/data/strongswan
#        KEEP=1 tests/captures/capture.sh   keeps the work directory (configs, logs, pcaps)
#        ONLY=psk tests/captures/capture.sh capture one scenario only (ONLY=cert-… also
#                                           replaces pki/, which the other cert-… must match)
#
# Needs: strongSwan 5.9.x charon + swanctl with the plugins named in `charon_conf`, tcpdump,
# openssl, iproute2, python3 (scripts/install-deps installs them). The namespaces, addresses and
# processes it creates are its own (prefix "ibmcap"); it removes them on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/ike/tests/data/strongswan}
charon=/usr/lib/ipsec/charon

if [ "$(id -u)" != 0 ]; then
    echo "capture.sh: needs root (creates network namespaces)" >&2
    exit 1
fi
for tool in "$charon" swanctl tcpdump openssl ip python3; do
    command -v "$tool" >/dev/null || { echo "capture.sh: $tool not found (run scripts/install-deps)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/ibm-ipsec-capture.XXXXXX)
tag=ibmcap$$
ns_i=$tag-i
ns_r=$tag-r
# Addresses exist only on the veth pair between our two namespaces.
ip_i=10.213.7.1
ip_r=10.213.7.2
psk_secret="ibm-ipsec capture pre-shared key"

log() { printf 'capture: %s\n' "$*" >&2; }

stop_pid() { # stop a process we started, by its recorded pid
    local f=$1 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    rm -f "$f"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

teardown() {
    local d
    for d in "$work"/*/; do
        [ -d "$d" ] || continue
        stop_pid "$d/tcpdump.pid"
        stop_pid "$d/i/charon.pid"
        stop_pid "$d/r/charon.pid"
    done
    ip netns del "$ns_i" 2>/dev/null || true
    ip netns del "$ns_r" 2>/dev/null || true
}
cleanup() {
    teardown
    if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# ---- PKI ------------------------------------------------------------------------------------
log "generating RSA-4096 test PKI"
"$here/certs.sh" "$work/pki"

# ---- one charon per namespace (see shared/strongswan-lab.md) ---------------------------------
charon_conf() { # DIR
    cat >"$1/strongswan.conf" <<EOF
charon {
    load_modular = no
    load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey kdf gcm hmac aes sha1 sha2 curve25519 kernel-libipsec kernel-netlink socket-default vici
    # retransmits would add messages to the capture; the link is lossless
    retransmit_timeout = 10
    filelog {
        lab {
            path = $1/charon.log
            time_format = %H:%M:%S
            time_add_ms = yes
            default = 1
            ike = 4
            enc = 4
            cfg = 2
            chd = 4
            flush_line = yes
        }
    }
    plugins {
        vici {
            socket = unix://$1/charon.vici
        }
        kernel-libipsec {
            allow_peer_ts = yes
        }
        kernel-netlink {
            fwmark = !0x42
        }
        socket-default {
            fwmark = 0x42
        }
    }
}
swanctl {
    socket = unix://$1/charon.vici
}
EOF
}

start_charon() { # NS DIR
    local ns=$1 dir=$2
    mkdir -p "$dir/run"
    charon_conf "$dir"
    # charon always writes /var/run/charon.pid: give it a private /run
    ip netns exec "$ns" unshare -m sh -c \
        "mount --bind '$dir/run' /run && STRONGSWAN_CONF='$dir/strongswan.conf' exec $charon" \
        >"$dir/charon.stdout" 2>&1 &
    echo $! >"$dir/charon.pid"
    for _ in $(seq 100); do
        [ -S "$dir/charon.vici" ] && return 0
        sleep 0.05
    done
    log "charon in $ns did not open its VICI socket; log:"
    cat "$dir/charon.stdout" "$dir/charon.log" >&2 || true
    return 1
}

sw() { # DIR swanctl-args...
    local dir=$1
    shift
    STRONGSWAN_CONF="$dir/strongswan.conf" SWANCTL_DIR="$dir/swanctl" \
        swanctl "$@" --uri "unix://$dir/charon.vici"
}

# swanctl tree with credentials. ROLE: i (initiator, client cert) or r (responder, share cert)
swanctl_dir() { # DIR ROLE
    local d=$1/swanctl leaf
    for sub in x509 x509ca x509ocsp x509aa x509ac x509crl pubkey rsa ecdsa bliss pkcs8 pkcs12 private; do mkdir -p "$d/$sub"; done
    if [ "$2" = i ]; then leaf=client; else leaf=share; fi
    cp "$work/pki/$leaf.crt" "$d/x509/"
    cp "$work/pki/$leaf.key" "$d/private/"
    cp "$work/pki/root.crt" "$work/pki/int.crt" "$d/x509ca/"
}

# connection NAME in DIR: conn_conf DIR ROLE AUTH PROPOSAL [extra conn options...]
# (an option written "i:OPTION" or "r:OPTION" is given to that side only; PROPOSAL "-" writes
# no proposals line, for per-side proposals; CHILD_MODE and PSK_I override the child's mode
# and the initiator's pre-shared key)
conn_conf() {
    local dir=$1 role=$2 auth=$3 proposal=$4
    shift 4
    local local_ip remote_ip local_id remote_id auth_block
    if [ "$role" = i ]; then
        local_ip=$ip_i remote_ip=$ip_r
    else
        local_ip=$ip_r remote_ip=$ip_i
    fi
    if [ "$auth" = psk ]; then
        if [ "$role" = i ]; then
            local_id=client.ibm-ipsec.test remote_id=share.ibm-ipsec.test
        else
            local_id=share.ibm-ipsec.test remote_id=client.ibm-ipsec.test
        fi
        auth_block="local { auth = psk
                id = $local_id }
            remote { auth = psk
                id = $remote_id }"
    else
        # like the IBM mount helper: local id = the certificate's subject DN, remote %any
        local leaf
        if [ "$role" = i ]; then leaf=client.crt; else leaf=share.crt; fi
        auth_block="local { auth = pubkey
                certs = $leaf }
            remote { auth = pubkey
                id = %any }"
    fi
    {
        echo "connections {"
        echo "    lab {"
        echo "        version = 2"
        echo "        local_addrs = $local_ip"
        echo "        remote_addrs = $remote_ip"
        if [ "$proposal" != - ]; then echo "        proposals = $proposal"; fi
        echo "        encap = yes"
        echo "        fragmentation = yes"
        for o in "$@"; do
            case $o in
                i:*) if [ "$role" = i ]; then echo "        ${o#i:}"; fi ;;
                r:*) if [ "$role" = r ]; then echo "        ${o#r:}"; fi ;;
                *) echo "        $o" ;;
            esac
        done
        echo "        $auth_block"
        echo "        children {"
        echo "            lab {"
        echo "                mode = ${CHILD_MODE:-tunnel}"
        echo "                local_ts = $local_ip/32"
        echo "                remote_ts = $remote_ip/32"
        echo "                esp_proposals = aes256gcm16"
        echo "            }"
        echo "        }"
        echo "    }"
        echo "}"
        if [ "$auth" = psk ]; then
            echo "secrets {"
            echo "    ike-lab {"
            echo "        id-a = client.ibm-ipsec.test"
            echo "        id-b = share.ibm-ipsec.test"
            if [ "$role" = i ]; then
                echo "        secret = \"${PSK_I:-$psk_secret}\""
            else
                echo "        secret = \"$psk_secret\""
            fi
            echo "    }"
            echo "}"
        fi
    } >"$dir/swanctl/swanctl.conf"
}

# ---- one scenario: fresh namespaces, charons, tcpdump; then the caller's steps ---------------
setup() { # SCENARIO AUTH PROPOSAL [extra conn options...]
    local sc=$1 auth=$2 proposal=$3
    shift 3
    S=$work/$sc
    mkdir -p "$S/i" "$S/r"
    ip netns add "$ns_i"
    ip netns add "$ns_r"
    ip -n "$ns_i" link add v0 type veth peer name v0 netns "$ns_r"
    ip -n "$ns_i" addr add "$ip_i/24" dev v0
    ip -n "$ns_r" addr add "$ip_r/24" dev v0
    for ns in "$ns_i" "$ns_r"; do
        ip -n "$ns" link set lo up
        ip -n "$ns" link set v0 up
    done
    ip netns exec "$ns_r" tcpdump -i v0 --immediate-mode -U -s 0 -w "$S/ike.pcap" udp port 500 or udp port 4500 \
        2>"$S/tcpdump.log" &
    echo $! >"$S/tcpdump.pid"
    for role in i r; do
        swanctl_dir "$S/$role" "$role"
        conn_conf "$S/$role" "$role" "$auth" "$proposal" "$@"
    done
    start_charon "$ns_i" "$S/i"
    start_charon "$ns_r" "$S/r"
    sw "$S/i" --load-all --noprompt >"$S/i/load.log"
    sw "$S/r" --load-all --noprompt >"$S/r/load.log"
    for _ in $(seq 50); do grep -q "listening on" "$S/tcpdump.log" && break; sleep 0.05; done
}

finish() { # SCENARIO DESCRIPTION [PSK]
    sleep 0.3 # let the last packets reach tcpdump
    stop_pid "$S/tcpdump.pid"
    stop_pid "$S/i/charon.pid"
    stop_pid "$S/r/charon.pid"
    ip netns del "$ns_i"
    ip netns del "$ns_r"
    local psk=()
    if [ -n "${3:-}" ]; then psk=(--psk "$3"); fi
    python3 "$here/extract.py" --pcap "$S/ike.pcap" --initiator-log "$S/i/charon.log" \
        --responder-log "$S/r/charon.log" --initiator-ip "$ip_i" --out "$out/$1" --title "$2" \
        "${psk[@]}"
    log "$1: $(find "$out/$1" -name '*.bin' | wc -l) messages"
}

want() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }

mkdir -p "$out"

if want cert-ecp384; then
    log "scenario cert-ecp384"
    setup cert-ecp384 cert aes256-sha384-ecp384
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish cert-ecp384 "RSA-4096 certificates, aes256-sha384-ecp384 (IBM default), encap, fragmented IKE_AUTH, IKE_SA DELETE"
fi

if want cert-x25519-gcm; then
    log "scenario cert-x25519-gcm"
    setup cert-x25519-gcm cert aes256gcm16-prfsha256-x25519
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish cert-x25519-gcm "RSA-4096 certificates, aes256gcm16-prfsha256-x25519, encap, fragmented IKE_AUTH, IKE_SA DELETE"
fi

if want psk; then
    log "scenario psk"
    setup psk psk aes256-sha384-ecp384
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish psk "PSK authentication, aes256-sha384-ecp384, encap, IKE_SA DELETE" "$psk_secret"
fi

if want informational; then
    log "scenario informational"
    setup informational psk aes256-sha384-ecp384 "i:dpd_delay = 1s"
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    # an idle IKE SA with dpd_delay = 1s sends an empty INFORMATIONAL (liveness check)
    for _ in $(seq 60); do grep -q "INFORMATIONAL request" "$S/i/charon.log" && break; sleep 0.1; done
    sleep 0.3
    sw "$S/i" --terminate --child lab --timeout 10 >"$S/terminate-child.log"
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate-ike.log"
    finish informational "PSK, aes256-sha384-ecp384, encap: DPD liveness, CHILD_SA DELETE, IKE_SA DELETE" "$psk_secret"
fi

if want rekey; then
    log "scenario rekey"
    setup rekey psk aes256-sha384-ecp384
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    sw "$S/i" --rekey --child lab >"$S/rekey-child.log"
    for _ in $(seq 50); do [ "$(grep -c 'CREATE_CHILD_SA response' "$S/i/charon.log")" -ge 1 ] && break; sleep 0.1; done
    sw "$S/i" --rekey --ike lab >"$S/rekey-ike.log"
    for _ in $(seq 50); do [ "$(grep -c 'CREATE_CHILD_SA response' "$S/i/charon.log")" -ge 2 ] && break; sleep 0.1; done
    # the old IKE SA is deleted after the rekey; then delete the new one
    sleep 0.3
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish rekey "PSK, aes256-sha384-ecp384, encap: CHILD_SA rekey, IKE_SA rekey (CREATE_CHILD_SA), IKE_SA DELETE" "$psk_secret"
fi

if want responder-rekey; then
    log "scenario responder-rekey"
    setup responder-rekey psk aes256-sha384-ecp384
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    # the original responder starts every exchange from here on (Initiator flag clear)
    sw "$S/r" --rekey --child lab >"$S/rekey-child.log"
    for _ in $(seq 50); do [ "$(grep -c 'CREATE_CHILD_SA response' "$S/r/charon.log")" -ge 1 ] && break; sleep 0.1; done
    sw "$S/r" --rekey --ike lab >"$S/rekey-ike.log"
    for _ in $(seq 50); do [ "$(grep -c 'CREATE_CHILD_SA response' "$S/r/charon.log")" -ge 2 ] && break; sleep 0.1; done
    sleep 0.3
    sw "$S/r" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish responder-rekey "PSK, aes256-sha384-ecp384, encap: the responder rekeys the CHILD_SA, rekeys the IKE_SA and deletes it" "$psk_secret"
fi

# Opt-in (ONLY=invalid-ke): its first IKE_SA_INIT pair is not the one that creates the SA,
# which the codec's fixture tests do not expect yet.
if [ "${ONLY:-}" = invalid-ke ]; then
    log "scenario invalid-ke"
    # the initiator guesses x25519 for its KE; the responder accepts only ECP-384
    setup invalid-ke psk - "i:proposals = aes256-sha384-x25519-ecp384" "r:proposals = aes256-sha384-ecp384"
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish invalid-ke "PSK, encap: INVALID_KE_PAYLOAD (x25519 guessed, ECP-384 required), retry with ECP-384, IKE_SA DELETE" "$psk_secret"
fi

if want auth-failed; then
    log "scenario auth-failed"
    setup auth-failed psk aes256-sha384-ecp384
    PSK_I="not the responder's key" conn_conf "$S/i" i psk aes256-sha384-ecp384
    sw "$S/i" --load-all --noprompt --clear >"$S/i/load.log"
    if sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log" 2>&1; then
        log "auth-failed: initiate unexpectedly succeeded"
        exit 1
    fi
    finish auth-failed "PSK mismatch: the responder answers IKE_AUTH with AUTHENTICATION_FAILED" "$psk_secret"
fi

if want transport-refused; then
    log "scenario transport-refused"
    CHILD_MODE=transport setup transport-refused psk aes256-sha384-ecp384
    # kernel-libipsec cannot do transport mode: the IKE SA comes up without the CHILD_SA
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log" 2>&1 || true
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log" 2>&1 || true
    finish transport-refused "PSK, encap, transport mode requested (USE_TRANSPORT_MODE); the responder's kernel-libipsec refuses the CHILD_SA" "$psk_secret"
fi

if want psk-modp2048; then
    log "scenario psk-modp2048"
    setup psk-modp2048 psk aes128-sha256-modp2048
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish psk-modp2048 "PSK, aes128-sha256-modp2048 (MODP-2048, HMAC-SHA2-256-128), encap, IKE_SA DELETE" "$psk_secret"
fi

if want psk-ecp256-gcm; then
    log "scenario psk-ecp256-gcm"
    setup psk-ecp256-gcm psk aes128gcm16-prfsha256-ecp256
    sw "$S/i" --initiate --child lab --timeout 10 >"$S/initiate.log"
    sw "$S/i" --terminate --ike lab --timeout 10 >"$S/terminate.log"
    finish psk-ecp256-gcm "PSK, aes128gcm16-prfsha256-ecp256, encap, IKE_SA DELETE" "$psk_secret"
fi

# public certificates of the PKI, so AUTH signatures and chains in the captures can be checked
# (only when this run captured certificate scenarios, or they would no longer match)
if want cert-ecp384 || want cert-x25519-gcm; then
    mkdir -p "$out/pki"
    for c in root int share client; do cp "$work/pki/$c.crt" "$out/pki/$c.pem"; done
fi

"$here/readme.sh" "$out" >"$out/README.md"
log "fixtures written to $out"
