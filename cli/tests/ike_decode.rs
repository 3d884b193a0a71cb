//! `ibm-ipsec ike decode` run as a user would: on captured strongSwan messages, with and
//! without the non-ESP marker, and on broken files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ike/tests/data/strongswan")
        .join(name)
}

fn decode(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ibm-ipsec"))
        .args(["ike", "decode"])
        .args(args)
        .arg(file)
        .env("IBM_IPSEC_LOG", "off")
        .output()
        .expect("run ibm-ipsec")
}

fn json(file: &Path) -> serde_json::Value {
    let out = decode(&["--json"], file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn types(v: &serde_json::Value) -> Vec<String> {
    v["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p["notify"].as_str() {
            Some(n) => format!("N({n})"),
            None => p["type"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
fn decodes_a_strongswan_ike_sa_init_request() {
    let v = json(&fixture("cert-ecp384/01-ike_sa_init-i.bin"));
    assert_eq!(v["exchange"], "IKE_SA_INIT");
    assert_eq!(v["message_id"], 0);
    assert_eq!(v["flags"], serde_json::json!(["I"]));
    assert_eq!(v["responder_spi"], "0000000000000000");
    assert_eq!(v["initiator_spi"].as_str().unwrap().len(), 16);
    assert_eq!(v["non_esp_marker"], false);
    assert_eq!(
        types(&v),
        [
            "SA",
            "KE",
            "Ni",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(IKEV2_FRAGMENTATION_SUPPORTED)",
            "N(SIGNATURE_HASH_ALGORITHMS)",
            "N(REDIRECT_SUPPORTED)",
        ]
    );
    let transforms = &v["payloads"][0]["proposals"][0]["transforms"];
    assert_eq!(transforms[0]["id"], "ENCR_AES_CBC");
    assert_eq!(transforms[0]["key_length"], 256);
    assert_eq!(v["payloads"][1]["group"], "ECP_384");
}

#[test]
fn decodes_responses_fragments_and_informational() {
    let v = json(&fixture("cert-ecp384/02-ike_sa_init-r.bin"));
    assert_eq!(v["flags"], serde_json::json!(["R"]));
    assert_eq!(v["payloads"][2]["type"], "Nr");
    assert!(types(&v).contains(&"CERTREQ".to_string()));

    let v = json(&fixture("cert-ecp384/03-ike_auth-i.bin"));
    assert_eq!(v["exchange"], "IKE_AUTH");
    assert_eq!(v["payloads"][0]["type"], "SKF");
    assert_eq!(v["payloads"][0]["fragment_number"], 1);
    assert_eq!(v["payloads"][0]["total_fragments"], 2);
    assert_eq!(v["payloads"][0]["next_payload"], "IDi");

    let v = json(&fixture("psk/05-informational-i.bin"));
    assert_eq!(v["exchange"], "INFORMATIONAL");
    assert_eq!(v["message_id"], 2);
    assert_eq!(v["payloads"][0]["type"], "SK");
}

#[test]
fn detects_the_non_esp_marker_and_prints_text() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(fixture("cert-ecp384/04-ike_auth-i.bin")).unwrap();
    let marked = dir.path().join("marked.bin");
    std::fs::write(&marked, [&[0u8; 4][..], &original].concat()).unwrap();
    let v = json(&marked);
    assert_eq!(v["non_esp_marker"], true);
    assert_eq!(v["payloads"][0]["fragment_number"], 2);

    let out = decode(&[], &marked);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("IKE_AUTH request, message id 1"), "{text}");
    assert!(text.contains("fragment 2/2"), "{text}");
}

#[test]
fn decodes_a_decrypted_ike_auth_chain() {
    let out = decode(&["--inner", "IDr"], &fixture("psk/04-ike_auth-r.plain"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("IDr      ID_FQDN:share.ibm-ipsec.test"),
        "{text}"
    );
    assert!(text.contains("TSi      10.213.7.1["), "{text}");
    let out = decode(
        &["--json", "--inner", "36"],
        &fixture("psk/04-ike_auth-r.plain"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["first_payload"], "IDr");
    assert_eq!(v["payloads"][1]["method"], "SHARED_KEY_MIC");
    // The wrong first type is a clean error.
    let out = decode(&["--inner", "SA"], &fixture("psk/04-ike_auth-r.plain"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
}

#[test]
fn malformed_files_fail_with_one_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(fixture("cert-ecp384/01-ike_sa_init-i.bin")).unwrap();
    for (name, bytes) in [
        ("truncated.bin", original[..original.len() - 10].to_vec()),
        ("header-only.bin", original[..20].to_vec()),
        ("empty.bin", Vec::new()),
        ("garbage.bin", vec![0xff; 100]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = decode(&["--json"], &path);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty(), "{name}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let out = decode(&[], &dir.path().join("missing.bin"));
    assert_eq!(out.status.code(), Some(1));
}
