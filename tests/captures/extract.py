#!/usr/bin/env python3
"""Turns one capture (pcap + both charons' logs) into IKE fixtures.

Writes into OUT:
  NN-<exchange>-<i|r>.bin    raw UDP payload of each IKE message in wire order (the 4-byte
                             non-ESP marker of port 4500 removed); i/r = sent by the host
                             that initiated the scenario / by the responder host
  NN-<exchange>-<i|r>.plain  for SK/SKF messages: the decrypted inner payload chain (without
                             padding and pad-length octet), as logged by the sending charon
  keys.txt                   SPIs, nonces, DH shared secret, SKEYSEED, SK_* and CHILD_SA keys
  messages.md                one table row per message (the top README includes these)

Standard library only, so the capture script has no build step.
"""

import argparse
import hashlib
import hmac
import os
import re
import struct
import sys
import time

EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}
PAYLOADS = {
    33: "SA", 34: "KE", 35: "IDi", 36: "IDr", 37: "CERT", 38: "CERTREQ", 39: "AUTH",
    40: "Nonce", 41: "N", 42: "D", 43: "V", 44: "TSi", 45: "TSr", 46: "SK", 47: "CP",
    48: "EAP", 53: "SKF",
}


def fail(msg):
    sys.exit("extract.py: " + msg)


# ---- pcap ---------------------------------------------------------------------------------

