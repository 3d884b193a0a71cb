//! The client against the real test server on a loopback port.

mod common;

use std::time::Duration;

use common::{raw_request, start, CSR_WITH_CN, GOOD_CSR};
use metadata::api::{Api, ErrorBody};
use metadata::renewal::{Health, Now, RenewalPolicy, RenewalSchedule, Validity};
use metadata::{Client, ClientConfig, Error, RetryPolicy, Step};

fn client(url: String, api: Api) -> Client {
    Client::new(ClientConfig {
        base_url: url,
        api,
        retry: RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
        ..ClientConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn happy_path_current_api() {
    let (server, _dir) = start().await;
    let c = client(server.url(), Api::Current);
    let issued = c.fetch_certificate(&GOOD_CSR, 600).await.unwrap();
    assert!(issued.leaf_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(issued.intermediates_pem.len(), 1);
    assert_eq!(issued.expires_in, Some(600));
    assert!(issued.created_at.as_deref().unwrap().ends_with('Z'));
    assert!(issued.id.is_some());
    assert_eq!(server.control().requests(), 2);
    assert_eq!(server.control().certificates_issued(), 1);
    common::check_issued(&issued, 600);
    server.shutdown().await;
}

#[tokio::test]
async fn a_shorter_granted_lifetime_is_what_the_certificate_and_the_schedule_follow() {
    let (server, _dir) = start().await;
    server
        .control()
        .set_certificate_lifetime(Some(Duration::from_secs(30)));
    let c = client(server.url(), Api::Current);
    // Asked for 600 s (the request stays within 300–3600), granted 30 s.
    let issued = c.fetch_certificate(&GOOD_CSR, 600).await.unwrap();
    assert_eq!(issued.expires_in, Some(30));
    let validity = Validity::of_certificate_pem(&issued.leaf_pem).unwrap();
    assert_eq!(validity.lifetime(), Duration::from_secs(30));
    let now = Now {
        wall: validity.not_before,
        mono: std::time::Instant::now(),
    };
    let schedule = RenewalSchedule::new(RenewalPolicy::new(70).unwrap(), validity, now);
    assert_eq!(
        schedule.renew_at(),
        validity.not_before + Duration::from_secs(21)
    );
    assert_eq!(
        schedule.health(now),
        Health::Valid {
            renew_in: Duration::from_secs(21)
        }
    );
    server.control().set_certificate_lifetime(None);
    let issued = c.fetch_certificate(&GOOD_CSR, 600).await.unwrap();
    assert_eq!(issued.expires_in, Some(600));
    server.shutdown().await;
}

#[tokio::test]
async fn legacy_api_paths() {
    let (server, _dir) = start().await;
    let c = client(server.url(), Api::Legacy);
    let issued = c.fetch_certificate(&GOOD_CSR, 300).await.unwrap();
    assert_eq!(issued.expires_in, Some(300));
    // The legacy paths are gone from the current version date on, and vice versa.
    let (status, body) = raw_request(
        server.local_addr(),
        "PUT",
        "/instance_identity/v1/token?version=2025-08-26",
        &[("Metadata-Flavor", "ibm")],
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = raw_request(
        server.local_addr(),
        "PUT",
        "/identity/v1/token?version=2024-01-01",
        &[("Metadata-Flavor", "ibm")],
        "",
    )
    .await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn current_client_against_a_legacy_only_path_says_so() {
    let (server, _dir) = start().await;
    // Point the client below a prefix the server does not know: every path 404s.
    let c = client(format!("{}/nothing-here", server.url()), Api::Current);
    let err = c.fetch_certificate(&GOOD_CSR, 300).await.unwrap_err();
    assert_eq!(err.http_status(), Some(404));
    assert_eq!(err.service_code(), Some("not_found"));
    assert!(err.to_string().contains("metadata_api = legacy"), "{err}");
    assert_eq!(err.exit_code(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_refused_with_401() {
    let (server, _dir) = start().await;
    let c = client(server.url(), Api::Current);
    let token = c.token(300).await.unwrap();
    server.control().expire_tokens();
    let err = c.certificate(&token, &GOOD_CSR, 600).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Service {
                step: Step::Certificate,
                status: 401,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.service_code(), Some("unauthenticated"));
    assert!(
        err.to_string().contains("The access token has expired."),
        "{err}"
    );
    assert_eq!(err.exit_code(), 3);
    // fetch_certificate gets its own fresh token.
    c.fetch_certificate(&GOOD_CSR, 600).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn refused_token_is_replaced_once_then_the_error_surfaces() {
    let (server, _dir) = start().await;
    server.control().issue_expired_tokens(true);
    let c = client(server.url(), Api::Current);
    let err = c.fetch_certificate(&GOOD_CSR, 600).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401), "{err}");
    // token, certificate (401), fresh token, certificate (401): one refresh, no loop.
    assert_eq!(server.control().requests(), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn token_call_needs_the_flavor_header() {
    let (server, _dir) = start().await;
    let addr = server.local_addr();
    let (status, body) = raw_request(
        addr,
        "PUT",
        "/identity/v1/token?version=2025-08-26",
        &[],
        "",
    )
    .await;
    assert_eq!(status, 400);
    let parsed: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed.errors[0].code, "missing_field");
    assert_eq!(
        parsed.errors[0].target.as_ref().unwrap().name,
        "Metadata-Flavor"
    );
    assert_eq!(parsed.status_code, Some(400));
    assert!(parsed.trace.is_some());
    let (status, body) = raw_request(
        addr,
        "PUT",
        "/identity/v1/token?version=2025-08-26",
        &[("Metadata-Flavor", "google")],
        "",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_value"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn certificate_call_needs_a_bearer_token() {
    let (server, _dir) = start().await;
    let addr = server.local_addr();
    let path = "/identity/v1/certificates?version=2025-08-26";
    let body = r#"{"csr":"x"}"#;
    let (status, text) = raw_request(addr, "POST", path, &[], body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("unauthenticated"));
    let (status, text) = raw_request(
        addr,
        "POST",
        path,
        &[("Authorization", "Bearer nope")],
        body,
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("The access token is not valid."), "{text}");
    let (status, _) =
        raw_request(addr, "POST", path, &[("Authorization", "Basic abc")], body).await;
    assert_eq!(status, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn csr_with_common_name_is_rejected_and_the_rule_reaches_the_user() {
    let (server, _dir) = start().await;
    let c = client(server.url(), Api::Current);
    let err = c.fetch_certificate(&CSR_WITH_CN, 600).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.http_status(), Some(400), "{text}");
    assert_eq!(err.exit_code(), 3);
    assert!(text.contains("refused the certificate request"), "{text}");
    assert!(text.to_lowercase().contains("common name"), "{text}");
    assert!(
        text.contains(&format!("{}/identity/v1/certificates", server.url())),
        "{text}"
    );
    assert_eq!(server.control().certificates_issued(), 0);
    // Not retried: a 4xx cannot change by asking again.
    assert_eq!(server.control().requests(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn expires_in_out_of_range_is_invalid_value() {
    let (server, _dir) = start().await;
    let addr = server.local_addr();
    let (status, text) = raw_request(
        addr,
        "PUT",
        "/identity/v1/token?version=2025-08-26",
        &[("Metadata-Flavor", "ibm")],
        r#"{"expires_in":4}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        text.contains("invalid_value") && text.contains("expires_in"),
        "{text}"
    );
    let (status, token) = raw_request(
        addr,
        "PUT",
        "/identity/v1/token?version=2025-08-26",
        &[("Metadata-Flavor", "ibm")],
        r#"{"expires_in":3600}"#,
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let token: serde_json::Value = serde_json::from_str(&token).unwrap();
    assert_eq!(token["expires_in"], 3600);
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    for bad in [299, 3601] {
        let body = serde_json::json!({"csr": *GOOD_CSR, "expires_in": bad}).to_string();
        let (status, text) = raw_request(
            addr,
            "POST",
            "/identity/v1/certificates?version=2025-08-26",
            &[("Authorization", &bearer)],
            &body,
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(
            text.contains("invalid_value") && text.contains("between 300 and 3600"),
            "{text}"
        );
    }
    let (status, text) = raw_request(
        addr,
        "POST",
        "/identity/v1/certificates?version=2025-08-26",
        &[("Authorization", &bearer)],
        r#"{"csr":"x","colour":1}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("unknown_field"), "{text}");
    let (status, text) = raw_request(
        addr,
        "POST",
        "/identity/v1/certificates?version=2025-08-26",
        &[("Authorization", &bearer)],
        r#"{"expires_in":600}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("missing_field"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn server_errors_then_success_is_retried() {
    let (server, _dir) = start().await;
    server.control().fail_next(2, 503);
    let c = client(server.url(), Api::Current);
    c.fetch_certificate(&GOOD_CSR, 600).await.unwrap();
    assert_eq!(server.control().requests(), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn server_errors_forever_are_bounded_and_say_so() {
    let (server, _dir) = start().await;
    server.control().fail_next(u32::MAX, 500);
    let c = client(server.url(), Api::Current);
    let err = c.fetch_certificate(&GOOD_CSR, 600).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Service {
                status: 500,
                attempts: 3,
                step: Step::Token,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("HTTP 500 service_error: injected failure"),
        "{text}"
    );
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert_eq!(err.exit_code(), 2);
    assert_eq!(server.control().requests(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = client(format!("http://{addr}"), Api::Current);
    let err = c.fetch_certificate(&GOOD_CSR, 600).await.unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "http://{addr}/identity/v1/token?version=2025-08-26"
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn slow_answer_hits_the_request_timeout() {
    let (server, _dir) = start().await;
    server.control().set_delay(Duration::from_secs(3));
    let c = Client::new(ClientConfig {
        base_url: server.url(),
        request_timeout: Duration::from_millis(200),
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = c.token(300).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("no complete answer within 200 ms"),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn disabled_metadata_service_says_to_enable_it() {
    let (server, _dir) = start().await;
    server.control().set_disabled(true);
    let c = client(server.url(), Api::Current);
    let err = c.fetch_certificate(&GOOD_CSR, 600).await.unwrap_err();
    assert_eq!(err.http_status(), Some(403));
    assert_eq!(err.service_code(), Some("unauthorized"));
    assert!(
        err.to_string()
            .contains("enable the metadata service on this instance"),
        "{err}"
    );
    assert_eq!(server.control().requests(), 1, "403 is not retried");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let (server, _dir) = start().await;
    let addr = server.local_addr();
    let (status, text) = raw_request(
        addr,
        "GET",
        "/metadata/v1/instance?version=2025-08-26",
        &[],
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert!(text.contains("not_found"), "{text}");
    let (status, _) = raw_request(
        addr,
        "GET",
        "/identity/v1/token?version=2025-08-26",
        &[("Metadata-Flavor", "ibm")],
        "",
    )
    .await;
    assert_eq!(status, 405);
    let (status, text) = raw_request(
        addr,
        "PUT",
        "/identity/v1/token",
        &[("Metadata-Flavor", "ibm")],
        "",
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("version"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn root_ca_is_written_to_the_state_dir() {
    let (server, dir) = start().await;
    let path = server.root_ca_path().unwrap().clone();
    assert!(path.starts_with(dir.path()));
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
    server.shutdown().await;
}

#[tokio::test]
async fn csr_asking_for_a_ca_certificate_is_rejected() {
    let (server, _dir) = start().await;
    let key = pki::HostKey::generate(pki::KeySize::Rsa2048).unwrap();
    let is_ca = x509_cert::ext::pkix::BasicConstraints {
        ca: true,
        path_len_constraint: None,
    };
    let ext = pki::ca::extension(&is_ca, true).unwrap();
    let der = pki::ca::forge_csr(&key, "C=US,O=IBM Corporation", &[ext], None).unwrap();
    let csr = pki::pem::encode("CERTIFICATE REQUEST", &der);
    let c = client(server.url(), Api::Current);
    let err = c.fetch_certificate(&csr, 600).await.unwrap_err();
    assert_eq!(err.http_status(), Some(400));
    assert!(err.to_string().contains("CA certificate"), "{err}");
    let err = c
        .fetch_certificate(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            600,
        )
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(400));
    assert!(err.to_string().contains("The CSR is not valid"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn rejected_csr_message_as_the_user_sees_it() {
    let (server, _dir) = start().await;
    let c = client(server.url(), Api::Current);
    let err = c.fetch_certificate(&CSR_WITH_CN, 600).await.unwrap_err();
    let expected = format!(
        "metadata service at {}/identity/v1/certificates?version=2025-08-26 refused the certificate \
         request: HTTP 400 invalid_value: The metadata service rejects CSRs with a Common Name: it \
         sets CN to the instance id itself.",
        server.url()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");
    server.shutdown().await;
}
