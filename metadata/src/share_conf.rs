//! `share.conf`: the IBM mount helper's configuration file plus our own keys.
//!
//! IBM's documentation names `/etc/ibmcloud/share.conf`; the helper's code reads
//! `/etc/ibmshare/share.conf`. We read the first that exists, docs path first, and say which.
//! The format is `key = value` per line (spaces around `=` optional, a value may be wrapped in
//! double quotes), `#` starts a comment line, blank lines are ignored. Unknown keys, repeated
//! keys and bad values are errors naming the file and line, so a typo never silently falls
//! back to a default.
//!
//! [`parse`] takes text and touches nothing else, so a fuzz target can call it directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::{self, Api};
use crate::client::{ClientConfig, RetryPolicy, DEFAULT_URL};
use crate::renewal::{RenewalPolicy, RENEW_AT_PERCENT_RANGE};
use crate::Error;

/// IBM's documented location, read first.
pub const DOCS_PATH: &str = "/etc/ibmcloud/share.conf";
/// Where the IBM mount helper's code reads it, read second.
pub const HELPER_PATH: &str = "/etc/ibmshare/share.conf";
/// Default directory for the host key and certificates.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ibm-ipsec";

/// Largest file we read: the real one is a handful of lines.
const MAX_FILE: u64 = 64 * 1024;

/// RSA key sizes we accept (`key_bits`).
pub const KEY_BITS: [u32; 3] = [2048, 3072, 4096];

/// The settings, with defaults for everything the file leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConf {
    /// `region`: which region root CAs to trust (`all` or a region name such as `us-south`).
    pub region: Option<String>,
    /// `certificate_duration_seconds` (300–3600, default 3600).
    pub certificate_duration: Duration,
    /// `metadata_retry_count`: retries after the first attempt of each metadata request.
    /// `None` keeps the client's default.
    pub metadata_retry_count: Option<u32>,
    /// `metadata_retry_interval` (seconds): the longest wait between two retries. `None` keeps
    /// the client's default.
    pub metadata_retry_interval: Option<Duration>,
    /// `metadata_url` (ours): default `http://169.254.169.254`.
    pub metadata_url: String,
    /// `metadata_api = current|legacy` (ours).
    pub metadata_api: Api,
    /// `metadata_ca_file` (ours): CA that signs the service's https certificate.
    pub metadata_ca_file: Option<PathBuf>,
    /// `key_bits` (ours): host RSA key size, 2048, 3072 or 4096 (default).
    pub key_bits: u32,
    /// `state_dir` (ours): where the host key and certificates live.
    pub state_dir: PathBuf,
    /// `renew_at_percent` (ours): 70–75, default 75.
    pub renew_at_percent: u8,
}

impl Default for ShareConf {
    fn default() -> Self {
        ShareConf {
            region: None,
            certificate_duration: Duration::from_secs(u64::from(api::DEFAULT_CERTIFICATE_LIFETIME)),
            metadata_retry_count: None,
            metadata_retry_interval: None,
            metadata_url: DEFAULT_URL.to_string(),
            metadata_api: Api::Current,
            metadata_ca_file: None,
            key_bits: 4096,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            renew_at_percent: 75,
        }
    }
}

impl ShareConf {
    /// `certificate_duration_seconds` as the API's `expires_in`.
    pub fn certificate_lifetime_secs(&self) -> u32 {
        u32::try_from(self.certificate_duration.as_secs())
            .unwrap_or(api::DEFAULT_CERTIFICATE_LIFETIME)
    }

    /// The metadata client settings this file asks for.
    pub fn client_config(&self) -> ClientConfig {
        let mut retry = RetryPolicy::default();
        if let Some(count) = self.metadata_retry_count {
            retry.attempts = count.saturating_add(1);
        }
        if let Some(interval) = self.metadata_retry_interval {
            retry.max_backoff = interval;
            retry.initial_backoff = retry.initial_backoff.min(interval);
        }
        ClientConfig {
            base_url: self.metadata_url.clone(),
            api: self.metadata_api,
            ca_file: self.metadata_ca_file.clone(),
            retry,
            ..ClientConfig::default()
        }
    }

