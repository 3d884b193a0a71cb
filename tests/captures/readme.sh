#!/usr/bin/env bash
# Writes README.md for the fixture directory OUT_DIR (called by capture.sh): a fixed preface
# plus each scenario's generated messages.md.
set -euo pipefail
out=${1:?usage: readme.sh OUT_DIR}
cat <<'PREFACE'
# strongSwan IKEv2 captures

Real IKEv2 messages between two strongSwan 5.9.8 charons (Debian 12 packages), each in its own
network namespace, joined by a veth pair (initiator 10.213.7.1, responder 10.213.7.2).
Produced by `tests/captures/capture.sh` (generated file: do not edit by hand).

## Regenerate

```
sudo ./scripts/install-deps          # strongSwan, tcpdump, openssl, iproute2
sudo tests/captures/capture.sh       # all scenarios into ike/tests/data/strongswan/
sudo ONLY=psk tests/captures/capture.sh    # one scenario; KEEP=1 keeps configs, logs, pcaps
```
Nonces, SPIs, DH keys and certificates are fresh on every run, so every byte changes; the
structure (exchanges, payload order, sizes up to a few bytes) does not.

## Files

- `<scenario>/NN-<exchange>-<i|r>.bin`: the UDP payload of one IKE message, in wire order.
  `i` = sent by the initiator host (10.213.7.1), `r` = sent by the responder host. Every
  scenario uses `encap = yes`, so strongSwan fakes NAT detection and floats to UDP 4500 after
  IKE_SA_INIT: **every message after IKE_SA_INIT travelled on port 4500 with the 4-byte
  non-ESP marker, which is removed from the files** (the tables say which).
- `<scenario>/NN-<exchange>-<i|r>.plain`: for each SK/SKF message (fragment), the decrypted
  content as logged by the sending charon: the inner payload chain, without the IV, padding,
  pad-length octet and ICV. For SKF fragments it is that fragment's slice; concatenating the
  slices in fragment order gives the reassembled inner chain, whose first payload type is the
  Next Payload field of fragment 1 (RFC 7383 §2.5).
- `<scenario>/keys.txt`: `name = hex` lines in sections. `[ike_sa N]` (in creation order):
  `spi_i`, `spi_r`, `ni`, `nr`, `dh_group`, `ke_i`/`ke_r` (key exchange data without the
  4-octet group/reserved prefix), `g_ir` (DH shared secret), `skeyseed`, `sk_d`, `sk_ai`,
  `sk_ar`, `sk_ei`, `sk_er`, `sk_pi`, `sk_pr` (RFC 7296 §2.14; for a rekeyed IKE SA §2.18:
  SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)). `[child_sa N]`: `spi_i` (the ESP SPI the
  initiator chose, i.e. its inbound SA), `spi_r`, `encr_key_i` (KEYMAT for initiator→responder:
  AES-256 key ‖ 4-byte GCM salt, RFC 4106 §8.1), `encr_key_r`. `[auth] psk` holds the
  pre-shared key of PSK scenarios. Values come from charon's `ike 4`/`chd 4` log; the capture
  script checks that initiator and responder logged identical values.
- `<scenario>/messages.md`: the table shown below for that scenario.
- `pki/*.pem`: the public certificates of the test PKI used for the captures: `root.pem`
  (RSA-4096, self-signed), `int.pem` (intermediate, pathlen 0), `share.pem` (responder,
  `CN=share.ibm-ipsec.test`, SAN DNS), `client.pem` (initiator, metadata-style: subject
  `C=US, ST=IL, L=Chicago, O=IBM Corporation, OU=IBM Software Group` without CN, SAN
  `DNS:client.ibm-ipsec.test`, valid 1 h from one minute before the capture). Verify chains at
  the capture time given in `keys.txt`. IDs are the certificates' subject DNs (as the IBM mount
  helper configures); strongSwan sends only the end-entity certificate, not the intermediate.

## Configuration common to all scenarios

`version = 2`, `encap = yes`, `fragmentation = yes` (fragment size: strongSwan's default 1280),
CHILD_SA `lab`: tunnel mode (this kernel has no ESP, so charon runs `kernel-libipsec`, which
refuses transport mode), TS 10.213.7.1/32 === 10.213.7.2/32, ESP `aes256gcm16` (no PFS).
PSK scenarios use IDs `client.ibm-ipsec.test` / `share.ibm-ipsec.test` (FQDN).

## Scenarios
PREFACE
for d in "$out"/*/; do
    sc=$(basename "$d")
    [ -f "$d/keys.txt" ] || continue
    printf '\n### `%s`: %s\n\n' "$sc" "$(head -1 "$d/keys.txt" | sed 's/^# //')"
    cat "$d/messages.md"
done
cat <<'NOTES'

### Notes

- `ms` is the capture time relative to the first packet; charon logged at `ike 4`, which slows
  it, so use the lab's reference figures (`tests/examples/strongswan_reference.rs`) for timing.
- strongSwan's MOBIKE task may insert an address-list update (an INFORMATIONAL holding only
  `N(NO_ADDITIONAL_ADDRESSES)`) in any scenario, depending on timing; message IDs shift with it.
- `informational`: the initiator runs `dpd_delay = 1s`, so the idle SA gets an empty
  INFORMATIONAL liveness check (DPD), then the CHILD_SA DELETE and the IKE_SA DELETE.
- `rekey`: after the IKE rekey the old IKE SA deletes itself, and the final DELETE runs on the
  new IKE SA (`[ike_sa 2]` keys; its message IDs start again at 0).
- `responder-rekey`: the mirror image. After IKE_AUTH the original responder (10.213.7.2)
  starts every exchange, so its requests carry no Initiator flag until the IKE rekey, after
  which it is the new SA's initiator (`[ike_sa 2]`: `spi_i`, `ni` and SK_*i are its own).
- `invalid-ke` (only with `ONLY=invalid-ke`, not in the default set): the first IKE_SA_INIT response is only `N(INVALID_KE_PAYLOAD)` (responder SPI
  zero, notify data = group 20); the initiator retries with the same SPI and a new KE.
  `keys.txt` describes the second pair.
- `auth-failed`: the initiator's PSK is wrong; the encrypted IKE_AUTH response holds only
  `N(AUTHENTICATION_FAILED)` and both sides drop the SA without a DELETE.
- `transport-refused`: the initiator asks for transport mode (`N(USE_TRANSPORT_MODE)`);
  kernel-libipsec refuses it, so the IKE SA is established but the IKE_AUTH response carries
  `N(NO_PROPOSAL_CHOSEN)` instead of SA/TSi/TSr, and there are no CHILD_SA keys.
NOTES
