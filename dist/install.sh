#!/usr/bin/env bash
# Installs ibm-ipsec on this host (as root): the binary as /usr/sbin/ibm-ipsec, the mount
# helpers /sbin/mount.ibmshare and /sbin/umount.ibmshare (symlinks to it: the binary acts on
# the name it is run as; mount(8) looks for helpers in /sbin), and the systemd unit as
# /etc/systemd/system/ibm-ipsec.service. Builds a release binary first unless one is given
# with --binary PATH. Does not start or enable the service; it prints how.
#
#   sudo dist/install.sh                       # build with cargo, then install
#   sudo dist/install.sh --binary ./ibm-ipsec  # install a prebuilt binary
#   sudo dist/install.sh --prefix /tmp/stage   # install under a staging root
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
root=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --prefix) root="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -z "$root" && $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root (or give --prefix DIR to stage the files)" >&2
    exit 7
fi

if [[ -z "$binary" ]]; then
    cargo build --release --locked --bin ibm-ipsec
    binary="${CARGO_TARGET_DIR:-target}/release/ibm-ipsec"
fi
[[ -x "$binary" ]] || { echo "install.sh: $binary is not an executable" >&2; exit 5; }

install -D -m 0755 "$binary" "$root/usr/sbin/ibm-ipsec"
install -D -m 0644 dist/ibm-ipsec.service "$root/etc/systemd/system/ibm-ipsec.service"
# Absolute targets: on merged-/usr systems /sbin is a symlink to usr/sbin, where a relative
# ../usr/sbin target would dangle.
mkdir -p "$root/sbin"
for helper in mount.ibmshare umount.ibmshare; do
    ln -sfn /usr/sbin/ibm-ipsec "$root/sbin/$helper"
done
echo "installed $root/usr/sbin/ibm-ipsec, $root/sbin/mount.ibmshare, $root/sbin/umount.ibmshare"
echo "and $root/etc/systemd/system/ibm-ipsec.service"
echo "mount a share with: mount -t ibmshare -o secure=true IP:/path DIR"

if [[ -z "$root" ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    echo "start it with: systemctl enable --now ibm-ipsec"
fi