    /// The renewal policy this file asks for.
    pub fn renewal_policy(&self) -> RenewalPolicy {
        // parse() has already checked the range; the default is the fallback for hand-built values.
        RenewalPolicy::new(self.renew_at_percent).unwrap_or_default()
    }
}

/// A parsed file and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConf {
    /// The settings.
    pub conf: ShareConf,
    /// The file read, or `None` when none existed and the defaults apply.
    pub source: Option<PathBuf>,
    /// Files that also exist but were not read because an earlier one won.
    pub shadowed: Vec<PathBuf>,
}

/// Reads the first of [`DOCS_PATH`], [`HELPER_PATH`] that exists.
pub fn load_default() -> Result<LoadedConf, Error> {
    load(&[PathBuf::from(DOCS_PATH), PathBuf::from(HELPER_PATH)])
}

/// Reads the first of `candidates` that exists; defaults when none does.
pub fn load(candidates: &[PathBuf]) -> Result<LoadedConf, Error> {
    let mut existing = candidates.iter().filter(|p| p.exists());
    let Some(first) = existing.next() else {
        return Ok(LoadedConf {
            conf: ShareConf::default(),
            source: None,
            shadowed: Vec::new(),
        });
    };
    let conf = load_file(first)?;
    Ok(LoadedConf {
        conf,
        source: Some(first.clone()),
        shadowed: existing.cloned().collect(),
    })
}

/// Reads and parses one file.
pub fn load_file(path: &Path) -> Result<ShareConf, Error> {
    use std::io::Read;
    let io = |source| Error::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_FILE {
        return Err(Error::Config {
            origin: path.display().to_string(),
            line: 0,
            message: format!("file is larger than {MAX_FILE} bytes"),
        });
    }
    parse(&text, &path.display().to_string())
}

/// Parses the text of a `share.conf`; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<ShareConf, Error> {
    let mut conf = ShareConf::default();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| Error::Config {
            origin: origin.to_string(),
            line,
            message,
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(err(format!(
                "expected `key = value`, found {:?}",
                excerpt(trimmed)
            )));
        };
        let key = key.trim();
        let value = unquote(value.trim()).map_err(err)?;
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(err(format!(
                "{key} is set again (first set on line {first})"
            )));
        }
        seen.push((key, line));
        apply(&mut conf, key, value).map_err(err)?;
    }
    Ok(conf)
}