def read_pcap(path):
    """Yields (timestamp, src_ip, src_port, dst_ip, dst_port, udp_payload) for IPv4/UDP."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        fail(f"{path}: not a pcap file")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        fail(f"{path}: unknown pcap magic {magic.hex()}")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        ts = sec + frac / (1e9 if nano else 1e6)
        if linktype == 1:  # Ethernet
            if len(frame) < 14 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked
            if len(frame) < 16 or frame[14:16] != b"\x08\x00":
                continue
            ip = frame[16:]
        else:
            fail(f"{path}: unsupported link type {linktype}")
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        if struct.unpack(">H", ip[6:8])[0] & 0x3FFF:
            fail("IP fragment in capture: raise the veth MTU or lower charon's fragment_size")
        udp = ip[ihl:total]
        sport, dport, ulen = struct.unpack(">HHH", udp[:6])
        yield ts, ".".join(map(str, ip[12:16])), sport, ".".join(map(str, ip[16:20])), dport, udp[8:ulen]


# ---- IKE ----------------------------------------------------------------------------------

def ike_header(msg):
    spi_i, spi_r, first, ver, exch, flags, mid, length = struct.unpack(">8s8sBBBBII", msg[:28])
    return {
        "spi_i": spi_i.hex(), "spi_r": spi_r.hex(), "first": first, "exchange": exch,
        "response": bool(flags & 0x20), "initiator": bool(flags & 0x08), "mid": mid,
        "length": length,
    }


def walk(chain, first):
    """Yields (type, body) over a generic payload chain."""
    off, ptype = 0, first
    while ptype != 0 and off + 4 <= len(chain):
        nxt = chain[off]
        plen = struct.unpack(">H", chain[off + 2:off + 4])[0]
        if plen < 4 or off + plen > len(chain):
            fail(f"bad payload length {plen} at {off}")
        yield ptype, chain[off + 4:off + plen]
        if ptype in (46, 53):  # SK/SKF: the rest is encrypted
            return
        off += plen
        ptype = nxt


NOTIFIES = {
    7: "INVALID_SYNTAX", 14: "NO_PROPOSAL_CHOSEN", 17: "INVALID_KE_PAYLOAD",
    24: "AUTHENTICATION_FAILED", 34: "SINGLE_PAIR_REQUIRED", 35: "NO_ADDITIONAL_SAS",
    36: "INTERNAL_ADDRESS_FAILURE", 37: "FAILED_CP_REQUIRED", 38: "TS_UNACCEPTABLE",
    43: "TEMPORARY_FAILURE", 44: "CHILD_SA_NOT_FOUND",
    16384: "INITIAL_CONTACT", 16388: "NAT_DETECTION_SOURCE_IP",
    16389: "NAT_DETECTION_DESTINATION_IP", 16390: "COOKIE", 16391: "USE_TRANSPORT_MODE",
    16393: "REKEY_SA", 16394: "ESP_TFC_PADDING_NOT_SUPPORTED",
    16395: "NON_FIRST_FRAGMENTS_ALSO", 16396: "MOBIKE_SUPPORTED",
    16399: "NO_ADDITIONAL_ADDRESSES", 16404: "MULTIPLE_AUTH_SUPPORTED",
    16406: "REDIRECT_SUPPORTED", 16417: "EAP_ONLY_AUTHENTICATION",
    16418: "CHILDLESS_IKEV2_SUPPORTED", 16420: "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
    16430: "IKEV2_FRAGMENTATION_SUPPORTED", 16431: "SIGNATURE_HASH_ALGORITHMS",
}


def notify_name(body):
    ntype = struct.unpack(">H", body[2:4])[0]
    return NOTIFIES.get(ntype, str(ntype))


def describe(chain, first):
    out = []
    for ptype, body in walk(chain, first):
        name = PAYLOADS.get(ptype, str(ptype))
        if ptype == 41 and len(body) >= 4:
            name = f"N({notify_name(body)})"
        elif ptype == 53 and len(body) >= 4:
            num, total = struct.unpack(">HH", body[:4])
            name = f"SKF({num}/{total})"
        out.append(name)
    return out


def sa_spi(chain, first):
    """The SPI of the first proposal of the first SA payload, if any."""
    for ptype, body in walk(chain, first):
        if ptype == 33 and len(body) >= 8:
            spi_size = body[6]
            return body[8:8 + spi_size].hex()
    return None


def payload(chain, first, want):
    for ptype, body in walk(chain, first):
        if ptype == want:
            return body
    return None


def sk_info(msg):
    """(offset of the SK/SKF payload, its next-payload field, fragment number)."""
    chain, ptype, off = msg[28:], msg[16], 0
    while ptype != 0 and off + 4 <= len(chain):
        nxt = chain[off]
        plen = struct.unpack(">H", chain[off + 2:off + 4])[0]
        if ptype == 46:
            return 28 + off, nxt, None
        if ptype == 53:
            return 28 + off, nxt, struct.unpack(">H", chain[off + 4:off + 6])[0]
        off += plen
        ptype = nxt
    return None


# ---- charon log ---------------------------------------------------------------------------

LINE = re.compile(r"^\S+ \d+\[(\w+)\] (.*)$")
DUMP_HEAD = re.compile(r"^(.*?) => (\d+) bytes @ ")
DUMP_ROW = re.compile(r"^\s*(\d+): ((?:[0-9A-F]{2} ){0,15}[0-9A-F]{2})")


def read_dumps(path):
    """Yields (group, label, bytes) for each %B hex dump in a charon log, in log order."""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        m = LINE.match(lines[i])
        i += 1
        if not m:
            continue
        head = DUMP_HEAD.match(m.group(2))
        if not head:
            yield m.group(1), m.group(2), None
            continue
        label, size = head.group(1).strip(), int(head.group(2))
        buf = bytearray()
        while len(buf) < size and i < len(lines):
            rm = LINE.match(lines[i])
            row = DUMP_ROW.match(rm.group(2)) if rm else None
            if not row or int(row.group(1)) != len(buf):
                break
            take = min(16, size - len(buf))
            buf += bytes.fromhex(row.group(2).replace(" ", ""))[:take]
            i += 1
        if len(buf) != size:
            fail(f"{path}: truncated dump of {label}")
        yield m.group(1), label, bytes(buf)


KEY_LABELS = {
    "shared Diffie Hellman secret": "g_ir",
    "SKEYSEED": "skeyseed",
    "Sk_d secret": "sk_d",
    "Sk_ai secret": "sk_ai",
    "Sk_ar secret": "sk_ar",
    "Sk_ei secret": "sk_ei",
    "Sk_er secret": "sk_er",
    "Sk_pi secret": "sk_pi",
    "Sk_pr secret": "sk_pr",
}
CHILD_LABELS = {
    "encryption initiator key": "encr_key_i",
    "encryption responder key": "encr_key_r",
    "integrity initiator key": "integ_key_i",
    "integrity responder key": "integ_key_r",
}


def log_secrets(path):
    """Key sets in derivation order: (kind, {name: bytes}); and IV -> plaintext."""
    sets, plains, cur, iv = [], {}, None, None
    child_spis = []
    for group, label, data in read_dumps(path):
        if data is None:
            m = re.match(r"\s*SPI 0x([0-9a-f]{8}), src", label)
            if m and group == "CHD":
                child_spis.append(m.group(1))
            continue
        if label in KEY_LABELS:
            key = KEY_LABELS[label]
            # every IKE key derivation (initial or rekey) starts with the DH shared secret
            if key == "g_ir" or cur is None or cur[0] != "ike" or key in cur[1]:
                cur = ("ike", {})
                sets.append(cur)
            cur[1][key] = data
        elif label in CHILD_LABELS:
            key = CHILD_LABELS[label]
            if cur is None or cur[0] != "child" or key in cur[1]:
                cur = ("child", {})
                sets.append(cur)
            cur[1][key] = data
        elif group == "ENC" and label == "IV":
            iv = data
        elif group == "ENC" and label == "plain" and iv is not None:
            plains[iv] = data
            iv = None
    # "adding inbound ESP SA / SPI x" then "adding outbound ..." follow each child key set
    children = [s for s in sets if s[0] == "child"]
    for n, child in enumerate(children):
        if 2 * n + 1 < len(child_spis):
            child[1]["spi_in"] = bytes.fromhex(child_spis[2 * n])
            child[1]["spi_out"] = bytes.fromhex(child_spis[2 * n + 1])
    return sets, plains


# ---- self-check: the fixture must be internally consistent (RFC 7296 §2.13, §2.14, §2.18) ----

HASHES = {48: hashlib.sha384, 32: hashlib.sha256, 64: hashlib.sha512}


def prf_plus(prf, key, seed, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = prf(key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:length]


def verify(ike_sas, ike_keys, messages):
    """Recomputes SKEYSEED and SK_* from the logged secrets, checks every ICV of an
    AES-CBC/HMAC message and, when python's `cryptography` is present, decrypts every SK/SKF
    message and compares with the logged plaintext."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        Cipher = None
    checked = decrypted = 0
    old_sk_d = None
    by_spi = {}
    for sa, keys in zip(ike_sas, ike_keys):
        prf_len = len(keys["sk_d"])
        hash_fn = HASHES[prf_len]
        prf = lambda k, m: hmac.new(k, m, hash_fn).digest()
        ni, nr = bytes.fromhex(sa["ni"]), bytes.fromhex(sa["nr"])
        if old_sk_d is None:
            skeyseed = prf(ni + nr, keys["g_ir"])
        else:
            skeyseed = prf(old_sk_d, keys["g_ir"] + ni + nr)
        if skeyseed != keys["skeyseed"]:
            fail(f"SKEYSEED mismatch for IKE SA {sa['spi_i']}")
        names = ["sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"]
        total = sum(len(keys.get(n, b"")) for n in names)
        stream = prf_plus(prf, skeyseed, ni + nr + bytes.fromhex(sa["spi_i"] + sa["spi_r"]), total)
        off = 0
        for n in names:
            k = keys.get(n, b"")
            if stream[off:off + len(k)] != k:
                fail(f"{n} is not prf+ output for IKE SA {sa['spi_i']}")
            off += len(k)
        old_sk_d = keys["sk_d"]
        by_spi[(sa["spi_i"], sa["spi_r"])] = keys
    for m in messages:
        data, hdr = m["data"], m["hdr"]
        sk = sk_info(data)
        if sk is None:
            continue
        keys = by_spi.get((hdr["spi_i"], hdr["spi_r"]))
        if keys is None:
            fail(f"message {m['n']:02d}: no keys for its SPIs")
        sender_is_initiator = hdr["initiator"]
        sk_a = keys.get("sk_ai" if sender_is_initiator else "sk_ar", b"")
        sk_e = keys["sk_ei" if sender_is_initiator else "sk_er"]
        sk_off, _next, frag = sk
        enc_off = sk_off + 4 + (4 if frag is not None else 0)
        if sk_a:  # AES-CBC + HMAC-SHA2 truncated to half (RFC 4868)
            hash_fn = HASHES[len(sk_a)]
            icv_len = len(sk_a) // 2
            icv = hmac.new(sk_a, data[:-icv_len], hash_fn).digest()[:icv_len]
            if icv != data[-icv_len:]:
                fail(f"message {m['n']:02d}: ICV does not verify with the logged SK_a")
            checked += 1
            if Cipher is not None:
                iv, ct = data[enc_off:enc_off + 16], data[enc_off + 16:-icv_len]
                dec = Cipher(algorithms.AES(sk_e), modes.CBC(iv)).decryptor()
                pt = dec.update(ct) + dec.finalize()
                pt = pt[:len(pt) - 1 - pt[-1]]
                if pt != m["plain"]:
                    fail(f"message {m['n']:02d}: decryption differs from the logged plaintext")
                decrypted += 1
        elif Cipher is not None:  # AES-GCM-16 (RFC 5282): key ‖ 4-byte salt, 8-byte IV
            key, salt = sk_e[:-4], sk_e[-4:]
            iv = data[enc_off:enc_off + 8]
            aad = data[:enc_off]
            pt = AESGCM(key).decrypt(salt + iv, data[enc_off + 8:], aad)
            pt = pt[:len(pt) - 1 - pt[-1]]
            if pt != m["plain"]:
                fail(f"message {m['n']:02d}: GCM decryption differs from the logged plaintext")
            decrypted += 1
    how = "" if Cipher is not None else " (python3 cryptography missing: no decryption check)"
    print(f"verified: SKEYSEED and SK_* of {len(ike_sas)} IKE SA(s), {checked} ICV(s), "
          f"{decrypted} decryption(s){how}")


