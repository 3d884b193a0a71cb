//! The identity API's paths, version dates, limits and JSON shapes, shared by the client and the
//! test server (`shared/metadata-api.md`).

use serde::{Deserialize, Serialize};

/// Version date of the current identity API (`/identity/v1/*`), the same for virtual servers
/// and bare metal. From this date on the service answers 404 on the legacy paths.
pub const CURRENT_VERSION: &str = "2025-08-26";

/// Version date we send on the legacy paths (`/instance_identity/v1/*`): the oldest date the
/// service documents for them, accepted by every service that still has them.
pub const LEGACY_VERSION: &str = "2022-03-01";

/// The header every token request must carry (`Metadata-Flavor: ibm`).
pub const FLAVOR_HEADER: &str = "metadata-flavor";
/// The only accepted value of [`FLAVOR_HEADER`].
pub const FLAVOR_VALUE: &str = "ibm";

/// Allowed `expires_in` of an access token, in seconds.
pub const TOKEN_LIFETIME_RANGE: std::ops::RangeInclusive<u32> = 5..=3600;
/// The token lifetime the service uses when the request names none.
pub const DEFAULT_TOKEN_LIFETIME: u32 = 300;
/// Allowed certificate lifetime (`certificate_duration_seconds`, `expires_in`), in seconds.
pub const CERTIFICATE_LIFETIME_RANGE: std::ops::RangeInclusive<u32> = 300..=3600;
/// The certificate lifetime used when none is configured.
pub const DEFAULT_CERTIFICATE_LIFETIME: u32 = 3600;

/// Which generation of the identity API to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// `/identity/v1/token` and `/identity/v1/certificates`, version [`CURRENT_VERSION`].
    #[default]
    Current,
    /// `/instance_identity/v1/token` and `/instance_identity/v1/certificates`, version
    /// [`LEGACY_VERSION`]: for services that predate the current API.
    Legacy,
}

impl Api {
    /// The `version` query parameter sent with every request.
    pub const fn version(self) -> &'static str {
        match self {
            Api::Current => CURRENT_VERSION,
            Api::Legacy => LEGACY_VERSION,
        }
    }

    /// Path of the token operation.
    pub const fn token_path(self) -> &'static str {
        match self {
            Api::Current => "/identity/v1/token",
            Api::Legacy => "/instance_identity/v1/token",
        }
    }

    /// Path of the certificate operation.
    pub const fn certificates_path(self) -> &'static str {
        match self {
            Api::Current => "/identity/v1/certificates",
            Api::Legacy => "/instance_identity/v1/certificates",
        }
    }

    /// The name used in configuration files (`metadata_api = current|legacy`).
    pub const fn name(self) -> &'static str {
        match self {
            Api::Current => "current",
            Api::Legacy => "legacy",
        }
    }
}

impl std::str::FromStr for Api {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "current" => Ok(Api::Current),
            "legacy" => Ok(Api::Legacy),
            other => Err(format!(
                "unknown metadata API {other:?} (expected current or legacy)"
            )),
        }
    }
}

/// Body of `PUT …/token`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Requested token lifetime in seconds ([`TOKEN_LIFETIME_RANGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
}

/// Answer to `PUT …/token`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339 expiry time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Lifetime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Body of `POST …/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// PKCS#10 CSR, PEM.
    pub csr: String,
    /// Requested certificate lifetime in seconds ([`CERTIFICATE_LIFETIME_RANGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
}

/// Answer to `POST …/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateResponse {
    /// PEM certificates: element 0 the leaf, then the intermediate(s).
    pub certificates: Vec<String>,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339 expiry time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Lifetime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
    /// The service's id for this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Error body: `{"errors":[…],"status_code":N,"trace":"…"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// One entry per problem; the first is the one shown.
    #[serde(default)]
    pub errors: Vec<ServiceError>,
    /// The HTTP status repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The service's request id, for support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// One entry of [`ErrorBody::errors`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceError {
    /// Machine-readable code (`invalid_value`, `unauthorized` …).
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Documentation link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_info: Option<String>,
    /// The field the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ErrorTarget>,
}

/// [`ServiceError::target`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorTarget {
    /// Field or header name.
    #[serde(default)]
    pub name: String,
    /// `field`, `header` or `parameter`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The offending value, when it is safe to echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_versions() {
        assert_eq!(Api::default(), Api::Current);
        assert_eq!(Api::Current.token_path(), "/identity/v1/token");
        assert_eq!(
            Api::Current.certificates_path(),
            "/identity/v1/certificates"
        );
        assert_eq!(Api::Legacy.token_path(), "/instance_identity/v1/token");
        assert_eq!(
            Api::Legacy.certificates_path(),
            "/instance_identity/v1/certificates"
        );
        assert!(Api::Legacy.version() < Api::Current.version());
        assert_eq!("legacy".parse::<Api>(), Ok(Api::Legacy));
        assert!("bare-metal".parse::<Api>().is_err());
    }

    #[test]
    fn documented_error_body_parses() {
        let body = r#"{"errors":[{"code":"invalid_value","message":"expires_in out of range",
            "more_info":"https://example.invalid/x","target":{"name":"expires_in","type":"field",
            "value":"12"}}],"status_code":400,"trace":"abc"}"#;
        let parsed: ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(parsed.errors[0].code, "invalid_value");
        assert_eq!(parsed.errors[0].target.as_ref().unwrap().kind, "field");
        assert_eq!(parsed.status_code, Some(400));
    }

    #[test]
    fn token_debug_redacts_the_secret() {
        let t = TokenResponse {
            access_token: "s3cret".into(),
            created_at: None,
            expires_at: None,
            expires_in: Some(300),
        };
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn requests_reject_unknown_fields() {
        assert!(serde_json::from_str::<TokenRequest>(r#"{"expires_in":5,"x":1}"#).is_err());
        assert!(serde_json::from_str::<CertificateRequest>(r#"{"csr":"a","y":1}"#).is_err());
        let r: CertificateRequest = serde_json::from_str(r#"{"csr":"a"}"#).unwrap();
        assert_eq!(r.expires_in, None);
    }
}