fn apply(conf: &mut ShareConf, key: &str, value: &str) -> Result<(), String> {
    match key {
        "region" => {
            let ok = !value.is_empty()
                && value.len() <= 32
                && value.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok {
                return Err(format!(
                    "region {:?} is not a region name (lowercase letters, digits, - and _), e.g. us-south or all",
                    excerpt(value)
                ));
            }
            conf.region = Some(value.to_string());
        }
        "certificate_duration_seconds" => {
            let secs = number(key, value)?;
            if !api::CERTIFICATE_LIFETIME_RANGE.contains(&secs) {
                return Err(format!(
                    "certificate_duration_seconds = {secs} is outside 300–3600 seconds"
                ));
            }
            conf.certificate_duration = Duration::from_secs(u64::from(secs));
        }
        "metadata_retry_count" => {
            let count = number(key, value)?;
            if count > 1000 {
                return Err(format!("metadata_retry_count = {count} is more than 1000"));
            }
            conf.metadata_retry_count = Some(count);
        }
        "metadata_retry_interval" => {
            let secs = number(key, value)?;
            if !(1..=3600).contains(&secs) {
                return Err(format!(
                    "metadata_retry_interval = {secs} is outside 1–3600 seconds"
                ));
            }
            conf.metadata_retry_interval = Some(Duration::from_secs(u64::from(secs)));
        }
        "metadata_url" => {
            if !(value.starts_with("http://") || value.starts_with("https://")) || value.len() > 512
            {
                return Err(format!(
                    "metadata_url {:?} must start with http:// or https://",
                    excerpt(value)
                ));
            }
            conf.metadata_url = value.to_string();
        }
        "metadata_api" => conf.metadata_api = value.parse()?,
        "metadata_ca_file" => conf.metadata_ca_file = Some(absolute(key, value)?),
        "key_bits" => {
            let bits = number(key, value)?;
            if !KEY_BITS.contains(&bits) {
                return Err(format!("key_bits = {bits}: use 2048, 3072 or 4096"));
            }
            conf.key_bits = bits;
        }
        "state_dir" => conf.state_dir = absolute(key, value)?,
        "renew_at_percent" => {
            let percent = number(key, value)?;
            let percent = u8::try_from(percent).unwrap_or(u8::MAX);
            if !RENEW_AT_PERCENT_RANGE.contains(&percent) {
                return Err(format!("renew_at_percent = {value} is outside 70–75"));
            }
            conf.renew_at_percent = percent;
        }
        other => {
            return Err(format!(
                "unknown key {:?} (known: region, certificate_duration_seconds, \
                 metadata_retry_count, metadata_retry_interval, metadata_url, metadata_api, \
                 metadata_ca_file, key_bits, state_dir, renew_at_percent)",
                excerpt(other)
            ))
        }
    }
    Ok(())
}

fn number(key: &str, value: &str) -> Result<u32, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{key} = {:?} is not a whole number",
            excerpt(value)
        ));
    }
    value
        .parse()
        .map_err(|_| format!("{key} = {} is too large", excerpt(value)))
}

fn absolute(key: &str, value: &str) -> Result<PathBuf, String> {
    if !value.starts_with('/') {
        return Err(format!(
            "{key} = {:?} must be an absolute path",
            excerpt(value)
        ));
    }
    Ok(PathBuf::from(value))
}

fn unquote(value: &str) -> Result<&str, String> {
    match value.strip_prefix('"') {
        None => Ok(value),
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains('"'))
            .ok_or_else(|| format!("unbalanced quotes in {:?}", excerpt(value))),
    }
}