# ---- main ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--initiator-log", required=True)
    ap.add_argument("--responder-log", required=True)
    ap.add_argument("--initiator-ip", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--psk", help="pre-shared key (ASCII) of a PSK scenario")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    for name in os.listdir(args.out):
        os.remove(os.path.join(args.out, name))

    sets_i, plains_i = log_secrets(args.initiator_log)
    sets_r, plains_r = log_secrets(args.responder_log)
    plains = {**plains_i, **plains_r}

    rows, messages, first_ts = [], [], None
    fragments, first_inner = {}, {}
    for ts, src, sport, dst, dport, data in read_pcap(args.pcap):
        marker = False
        if sport == 4500 or dport == 4500:
            if data == b"\xff":
                continue  # NAT-T keepalive
            if data[:4] != b"\x00\x00\x00\x00":
                continue  # ESP in UDP, not IKE
            data, marker = data[4:], True
        if len(data) < 28:
            fail(f"short IKE message ({len(data)} bytes)")
        hdr = ike_header(data)
        if hdr["length"] != len(data):
            fail(f"IKE length {hdr['length']} != UDP payload {len(data)}")
        if first_ts is None:
            first_ts = ts
        n = len(messages) + 1
        who = "i" if src == args.initiator_ip else "r"
        exch = EXCHANGES.get(hdr["exchange"], str(hdr["exchange"]))
        base = f"{n:02d}-{exch.lower()}-{who}"
        with open(os.path.join(args.out, base + ".bin"), "wb") as f:
            f.write(data)
        payloads = describe(data[28:], hdr["first"])
        plain_name, inner = "", None
        sk = sk_info(data)
        if sk is not None:
            sk_off, inner_next, frag = sk
            body = data[sk_off + 4 + (4 if frag is not None else 0):]
            for iv_len in (16, 8):  # AES-CBC, AES-GCM
                plain = plains.get(body[:iv_len])
                if plain is not None:
                    break
            else:
                fail(f"{base}: no logged plaintext for its IV")
            plain_name = base + ".plain"
            with open(os.path.join(args.out, plain_name), "wb") as f:
                f.write(plain)
            if frag is None:
                inner = (plain, inner_next)
            else:
                # RFC 7383 §2.5: only fragment 1 names the first inner payload
                key = (who, hdr["exchange"], hdr["mid"], hdr["response"])
                num, total = struct.unpack(">HH", data[sk_off + 4:sk_off + 8])
                parts = fragments.setdefault(key, {})
                parts[num] = plain
                if num == 1:
                    first_inner[key] = inner_next
                if len(parts) == total and key in first_inner:
                    whole = b"".join(parts[k] for k in sorted(parts))
                    inner = (whole, first_inner[key])
            if inner:
                payloads.append("[" + " ".join(describe(*inner)) + "]")
        messages.append({"n": n, "hdr": hdr, "data": data, "inner": inner, "who": who,
                         "plain": plain if sk is not None else None})
        rows.append(
            f"| `{base}.bin` | {'' if not plain_name else '`.plain`'} | {exch} "
            f"{'response' if hdr['response'] else 'request'} | {hdr['mid']} | "
            f"{sport}→{dport}{' (marker stripped)' if marker else ''} | {len(data)} | "
            f"{' '.join(payloads)} | {1000 * (ts - first_ts):.1f} |")

    if not messages:
        fail("no IKE messages captured")

    # Key sets from both logs must agree, or the fixture would lie.
    # Key sets from both logs must agree, or the fixture would lie. A CHILD_SA that one side
    # refused to install (transport mode with kernel-libipsec) may leave keys on one side only.
    def norm(sets, kind):
        return [sorted((n, v) for n, v in d.items() if not n.startswith("spi"))
                for k, d in sets if k == kind]
    if norm(sets_i, "ike") != norm(sets_r, "ike"):
        fail("initiator and responder logged different IKE key material")
    child_i, child_r = norm(sets_i, "child"), norm(sets_r, "child")
    if len(child_i) == len(child_r) and child_i != child_r:
        fail("initiator and responder logged different CHILD_SA keys")

    # SPIs and nonces per IKE SA: the initial one from IKE_SA_INIT, rekeyed ones from the
    # decrypted CREATE_CHILD_SA payloads that carry an 8-byte SA SPI.
    ike_sas = []
    # The IKE_SA_INIT pair that created the SA: the response carrying a KE payload (an
    # INVALID_KE_PAYLOAD or COOKIE answer comes first and carries none) and the last request
    # sent before it.
    init_resp = next(m for m in messages if m["hdr"]["exchange"] == 34 and m["hdr"]["response"]
                     and payload(m["data"][28:], m["hdr"]["first"], 34) is not None)
    init_req = [m for m in messages[:init_resp["n"] - 1]
                if m["hdr"]["exchange"] == 34 and not m["hdr"]["response"]][-1]
    ike_sas.append({
        "how": "IKE_SA_INIT",
        "spi_i": init_resp["hdr"]["spi_i"], "spi_r": init_resp["hdr"]["spi_r"],
        "ni": payload(init_req["data"][28:], init_req["hdr"]["first"], 40).hex(),
        "nr": payload(init_resp["data"][28:], init_resp["hdr"]["first"], 40).hex(),
        "ke_i": payload(init_req["data"][28:], init_req["hdr"]["first"], 34),
        "ke_r": payload(init_resp["data"][28:], init_resp["hdr"]["first"], 34),
    })
    children_meta = []
    pending = None
    for m in messages:
        if m["hdr"]["exchange"] != 36 or m["inner"] is None:
            continue
        plain, first = m["inner"]
        spi = sa_spi(plain, first)
        nonce = payload(plain, first, 40)
        ke = payload(plain, first, 34)
        if spi is not None and len(spi) == 16:
            if not m["hdr"]["response"]:
                pending = {"how": f"CREATE_CHILD_SA (IKE rekey, message {m['n']:02d})",
                           "spi_i": spi, "ni": nonce.hex(), "ke_i": ke}
            elif pending:
                pending.update({"spi_r": spi, "nr": nonce.hex(), "ke_r": ke})
                ike_sas.append(pending)
                pending = None
        elif spi is not None:
            children_meta.append((m["n"], m["hdr"]["response"], spi, nonce.hex() if nonce else ""))

    ike_keys = [d for k, d in sets_i if k == "ike"]
    child_keys = [d for k, d in sets_i if k == "child"]
    if len(ike_keys) != len(ike_sas):
        fail(f"{len(ike_keys)} IKE key sets logged but {len(ike_sas)} IKE SAs seen on the wire")

    verify(ike_sas, ike_keys, messages)

    out = [f"# {args.title}",
           "# All values hex. Sections in the order the SAs were created. Parsed from charon's",
           "# log (ike 4 / chd 4); initiator and responder logs agree on every value.",
           f"# captured at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(first_ts))}"
           " (verify certificates at this time: the client certificate lives 1 h)", ""]
    if args.psk:
        out += ["[auth]", f"psk = {args.psk.encode().hex()}", ""]
    for n, (sa, keys) in enumerate(zip(ike_sas, ike_keys), 1):
        out.append(f"[ike_sa {n}]")
        out.append(f"created_by = {sa['how']}")
        for k in ("spi_i", "spi_r", "ni", "nr"):
            out.append(f"{k} = {sa[k]}")
        if sa["ke_i"] is not None and sa["ke_r"] is not None:
            # KE payload body: DH group (2 octets), RESERVED (2), key exchange data
            out.append(f"dh_group = {struct.unpack('>H', sa['ke_i'][:2])[0]}")
            out.append(f"ke_i = {sa['ke_i'][4:].hex()}")
            out.append(f"ke_r = {sa['ke_r'][4:].hex()}")
        for k in ("g_ir", "skeyseed", "sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
            if k in keys:
                out.append(f"{k} = {keys[k].hex()}")
        out.append("")
    for n, keys in enumerate(child_keys, 1):
        out.append(f"[child_sa {n}]")
        if "spi_in" in keys:
            # logged by the initiator: inbound = the SPI the initiator chose
            out.append(f"spi_i = {keys['spi_in'].hex()}")
            out.append(f"spi_r = {keys['spi_out'].hex()}")
        for k in ("encr_key_i", "encr_key_r", "integ_key_i", "integ_key_r"):
            if k in keys:
                out.append(f"{k} = {keys[k].hex()}")
        out.append("")
    with open(os.path.join(args.out, "keys.txt"), "w") as f:
        f.write("\n".join(out))

    with open(os.path.join(args.out, "messages.md"), "w") as f:
        f.write("| file | plaintext | exchange | msg id | UDP ports | bytes | payloads [inner] | ms |\n")
        f.write("|---|---|---|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")
    print(f"{len(messages)} messages, {len(ike_sas)} IKE SA(s), {len(child_keys)} CHILD_SA key set(s)")


if __name__ == "__main__":
    main()
