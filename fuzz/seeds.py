#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the project's real fixtures:
the strongSwan captures and test PKI (ike/tests/data/strongswan/), the netlink byte fixtures
captured from iproute2 (xfrm/fixtures/), CSRs made by OpenSSL, packets sealed with the fuzz
targets' fixed keys (Python `cryptography`, independent of our code), and config/JSON
samples. Deterministic apart from the OpenSSL keys; run from anywhere:

    python3 fuzz/seeds.py

`ike_message` keeps the corpus the codec engineer committed; `esp_replay` is structure-aware
(arbitrary) and starts empty.
"""
import glob
import hashlib
import hmac
import os
import struct
import subprocess
import tempfile

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CAPTURES = os.path.join(ROOT, "ike/tests/data/strongswan")
PKI = os.path.join(CAPTURES, "pki")


def write(target, name, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- IKE --------------------------------------------------------------------------------

def payloads(chain, first):
    """(type, body) of each payload in a chain."""
    out, t, pos = [], first, 0
    while t != 0 and pos + 4 <= len(chain):
        nxt, length = chain[pos], struct.unpack(">H", chain[pos + 2:pos + 4])[0]
        if length < 4:
            break
        out.append((t, chain[pos + 4:pos + length]))
        t, pos = nxt, pos + length
    return out


def protected_first_type(msg):
    """Next-payload field of the SK (46) or SKF (53) payload, or None."""
    for t, body in payloads(msg[28:], msg[16]):
        if t in (46, 53):
            # The SK generic header's next-payload byte sits 4 bytes before the body.
            idx = msg.index(body) - 4
            return msg[idx], t, body
    return None


def ike():
    # ike_payload_chain: unprotected chains of IKE_SA_INIT and decrypted SK/SKF contents.
    n = 0
    for scen in sorted(os.listdir(CAPTURES)):
        for bin_path in sorted(glob.glob(os.path.join(CAPTURES, scen, "*.bin"))):
            msg = read(bin_path)
            stem = f"{scen}-{os.path.basename(bin_path)[:-4]}"
            plain = bin_path[:-4] + ".plain"
            prot = protected_first_type(msg)
            if prot and prot[1] == 53:
                continue  # fragments: the reassembled chains are written below
            if prot and os.path.exists(plain):
                write("ike_payload_chain", stem, bytes([prot[0]]) + read(plain))
                n += 1
            elif not prot and "ike_sa_init" in bin_path:
                write("ike_payload_chain", stem, bytes([msg[16]]) + msg[28:])
                n += 1
    for scen in ("cert-ecp384", "cert-x25519-gcm"):
        for stems in (["03-ike_auth-i", "04-ike_auth-i"], ["05-ike_auth-r", "06-ike_auth-r"]):
            first, chain = reassembled(scen, stems)
            write("ike_payload_chain", f"{scen}-{stems[0]}-reassembled", bytes([first]) + chain)

    # ike_sk_open: the two captures whose keys the target holds.
    iv_len = {"cert-ecp384": 16, "cert-x25519-gcm": 8}
    idx = {"cert-ecp384": 0, "cert-x25519-gcm": 2}
    for scen in ("cert-ecp384", "cert-x25519-gcm"):
        for bin_path in sorted(glob.glob(os.path.join(CAPTURES, scen, "*.bin"))):
            msg = read(bin_path)
            stem = f"{scen}-{os.path.basename(bin_path)[:-4]}"
            prot = protected_first_type(msg)
            if not prot:
                continue
            write("ike_sk_open", "open-" + stem, b"\x00" + msg)
            plain = bin_path[:-4] + ".plain"
            if os.path.exists(plain):
                body = prot[2]
                aad = msg[: len(msg) - len(body)]
                # Mode 1 (GCM: authentic around plaintext | pad length 0) and mode 2.
                if scen == "cert-x25519-gcm":
                    pt = read(plain) + b"\x00"
                    head = bytes([1, idx[scen], min(len(aad), 255), prot[0]])
                    write("ike_sk_open", "auth-" + stem,
                          head + body[: iv_len[scen]] + aad[:255] + pt)
                write("ike_sk_open", "seal-" + stem,
                      bytes([2, idx[scen], min(len(aad), 255)]) + aad[:255] + read(plain))
    return n


# ---- ESP --------------------------------------------------------------------------------

SPI = 0x10000001


def esp_pt(payload, nh, align):
    pad = (align - (len(payload) + 2) % align) % align
    return payload + bytes(range(1, pad + 1)) + bytes([pad, nh])


def esp_gcm(key_len, seq, payload, nh=6, esn=False, seq_hi=0):
    key = b"\x42" * (key_len + 4)
    iv = struct.pack(">Q", seq)
    pt = esp_pt(payload, nh, 4)
    aad = struct.pack(">I", SPI) + (struct.pack(">I", seq_hi) if esn else b"") + struct.pack(">I", seq)
    ct = AESGCM(key[:key_len]).encrypt(key[key_len:] + iv, pt, aad)
    return struct.pack(">II", SPI, seq) + iv + ct


def esp_cbc(key_len, seq, payload, nh=6, esn=False, seq_hi=0):
    key = b"\x42" * (key_len + 32)
    iv = hashlib.sha256(struct.pack(">Q", seq)).digest()[:16]
    pt = esp_pt(payload, nh, 16)
    enc = Cipher(algorithms.AES(key[:key_len]), modes.CBC(iv)).encryptor()
    ct = enc.update(pt) + enc.finalize()
    head = struct.pack(">II", SPI, seq) + iv + ct
    mac = hmac.new(key[key_len:], head + (struct.pack(">I", seq_hi) if esn else b""), hashlib.sha256)
    return head + mac.digest()[:16]


def ipv4(proto, payload):
    total = 20 + len(payload)
    h = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, proto, 0,
                    bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    s = sum(struct.unpack(">10H", h))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return h[:10] + struct.pack(">H", ~s & 0xFFFF) + h[12:] + payload


def esp():
    tcp = bytes(range(20)) + b"NFS over ESP"
    n = 0
    for sel, make, klen in ((0, esp_gcm, 16), (1, esp_gcm, 32), (2, esp_cbc, 16), (3, esp_cbc, 32)):
        for seq in (1, 7, 1000):
            write("esp_open", f"bare-{sel}-{seq}", bytes([sel]) + make(klen, seq, tcp))
            n += 1
        write("esp_open", f"esn-{sel}", bytes([sel | 4]) + make(klen, 5, tcp, esn=True))
        write("esp_open", f"tunnel-{sel}", bytes([sel | 8]) + make(klen, 2, ipv4(6, tcp), nh=4))
        write("esp_open", f"transport-{sel}", bytes([sel | 0x10]) + ipv4(50, make(klen, 3, tcp)))
        write("esp_open", f"udp-{sel}", bytes([sel | 0x20]) + make(klen, 4, tcp))
        n += 4
    write("esp_open", "udp-ike", bytes([0x21]) + b"\x00" * 4 + read(os.path.join(
        CAPTURES, "cert-ecp384", "01-ike_sa_init-i.bin"))[:64])
    write("esp_open", "udp-keepalive", bytes([0x21, 0xFF]))
    return n


# ---- PKI --------------------------------------------------------------------------------

def pem_to_der(path):
    return subprocess.run(["openssl", "x509", "-in", path, "-outform", "DER"],
                          check=True, capture_output=True).stdout


def reassembled(scen, stems):
    """(first inner type, inner chain) of an IKE_AUTH sent as SKF fragments (RFC 7383)."""
    first = protected_first_type(read(os.path.join(CAPTURES, scen, stems[0] + ".bin")))[0]
    return first, b"".join(read(os.path.join(CAPTURES, scen, s + ".plain")) for s in stems)


def auth_data(scen, stems):
    """Authentication Data of the AUTH payload (type 39) in a decrypted IKE_AUTH."""
    first, chain = reassembled(scen, stems)
    for t, body in payloads(chain, first):
        if t == 39:
            return body[0], body[4:]
    return None, None


def pki():
    client, share, inter, root = (pem_to_der(os.path.join(PKI, f + ".pem"))
                                  for f in ("client", "share", "int", "root"))
    method, auth = auth_data("cert-ecp384", ["03-ike_auth-i", "04-ike_auth-i"])
    assert method == 14, method
    lp = lambda d: struct.pack(">H", len(d)) + d
    write("pki_chain", "client-int-auth", b"\x00" + lp(client) + lp(inter) + auth)
    write("pki_chain", "share-int", b"\x00" + lp(share) + lp(inter))
    write("pki_chain", "int-client", b"\x00" + lp(inter) + lp(client))
    write("pki_chain", "root-only", b"\x00" + lp(root))
    for name, der in (("client", client), ("int", inter), ("root", root)):
        write("pki_chain", "info-" + name, b"\x01" + der)
        write("pki_chain", "pem-" + name, b"\x02" + read(os.path.join(PKI, name + ".pem")))
    write("pki_chain", "pem-bundle", b"\x02" + read(os.path.join(PKI, "int.pem")) +
          read(os.path.join(PKI, "root.pem")))

    # pki_signature: AUTH data and AlgorithmIdentifiers from real messages and OpenSSL.
    for scen, stem in (("cert-ecp384", "03-ike_auth-i"), ("cert-ecp384", "05-ike_auth-r"),
                       ("cert-x25519-gcm", "03-ike_auth-i")):
        nxt = stem.replace("03-", "04-").replace("05-", "06-")
        m, data = auth_data(scen, [stem, nxt])
        if m == 14:
            write("pki_signature", f"auth-{scen}-{stem}", data)
            write("pki_signature", f"ai-{scen}-{stem}", data[1:1 + data[0]])
    oid = lambda o: b"\x06" + bytes([len(o)]) + o
    seq = lambda *p: b"\x30" + bytes([sum(map(len, p))]) + b"".join(p)
    rsa = bytes.fromhex("2a864886f70d0101")
    for h in (0x0b, 0x0c, 0x0d):
        write("pki_signature", f"pkcs1-{h}-null", seq(oid(rsa + bytes([h])), b"\x05\x00"))
        write("pki_signature", f"pkcs1-{h}-absent", seq(oid(rsa + bytes([h]))))
    write("pki_signature", "ecdsa-sha384", seq(oid(bytes.fromhex("2a8648ce3d040303"))))
    write("pki_signature", "sha1-rsa", seq(oid(rsa + b"\x05"), b"\x05\x00"))
    write("pki_signature", "hash-ids", bytes.fromhex("0002000300040005"))

    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "k.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", key], check=True, capture_output=True)
        # A PSS-signed certificate: its signatureAlgorithm is a PSS AlgorithmIdentifier.
        cert = os.path.join(tmp, "pss.der")
        subprocess.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/O=fuzz",
                        "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest",
                        "-sha384", "-days", "1", "-outform", "DER", "-out", cert],
                       check=True, capture_output=True)
        der = read(cert)
        # Certificate ::= SEQ { tbs, signatureAlgorithm, signature }: skip outer and tbs headers.
        def tlv(b, at):
            l = b[at + 1]
            if l & 0x80:
                n = l & 0x7F
                return at + 2 + n, int.from_bytes(b[at + 2:at + 2 + n], "big")
            return at + 2, l
        body, _ = tlv(der, 0)
        tbs_start, tbs_len = tlv(der, body)
        ai_at = tbs_start + tbs_len
        ai_body, ai_len = tlv(der, ai_at)
        write("pki_signature", "pss-sha384", der[ai_at:ai_body + ai_len])
        write("pki_chain", "info-pss", b"\x01" + der)

        # pki_csr: accepted (C/ST/L/O/OU) and rejected (CN, extension) requests.
        def csr(name, subj, *extra, fmt="PEM"):
            out = os.path.join(tmp, name)
            subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", subj, "-outform", fmt,
                            "-out", out, *extra], check=True, capture_output=True)
            write("pki_csr", name, read(out))
        good = "/C=US/ST=IL/L=Chicago/O=IBM Corporation/OU=IBM Software Group"
        csr("good.pem", good)
        csr("good.der", good, fmt="DER")
        csr("with-cn.pem", good + "/CN=host")
        csr("with-ext.pem", good, "-addext", "basicConstraints=critical,CA:TRUE")
        csr("with-ku.pem", good, "-addext", "keyUsage=keyCertSign")
        ec = os.path.join(tmp, "ec.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", ec], check=True, capture_output=True)
        out = os.path.join(tmp, "ec.csr")
        subprocess.run(["openssl", "req", "-new", "-key", ec, "-subj", "/O=IBM", "-out", out],
                       check=True, capture_output=True)
        write("pki_csr", "ec.pem", read(out))


# ---- XFRM -------------------------------------------------------------------------------

def xfrm():
    fixtures = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "xfrm/fixtures/*.hex"))):
        name = os.path.basename(path)[:-4]
        fixtures[name] = bytes.fromhex(open(path).read().strip())
        write("xfrm_netlink", name, fixtures[name])
    ne = lambda fmt, *v: struct.pack("=" + fmt, *v)

    def msg(kind, flags, payload, seq=1):
        padded = payload + b"\x00" * ((4 - len(payload) % 4) % 4)
        return ne("IHHII", 16 + len(payload), kind, flags, seq, 0) + padded

    # EXPIRE: xfrm_usersa_info (224) ‖ hard ‖ pad to 232 ‖ the SA's attributes.
    sa = fixtures["sa_gcm"][16:]
    for hard in (0, 1):
        write("xfrm_netlink", f"expire-{'hard' if hard else 'soft'}",
              msg(0x18, 0, sa[:224] + bytes([hard]) + b"\x00" * 7 + sa[224:]))
    # ACQUIRE: id(24) saddr(16) sel(56) policy(168) aalgos/ealgos/calgos seq ‖ templates.
    pol = fixtures["policy_out"][16:]
    acq = sa[56:72] + b"\x00" * 4 + bytes([50]) + b"\x00" * 3 + sa[80:96] + pol[:56] + \
        pol[:168] + ne("IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 7)
    write("xfrm_netlink", "acquire", msg(0x17, 0, acq + pol[168:]))
    # ACKs: plain, and an error with a capped echo and an extended-ack message.
    echo = fixtures["sa_gcm"][:16]
    write("xfrm_netlink", "ack", msg(2, 0x100, ne("i", 0) + echo))
    text = b"Requested type not found\x00"
    tlv = ne("HH", 4 + len(text), 1) + text
    write("xfrm_netlink", "error-ext-ack", msg(2, 0x300, ne("i", -93) + echo + tlv))
    write("xfrm_netlink", "done", msg(3, 2, ne("i", 0)))


# ---- rtnetlink (esp's routing) ---------------------------------------------------------

def esp_rtnetlink():
    """The requests iproute2 sent and the rule/route dumps the kernel answered with, as
    captured by esp/fixtures/rtnetlink/capture.sh: whole datagrams, and each message's
    payload alone (the target also parses its whole input as one payload)."""
    for path in sorted(glob.glob(os.path.join(ROOT, "esp/fixtures/rtnetlink/*.hex"))):
        name = os.path.basename(path)[:-4]
        data = bytes.fromhex(open(path).read().strip())
        write("esp_rtnetlink", name, data)
        at, n = 0, 0
        while at + 16 <= len(data):
            length = struct.unpack_from("=I", data, at)[0]
            if length < 16 or at + length > len(data):
                break
            write("esp_rtnetlink", f"{name}-payload{n}", data[at + 16:at + length])
            at += (length + 3) & ~3
            n += 1


# ---- DNs (ike's ID_DER_ASN1_DN as text) -----------------------------------------------

def ike_dn():
    """The issuer and subject Names of the strongSwan-capture PKI's certificates (DER as
    the peers send them in IDi/IDr), plus an empty Name."""
    def tlv(b, at):
        """(tag, start of contents, end) of the DER element at `at`."""
        tag, first = b[at], b[at + 1]
        if first < 0x80:
            return tag, at + 2, at + 2 + first
        n = first & 0x7f
        length = int.from_bytes(b[at + 2:at + 2 + n], "big")
        return tag, at + 2 + n, at + 2 + n + length

    for stem in ("client", "share", "int", "root"):
        cert = pem_to_der(os.path.join(PKI, stem + ".pem"))
        _, tbs, _ = tlv(cert, 0)
        _, at, end = tlv(cert, tbs)
        fields = []
        while at < end and len(fields) < 6:
            tag, start, stop = tlv(cert, at)
            fields.append(cert[at:stop])
            at = stop
        # [0] version, serial, signature, issuer, validity, subject.
        write("ike_dn", f"{stem}-issuer", fields[3])
        write("ike_dn", f"{stem}-subject", fields[5])
    write("ike_dn", "empty", b"\x30\x00")


# ---- metadata ---------------------------------------------------------------------------

def metadata():
    client = read(os.path.join(PKI, "client.pem")).decode()
    inter = read(os.path.join(PKI, "int.pem")).decode()
    import json
    samples = {
        "token": {"access_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "created_at": "2026-11-23T09:46:54Z",
                  "expires_at": "2026-11-23T09:51:54Z", "expires_in": 300},
        "token-min": {"access_token": "t"},
        "certificates": {"certificates": [client, inter], "created_at": "2026-11-23T09:46:54Z",
                         "expires_at": "2026-11-23T10:46:54Z", "expires_in": 3600,
                         "id": "0717-8c5f6c8e-0000-4a4e-9e1e-000000000000"},
        "error": {"errors": [{"code": "invalid_value", "message": "expires_in must be 300-3600",
                              "more_info": "https://cloud.ibm.com/docs",
                              "target": {"name": "expires_in", "type": "field", "value": "5"}}],
                  "status_code": 400, "trace": "1e2b3c"},
        "error-unauthorized": {"errors": [{"code": "unauthorized", "message": "metadata service not enabled"}],
                               "status_code": 403},
    }
    for name, value in samples.items():
        write("metadata_json", name, json.dumps(value).encode())
    write("metadata_json", "not-json", b"<html><body>502 Bad Gateway</body></html>")

    confs = {
        "ibm": "# IBM mount helper\nregion=us-south\ncertificate_duration_seconds = 600\n\n"
               "metadata_retry_count=25\nmetadata_retry_interval=60\n",
        "ours": 'metadata_url = "https://api.metadata.cloud.ibm.com"\nmetadata_api=legacy\n'
                "metadata_ca_file=/etc/ibm-ipsec/metadata-ca.pem\nkey_bits=3072\n"
                "state_dir=/srv/ipsec\nrenew_at_percent=70\n",
        "empty": "\n# nothing\n   \n",
        "all-regions": "region=all\ncertificate_duration_seconds=3600\nkey_bits=4096\nrenew_at_percent=75\n",
        "bad-duration": "certificate_duration_seconds=299\n",
        "duplicate": "region=us-south\nregion=eu-de\n",
        "unknown-key": "region=us-south\ncolour=blue\n",
        "quoted": "region = 'eu-de'\nmetadata_url = \"http://169.254.169.254\"\n",
    }
    for name, text in confs.items():
        write("share_conf", name, text.encode())


# ---- session 2: mount helper, control protocol, datapath packets ---------------------------

def mount_helper():
    """Selector byte: 0 argv (NUL-separated), 1 /proc/self/mounts, 2 mountinfo, 3 utab."""
    argvs = {
        "documented": ["10.240.0.5:/share", "/mnt/share", "-o", "secure=true,vers=4.1"],
        "typed": ["-t", "ibmshare", "10.240.0.5:/share", "/mnt/share", "-o",
                  "secure=true,rsize=1048576,wsize=1048576,hard,timeo=600"],
        "clusters": ["-sfnv", "-osecure,sec=krb5p", "10.240.0.5:/a/b/", "/mnt/x"],
        "ipv6": ["[fd00::5]:/share", "/mnt/v6", "-o", "secure=true"],
        "plain-name": ["fileserver.example:/export", "/mnt/p", "-o", "vers=3,nolock"],
        "dashdash": ["-N", "ns1", "--", "10.0.0.9:/e", "-dir"],
        "insecure": ["10.240.0.5:/share", "/mnt/share", "-o", "secure=false,,sec=sys"],
        "bad-secure": ["10.240.0.5:/share", "/mnt/share", "-o", "insecure"],
        "fstab": ["10.240.0.5:/share", "/mnt/with space", "-o",
                  "rw,relatime,vers=4.2,secure=true,_netdev"],
    }
    for name, args in argvs.items():
        write("mount_helper", "argv-" + name, b"\x00" + "\0".join(args).encode())
    nfs_lines = (
        "10.240.0.5:/share /mnt/share nfs4 rw,relatime,vers=4.1,rsize=1048576,wsize=1048576,"
        "namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.240.0.9,"
        "local_lock=none,addr=10.240.0.5 0 0\n"
        "[fd00::5]:/share/ /mnt/with\\040space nfs4 rw,vers=4.2 0 0\n"
        "10.240.0.6:/ /mnt/root nfs rw,vers=3 0 0\n"
    )
    for name, path in (("real", "/proc/self/mounts"), ("mountinfo-real", "/proc/self/mountinfo")):
        try:
            text = read(path)
        except OSError:
            continue
        sel = b"\x01" if name == "real" else b"\x02"
        write("mount_helper", "mounts-" + name if sel == b"\x01" else name, sel + text)
    write("mount_helper", "mounts-nfs", b"\x01" + nfs_lines.encode())
    mountinfo = (
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "85 22 0:52 / /mnt/a rw,relatime shared:40 - nfs4 10.240.0.5:/share rw,vers=4.1,"
        "rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys\n"
        "86 22 0:53 / /mnt/with\\040space rw - nfs4 10.240.0.5:/other rw\n"
        "87 85 0:54 /sub /mnt/a rw master:3 - nfs [fd00::5]:/over\\134x rw\n"
    )
    write("mount_helper", "mountinfo-nfs", b"\x02" + mountinfo.encode())
    utab = (
        "ID=85 SRC=10.240.0.5:/share TARGET=/mnt/a ROOT=/ OPTS=helper=ibmshare\n"
        "ID=86 SRC=10.240.0.5:/other TARGET=/mnt/with\\040space ROOT=/ OPTS=helper=ibmshare\n"
        "ID=90 SRC=/dev/loop0 TARGET=/media/x ROOT=/ OPTS=x-udisks-auth\n"
    )
    write("mount_helper", "utab-lines", b"\x03" + utab.encode())
    write("mount_helper", "utab-mangle", b"\x03/mnt/a b\tc\nd\\e\\040f\\777")


def control_protocol():
    """Selector byte: even = request line, odd = response line (control protocol v2)."""
    import json
    up_opts = {"psk_file": "/etc/ibm-ipsec/psk", "cert": None, "key": None, "ca": [],
               "local_id": "client.example", "remote_id": "share.example",
               "selectors": ["tcp/2049"], "mode": "transport", "rekey_seconds": 3600}
    requests = {
        "up": {"type": "up", "peer": "10.240.0.5", "options": up_opts},
        "up-cert": {"type": "up", "peer": "fd00::5", "options": dict(
            up_opts, psk_file=None, cert="/var/lib/ibm-ipsec/cert.pem",
            key="/var/lib/ibm-ipsec/key.pem", ca=["/etc/ibm-ipsec/ca.pem"], mode=None,
            rekey_seconds=None)},
        "down-peer": {"type": "down", "target": {"peer": "10.240.0.5"}},
        "down-all": {"type": "down", "target": "all"},
        "status": {"type": "status"},
    }
    for name, req in requests.items():
        line = json.dumps({"version": 2, "request": req}, separators=(",", ":")) + "\n"
        write("control_protocol", "req-" + name, b"\x00" + line.encode())
    write("control_protocol", "req-old-version",
          b"\x00" + b'{"version":1,"request":{"type":"status"}}\n')
    summary = {"peer": "10.240.0.5", "local": "10.240.0.9", "ike_spi_i": "0123456789abcdef",
               "ike_spi_r": "fedcba9876543210", "spi_in": "c1a2b3c4", "spi_out": "d1e2f3a4",
               "ike_algorithms": "aes256-sha384-ecp384", "esp_algorithm": "aes256gcm16",
               "mode": "transport", "encap": "none", "datapath": "kernel",
               "remote_id": "share.example", "selectors": "10.240.0.9/32 === 10.240.0.5/32[tcp/2049]",
               "elapsed_ms": 42, "existing": False}
    status = {
        "daemon": {"pid": 42, "version": "0.1.0", "started_unix": 1800000000,
                   "control": "/run/ibm-ipsec/control.sock", "listen": ["10.240.0.9"]},
        "datapath": {"kind": "userspace", "requested": "auto", "reason": "no xfrm"},
        "identity": {"subject": "CN=host", "issuer": "CN=ca", "not_after_unix": 1900000000,
                     "source": "metadata", "renewal": None},
        "identity_error": None, "identity_service": None,
        "ike_sas": [{"peer": "10.240.0.5", "local": "10.240.0.9", "state": "established",
                     "spi_i": "0123456789abcdef", "spi_r": "fedcba9876543210",
                     "algorithms": "aes256-sha384-ecp384", "remote_id": "share.example",
                     "rekey_unix": 1800003600, "peer_cert_expiry_unix": None}],
        "child_sas": [{"peer": "10.240.0.5", "spi_in": "c1a2b3c4", "spi_out": "d1e2f3a4",
                       "mode": "transport", "algorithm": "aes256gcm16",
                       "selectors": "10.240.0.9/32 === 10.240.0.5/32", "bytes_in": 1,
                       "bytes_out": 2, "packets_in": 3, "packets_out": 4,
                       "rekey_unix": None}],
    }
    responses = {
        "up": dict({"type": "up"}, **summary),
        "down": {"type": "down", "deleted": ["10.240.0.5", "fd00::5"]},
        "status": dict({"type": "status"}, **status),
        "error": {"type": "error", "kind": "ike_failed", "message": "no answer from 10.240.0.5"},
    }
    for name, resp in responses.items():
        line = json.dumps({"version": 2, "response": resp}, separators=(",", ":")) + "\n"
        write("control_protocol", "resp-" + name, b"\x01" + line.encode())


def tcp(flags, data, seq=0xFFFFFF00, opts=b""):
    hl = 20 + len(opts)
    return struct.pack(">HHIIBBHHH", 40000, 2049, seq, 7, (hl // 4) << 4, flags, 501, 0,
                       0) + opts + data


def esp_datapath():
    """Selector byte: 0 IP header, 1 vnet + checksum completion, 2 TSO (mss, mode, packet),
    3 GRO (segments separated by b"SEG", each after a flow byte), 4 raw ESP read."""
    nfs = bytes(range(48))
    udp = struct.pack(">HHHH", 700, 2049, 8 + len(nfs), 0) + nfs
    write("esp_datapath", "ip-v4-udp", b"\x00" + ipv4(17, udp))
    write("esp_datapath", "ip-v4-tcp", b"\x00" + ipv4(6, tcp(0x18, nfs)))
    frag = bytearray(ipv4(17, udp))
    frag[6] |= 0x20
    write("esp_datapath", "ip-v4-fragment", b"\x00" + bytes(frag))
    src6 = bytes.fromhex("fd000000000000000000000000000001")
    dst6 = bytes.fromhex("fd000000000000000000000000000002")
    seg = tcp(0x10, nfs)
    write("esp_datapath", "ip-v6-tcp",
          b"\x00" + struct.pack(">IHBB", 0x60000000, len(seg), 6, 64) + src6 + dst6 + seg)
    hbh = bytes([6, 0, 5, 2, 0, 0, 1, 0])  # hop-by-hop: router alert, padding
    write("esp_datapath", "ip-v6-hop-by-hop",
          b"\x00" + struct.pack(">IHBB", 0x60000000, len(hbh) + len(seg), 0, 64) + src6
          + dst6 + hbh + seg)
    # NEEDS_CSUM: TCP checksum field holds the pseudo-header sum (start 20, offset 16).
    pkt = bytearray(ipv4(6, tcp(0x18, nfs)))
    words = struct.unpack(">4H", pkt[12:20])
    ps = 6 + len(pkt) - 20 + sum(words)
    ps = (ps & 0xFFFF) + (ps >> 16)
    pkt[36:38] = struct.pack(">H", ps & 0xFFFF)
    vnet = struct.pack("<BBHHHH", 1, 0, 40, 0, 20, 16)
    write("esp_datapath", "csum-partial", b"\x01" + vnet + bytes(pkt))
    # TSO: a 32-byte-header (timestamps) ACK|PSH super-packet of 4000 bytes.
    ts = bytes([1, 1, 8, 10]) + bytes(range(8))
    data = bytes(i % 251 for i in range(4000))
    sup = ipv4(6, tcp(0x18, data, opts=ts))
    write("esp_datapath", "tso-transport", b"\x02" + struct.pack(">H", 1448) + b"\x00" + sup)
    write("esp_datapath", "tso-tunnel", b"\x02" + struct.pack(">H", 1380) + b"\x01" + sup)
    write("esp_datapath", "tso-fin-cwr", b"\x02" + struct.pack(">H", 1000) + b"\x00"
          + ipv4(6, tcp(0x99, data[:2500], opts=ts)))
    # GRO: consecutive segments of one flow, then one of another flow.
    segs, seq = [], 1000
    for i in range(4):
        chunk = data[i * 1448:(i + 1) * 1448]
        segs.append(b"\x00" + tcp(0x10 if i < 3 else 0x18, chunk, seq=seq, opts=ts))
        seq += len(chunk)
    segs.append(b"\x01" + tcp(0x10, data[:100], seq=5, opts=ts))
    write("esp_datapath", "gro-flow", b"\x03" + b"SEG".join(segs))
    # Raw ESP reads: IPv4 (header included) and IPv6 (ESP only).
    espp = struct.pack(">II", 0xC1A2B3C4, 1) + bytes(32)
    write("esp_datapath", "raw-v4", b"\x04\x00" + ipv4(50, espp))
    write("esp_datapath", "raw-v6", b"\x04\x03" + espp)


if __name__ == "__main__":
    import shutil
    import sys
    session2 = {"mount_helper": mount_helper, "control_protocol": control_protocol,
                "esp_datapath": esp_datapath, "esp_rtnetlink": esp_rtnetlink,
                "ike_dn": ike_dn}
    if sys.argv[1:]:
        # Just these targets' seeds (the others need OpenSSL and rewrite many files).
        for target in sys.argv[1:]:
            shutil.rmtree(os.path.join(FUZZ, "corpus", target), ignore_errors=True)
            session2[target]()
            print(f"{target}: {len(os.listdir(os.path.join(FUZZ, 'corpus', target)))} seeds")
        sys.exit(0)
    for target in session2:
        shutil.rmtree(os.path.join(FUZZ, "corpus", target), ignore_errors=True)
        session2[target]()
    for target in ("ike_payload_chain", "ike_sk_open", "esp_open", "pki_chain", "pki_csr",
                   "pki_signature", "xfrm_netlink", "metadata_json", "share_conf"):
        shutil.rmtree(os.path.join(FUZZ, "corpus", target), ignore_errors=True)
    ike()
    esp()
    pki()
    xfrm()
    metadata()
    for d in sorted(os.listdir(os.path.join(FUZZ, "corpus"))):
        print(f"{d}: {len(os.listdir(os.path.join(FUZZ, 'corpus', d)))} seeds")