/// At most 60 characters of a value, for messages.
fn excerpt(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibm_style_file_parses() {
        let text = "# IBM mount helper\nregion=us-south\ncertificate_duration_seconds = 600\n\n\
                    metadata_retry_count=25\nmetadata_retry_interval=60\n";
        let conf = parse(text, "share.conf").unwrap();
        assert_eq!(conf.region.as_deref(), Some("us-south"));
        assert_eq!(conf.certificate_duration, Duration::from_secs(600));
        assert_eq!(conf.certificate_lifetime_secs(), 600);
        assert_eq!(conf.metadata_retry_count, Some(25));
        let client = conf.client_config();
        assert_eq!(client.retry.attempts, 26);
        assert_eq!(client.retry.max_backoff, Duration::from_secs(60));
        assert_eq!(client.base_url, "http://169.254.169.254");
        assert_eq!(client.api, Api::Current);
    }

    #[test]
    fn our_keys_parse() {
        let text = "metadata_url = \"https://api.metadata.cloud.ibm.com\"\nmetadata_api=legacy\n\
                    metadata_ca_file=/etc/ibm-ipsec/metadata-ca.pem\nkey_bits=3072\n\
                    state_dir=/srv/ipsec\nrenew_at_percent=70\n";
        let conf = parse(text, "f").unwrap();
        assert_eq!(conf.metadata_url, "https://api.metadata.cloud.ibm.com");
        assert_eq!(conf.metadata_api, Api::Legacy);
        assert_eq!(
            conf.metadata_ca_file,
            Some(PathBuf::from("/etc/ibm-ipsec/metadata-ca.pem"))
        );
        assert_eq!(conf.key_bits, 3072);
        assert_eq!(conf.state_dir, PathBuf::from("/srv/ipsec"));
        assert_eq!(conf.renewal_policy().renew_at_percent(), 70);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let conf = parse("\n# nothing\n   \n", "f").unwrap();
        assert_eq!(conf, ShareConf::default());
        assert_eq!(conf.certificate_lifetime_secs(), 3600);
        assert_eq!(conf.key_bits, 4096);
        assert_eq!(conf.renewal_policy().renew_at_percent(), 75);
    }

    fn error_of(text: &str) -> String {
        parse(text, "/etc/ibmcloud/share.conf")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_file_line_and_rule() {
        let cases = [
            (
                "region=us-south\ncolour=blue\n",
                ":2: unknown key \"colour\"",
            ),
            (
                "certificate_duration_seconds=299\n",
                ":1: certificate_duration_seconds = 299 is outside 300–3600",
            ),
            ("certificate_duration_seconds=3601\n", "outside 300–3600"),
            ("certificate_duration_seconds=1h\n", "is not a whole number"),
            ("certificate_duration_seconds=-5\n", "is not a whole number"),
            ("certificate_duration_seconds=99999999999\n", "is too large"),
            ("\n\nregion\n", ":3: expected `key = value`"),
            (
                "region=us-south\nregion=eu-de\n",
                ":2: region is set again (first set on line 1)",
            ),
            ("region=US South\n", "is not a region name"),
            (
                "metadata_api=bare-metal\n",
                "unknown metadata API \"bare-metal\"",
            ),
            (
                "metadata_url=169.254.169.254\n",
                "must start with http:// or https://",
            ),
            ("metadata_ca_file=ca.pem\n", "must be an absolute path"),
            ("key_bits=1024\n", "use 2048, 3072 or 4096"),
            ("renew_at_percent=80\n", "outside 70–75"),
            ("renew_at_percent=300\n", "outside 70–75"),
            ("metadata_retry_interval=0\n", "outside 1–3600"),
            ("metadata_retry_count=5000\n", "more than 1000"),
            ("region=\"us-south\n", "unbalanced quotes"),
        ];
        for (text, expected) in cases {
            let e = error_of(text);
            assert!(e.starts_with("/etc/ibmcloud/share.conf:"), "{e}");
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn long_garbage_is_bounded_in_messages() {
        let text = format!("{}=1\n", "k".repeat(10_000));
        assert!(error_of(&text).len() < 400);
    }

    #[test]
    fn load_prefers_the_first_existing_file_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("ibmcloud.conf");
        let helper = dir.path().join("ibmshare.conf");
        let none = load(&[docs.clone(), helper.clone()]).unwrap();
        assert_eq!(none.source, None);
        assert_eq!(none.conf, ShareConf::default());

        std::fs::write(&helper, "certificate_duration_seconds=900\n").unwrap();
        let one = load(&[docs.clone(), helper.clone()]).unwrap();
        assert_eq!(one.source.as_ref(), Some(&helper));
        assert_eq!(one.conf.certificate_duration, Duration::from_secs(900));

        std::fs::write(&docs, "certificate_duration_seconds=300\n").unwrap();
        let both = load(&[docs.clone(), helper.clone()]).unwrap();
        assert_eq!(both.source.as_ref(), Some(&docs));
        assert_eq!(both.shadowed, vec![helper.clone()]);
        assert_eq!(both.conf.certificate_duration, Duration::from_secs(300));

        std::fs::write(&docs, "bogus\n").unwrap();
        let e = load(&[docs.clone(), helper]).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:1:", docs.display())), "{e}");
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share.conf");
        std::fs::write(&path, "#".repeat(70_000)).unwrap();
        assert!(load_file(&path)
            .unwrap_err()
            .to_string()
            .contains("larger than"));
    }
}
