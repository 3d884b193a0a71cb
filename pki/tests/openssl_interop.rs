//! Cross-checks with OpenSSL, the tool the IBM mount helper and strongSwan users live with:
//! OpenSSL reads our key and verifies our signatures; we accept OpenSSL's CSRs (as the
//! metadata test server must), enforce the rules on OpenSSL-made bad CSRs, verify a chain
//! OpenSSL issued, and verify OpenSSL's PKCS#1 and PSS signatures.
//!
//! Skipped, with the reason printed, when the `openssl` binary is absent.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use pki::{
    build_csr, validate_csr, CsrRule, CsrSubject, Error, HashAlgorithm, HostKey, IkeIdentity,
    KeySize, PeerVerifier, RootStore, SignatureScheme,
};

fn openssl(dir: &Path, args: &[&str]) -> Option<std::process::Output> {
    match Command::new("openssl").current_dir(dir).args(args).output() {
        Ok(out) => Some(out),
        Err(e) => {
            eprintln!("skipping OpenSSL interop: cannot run openssl: {e}");
            None
        }
    }
}

fn ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = openssl(dir, args).expect("openssl ran before");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// All checks share one key and one directory: RSA keygen is the slow part.
#[test]
fn openssl_interop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if openssl(d, &["version"]).is_none() {
        return;
    }
    let key = HostKey::generate(KeySize::Rsa2048).unwrap();
    key.save(&d.join("host.key")).unwrap();

    // OpenSSL reads our PKCS#8 key and makes the IBM mount helper's CSR with it.
    ok(
        d,
        &[
            "req",
            "-new",
            "-key",
            "host.key",
            "-sha256",
            "-out",
            "helper.csr",
            "-subj",
            "/C=US/ST=IL/L=Chicago/O=IBM Corporation/OU=IBM Software Group",
        ],
    );
    let helper_csr = validate_csr(&std::fs::read(d.join("helper.csr")).unwrap()).unwrap();
    assert_eq!(helper_csr.public_key_info_der(), key.public_key_info_der());
    // Same subject as ours, byte for byte (OpenSSL's default string types).
    assert_eq!(helper_csr.subject(), CsrSubject::default().name());

    // An RSA-4096 key from `openssl genpkey`, as the IBM mount helper makes it, loads, signs
    // and yields a valid CSR. (Our own RSA-4096 keygen is timed by an ignored unit test.)
    ok(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:4096",
            "-out",
            "helper4096.key",
        ],
    );
    let key4096 = HostKey::load(&d.join("helper4096.key")).unwrap();
    assert_eq!(key4096.bits(), 4096);
    let csr4096 = build_csr(&key4096, &CsrSubject::default()).unwrap();
    assert_eq!(
        validate_csr(csr4096.der()).unwrap().public_key_info_der(),
        key4096.public_key_info_der()
    );
    std::fs::write(d.join("req4096.pem"), csr4096.to_pem()).unwrap();
    ok(d, &["req", "-in", "req4096.pem", "-verify", "-noout"]);

    // OpenSSL-made CSRs that break the rules.
    ok(
        d,
        &[
            "req",
            "-new",
            "-key",
            "host.key",
            "-out",
            "cn.csr",
            "-subj",
            "/C=US/CN=host1",
        ],
    );
    assert!(matches!(
        validate_csr(&std::fs::read(d.join("cn.csr")).unwrap()),
        Err(Error::CsrRule(CsrRule::CommonName))
    ));
    ok(
        d,
        &[
            "req",
            "-new",
            "-key",
            "host.key",
            "-out",
            "ca.csr",
            "-subj",
            "/C=US",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    assert!(matches!(
        validate_csr(&std::fs::read(d.join("ca.csr")).unwrap()),
        Err(Error::CsrRule(CsrRule::IsCa))
    ));
    ok(
        d,
        &[
            "req",
            "-new",
            "-key",
            "host.key",
            "-out",
            "ku.csr",
            "-subj",
            "/C=US",
            "-addext",
            "keyUsage=keyCertSign",
        ],
    );
    assert!(matches!(
        validate_csr(&std::fs::read(d.join("ku.csr")).unwrap()),
        Err(Error::CsrRule(CsrRule::KeyCertSign))
    ));
    ok(
        d,
        &[
            "req",
            "-new",
            "-key",
            "host.key",
            "-out",
            "san.csr",
            "-subj",
            "/C=US",
            "-addext",
            "subjectAltName=DNS:x.test",
        ],
    );
    assert!(matches!(
        validate_csr(&std::fs::read(d.join("san.csr")).unwrap()),
        Err(Error::CsrRule(CsrRule::Extensions(_)))
    ));

    // An OpenSSL CA issues a leaf from our CSR; our verifier accepts the chain.
    std::fs::write(
        d.join("root.cnf"),
        "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nC=US\nO=OpenSSL Test\nCN=openssl root\n\
         [v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n",
    )
    .unwrap();
    std::fs::write(
        d.join("int.ext"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:nfs.openssl.test\n",
    )
    .unwrap();
    std::fs::create_dir(d.join("roots")).unwrap();
    ok(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "roots/openssl-root.pem",
            "-days",
            "2",
            "-config",
            "root.cnf",
            "-extensions",
            "v3",
        ],
    );
    ok(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "int.key",
            "-out",
            "int.csr",
            "-subj",
            "/C=US/O=OpenSSL Test/CN=openssl intermediate",
        ],
    );
    ok(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "roots/openssl-root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "int.ext",
            "-out",
            "int.pem",
        ],
    );
    std::fs::write(
        d.join("ours.csr"),
        build_csr(&key, &CsrSubject::default()).unwrap().to_pem(),
    )
    .unwrap();
    ok(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "ours.csr",
            "-CA",
            "int.pem",
            "-CAkey",
            "int.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    let chain: Vec<Vec<u8>> = ["leaf.pem", "int.pem"]
        .iter()
        .flat_map(|f| pki::pem::certificates(&std::fs::read(d.join(f)).unwrap()).unwrap())
        .collect();
    let verifier = PeerVerifier::new(RootStore::from_dir(&d.join("roots")).unwrap());
    let peer = verifier
        .verify_chain(
            &chain,
            SystemTime::now(),
            &IkeIdentity::Fqdn("nfs.openssl.test".into()),
        )
        .unwrap();
    assert_eq!(peer.public_key_info_der(), key.public_key_info_der());
    assert!(verifier
        .verify_chain(&chain[..1], SystemTime::now(), &IkeIdentity::Any)
        .is_err());

    // A SHA-1-signed leaf is refused as such, not reported as a forgery.
    ok(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "ours.csr",
            "-CA",
            "int.pem",
            "-CAkey",
            "int.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-sha1",
            "-extfile",
            "leaf.ext",
            "-out",
            "sha1.pem",
        ],
    );
    let mut sha1_chain =
        pki::pem::certificates(&std::fs::read(d.join("sha1.pem")).unwrap()).unwrap();
    sha1_chain.push(chain[1].clone());
    match verifier.verify_chain(&sha1_chain, SystemTime::now(), &IkeIdentity::Any) {
        Err(pki::ChainError::Rejected { reason, .. }) => {
            assert!(reason.contains("SHA-1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // CERTREQ: SHA-1 over the root's SubjectPublicKeyInfo, as OpenSSL computes it.
    ok(
        d,
        &[
            "x509",
            "-in",
            "roots/openssl-root.pem",
            "-pubkey",
            "-noout",
            "-out",
            "root-pub.pem",
        ],
    );
    ok(
        d,
        &[
            "pkey",
            "-pubin",
            "-in",
            "root-pub.pem",
            "-outform",
            "DER",
            "-out",
            "root-pub.der",
        ],
    );
    let sha1 = ok(d, &["dgst", "-sha1", "-binary", "root-pub.der"]);
    let roots = RootStore::from_dir(&d.join("roots")).unwrap();
    assert_eq!(roots.certreq_authorities(), sha1);
    assert_eq!(
        pki::certreq_key_hash(&std::fs::read(d.join("root-pub.der")).unwrap()).to_vec(),
        sha1
    );

    // Signatures: OpenSSL verifies ours, we verify OpenSSL's, PKCS#1 v1.5 and PSS.
    let octets = b"RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)";
    std::fs::write(d.join("octets"), octets).unwrap();
    ok(
        d,
        &["pkey", "-in", "host.key", "-pubout", "-out", "pub.pem"],
    );
    for (hash, name) in [
        (HashAlgorithm::Sha256, "-sha256"),
        (HashAlgorithm::Sha384, "-sha384"),
        (HashAlgorithm::Sha512, "-sha512"),
    ] {
        for pss in [false, true] {
            let scheme = if pss {
                SignatureScheme::RsaPss(hash)
            } else {
                SignatureScheme::RsaPkcs1(hash)
            };
            let pss_opts: &[&str] = if pss {
                &[
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-sigopt",
                    "rsa_pss_saltlen:digest",
                ]
            } else {
                &[]
            };
            std::fs::write(d.join("ours.sig"), key.sign(scheme, octets).unwrap()).unwrap();
            let mut args = vec!["dgst", name, "-verify", "pub.pem", "-signature", "ours.sig"];
            args.extend_from_slice(pss_opts);
            args.push("octets");
            let out = ok(d, &args);
            assert!(
                String::from_utf8_lossy(&out).contains("Verified OK"),
                "{scheme}"
            );

            let mut args = vec!["dgst", name, "-sign", "host.key", "-out", "theirs.sig"];
            args.extend_from_slice(pss_opts);
            args.push("octets");
            ok(d, &args);
            let theirs = std::fs::read(d.join("theirs.sig")).unwrap();
            verifier
                .verify_signature(&peer, &scheme.algorithm_identifier(), octets, &theirs)
                .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        }
    }
}
