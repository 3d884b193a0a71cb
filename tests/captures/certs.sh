#!/usr/bin/env bash
# Generates a throw-away test PKI with the openssl CLI, shaped like the IBM metadata service's:
#   root CA (RSA-4096) -> intermediate CA (RSA-4096) -> two RSA-4096 leaves:
#   - share.crt: the mount target (responder), CN + SAN DNS:share.ibm-ipsec.test, 1 day;
#   - client.crt: a metadata-style identity certificate, subject C/ST/L/O/OU without CN,
#     identity only in the SAN (DNS:client.ibm-ipsec.test), valid for 1 hour.
# Usage: certs.sh DIR        (keys are generated in parallel; takes a few seconds)
set -euo pipefail
dir=${1:?usage: certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

for k in root int share client; do
    [ -s "$k.key" ] && continue # callers may pre-seed keys (RSA-4096 generation is slow)
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$k.key" 2>/dev/null &
done
wait

cat >ext.cnf <<'EOF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[int]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[share]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = DNS:share.ibm-ipsec.test
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = DNS:client.ibm-ipsec.test
authorityKeyIdentifier = keyid
[req]
distinguished_name = dn
[dn]
EOF

# `openssl x509 -req` (OpenSSL 3.0) only knows whole days; `openssl ca` sets exact start and
# end dates, which the 1 h client certificate needs.
mkdir -p ca-db
: >ca-db/index.txt
sign() { # sign CSR ISSUER_CRT ISSUER_KEY SECTION SECONDS OUT
    local start end
    # start a minute early to tolerate clock skew between the two hosts of a real test
    local now
    now=$(date -u +%s)
    start=$(date -u -d "@$((now - 60))" +%Y%m%d%H%M%SZ)
    end=$(date -u -d "@$((now - 60 + $5))" +%Y%m%d%H%M%SZ)
    cat >ca-db/ca.cnf <<EOF
[ca]
default_ca = lab
[lab]
database = ca-db/index.txt
new_certs_dir = ca-db
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
rand_serial = yes
[any]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
EOF
    openssl ca -batch -notext -config ca-db/ca.cnf -in "$1" -cert "$2" -keyfile "$3" \
        -extfile ext.cnf -extensions "$4" -startdate "$start" -enddate "$end" -out "$6" 2>/dev/null
}

openssl req -new -x509 -key root.key -subj "/C=US/O=ibm-ipsec test/CN=ibm-ipsec Test Root CA" \
    -days 2 -sha256 -config ext.cnf -extensions ca -out root.crt
openssl req -new -key int.key -subj "/C=US/O=ibm-ipsec test/CN=ibm-ipsec Test Intermediate CA" \
    -config ext.cnf -out int.csr
sign int.csr root.crt root.key int 86400 int.crt
openssl req -new -key share.key -subj "/C=US/O=ibm-ipsec test/CN=share.ibm-ipsec.test" \
    -config ext.cnf -out share.csr
sign share.csr int.crt int.key share 86400 share.crt
openssl req -new -key client.key \
    -subj "/C=US/ST=IL/L=Chicago/O=IBM Corporation/OU=IBM Software Group" \
    -config ext.cnf -out client.csr
sign client.csr int.crt int.key client 3600 client.crt
rm -f ./*.csr
openssl verify -CAfile root.crt -untrusted int.crt share.crt client.crt >/dev/null
