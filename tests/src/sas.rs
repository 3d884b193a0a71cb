//! `swanctl --list-sas --pretty` output as data. The pretty form is used because it has one
//! value per line: the raw form puts identities such as `C=US, O=x` unquoted between other
//! `key=value` pairs, which is ambiguous.

use std::collections::BTreeMap;

use crate::error::{LabError, Result};

/// One IKE SA as charon reports it over VICI (`list-sa` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeSa {
    /// The connection name.
    pub name: String,
    /// Every scalar field (`state`, `initiator-spi`, `encr-alg`, `local-id`, …).
    pub fields: BTreeMap<String, String>,
    /// Its CHILD_SAs.
    pub children: Vec<ChildSa>,
}

/// One CHILD_SA of an [`IkeSa`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSa {
    /// The entry's key (`<name>-<unique id>`).
    pub key: String,
    /// Every scalar field (`name`, `state`, `mode`, `spi-in`, `bytes-in`, …).
    pub fields: BTreeMap<String, String>,
    /// Local traffic selectors.
    pub local_ts: Vec<String>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<String>,
}

impl IkeSa {
    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// `ESTABLISHED`, `CONNECTING`, `REKEYING`, `DELETING`, …
    pub fn state(&self) -> &str {
        self.get("state").unwrap_or("")
    }

    /// The negotiated IKE suite in `swanctl --list-sas` style:
    /// `AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384`.
    pub fn suite(&self) -> String {
        let mut parts = Vec::new();
        if let Some(encr) = self.get("encr-alg") {
            parts.push(match self.get("encr-keysize") {
                Some(k) => format!("{encr}-{k}"),
                None => encr.to_owned(),
            });
        }
        for k in ["integ-alg", "prf-alg", "dh-group"] {
            if let Some(v) = self.get(k) {
                parts.push(v.to_owned());
            }
        }
        parts.join("/")
    }
}

impl ChildSa {
    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// `INSTALLED`, `REKEYED`, …
    pub fn state(&self) -> &str {
        self.get("state").unwrap_or("")
    }

    /// A counter field (`bytes-in`, `packets-out`, …) as a number.
    pub fn counter(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }
}

#[derive(Debug)]
enum Value {
    Scalar(String),
    List(Vec<String>),
    Section(Vec<(String, Value)>),
}

/// Parses the whole output of `swanctl --list-sas --pretty`.
pub(crate) fn parse_list_sas(text: &str) -> Result<Vec<IkeSa>> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let top = parse_section(&mut lines, true)?;
    let mut sas = Vec::new();
    for (name, value) in top {
        let Value::Section(entries) = value else {
            continue;
        };
        if name != "list-sa event" {
            continue; // "list-sas reply {}"
        }
        for (sa_name, sa) in entries {
            let Value::Section(items) = sa else {
                return Err(LabError::Swanctl(format!(
                    "IKE SA {sa_name} is not a section"
                )));
            };
            sas.push(ike_sa(sa_name, items)?);
        }
    }
    Ok(sas)
}

fn ike_sa(name: String, items: Vec<(String, Value)>) -> Result<IkeSa> {
    let mut sa = IkeSa {
        name,
        fields: BTreeMap::new(),
        children: Vec::new(),
    };
    for (k, v) in items {
        match v {
            Value::Scalar(s) => {
                sa.fields.insert(k, s);
            }
            Value::Section(children) if k == "child-sas" => {
                for (key, child) in children {
                    let Value::Section(fields) = child else {
                        return Err(LabError::Swanctl(format!(
                            "CHILD_SA {key} is not a section"
                        )));
                    };
                    sa.children.push(child_sa(key, fields));
                }
            }
            Value::Section(_) | Value::List(_) => {} // e.g. virtual IPs, pending tasks
        }
    }
    Ok(sa)
}

fn child_sa(key: String, items: Vec<(String, Value)>) -> ChildSa {
    let mut c = ChildSa {
        key,
        fields: BTreeMap::new(),
        local_ts: Vec::new(),
        remote_ts: Vec::new(),
    };
    for (k, v) in items {
        match (k.as_str(), v) {
            ("local-ts", Value::List(l)) => c.local_ts = l,
            ("remote-ts", Value::List(l)) => c.remote_ts = l,
            (_, Value::Scalar(s)) => {
                c.fields.insert(k, s);
            }
            _ => {}
        }
    }
    c
}

fn parse_section<'a>(
    lines: &mut impl Iterator<Item = &'a str>,
    top: bool,
) -> Result<Vec<(String, Value)>> {
    let mut entries = Vec::new();
    while let Some(line) = lines.next() {
        if line == "}" {
            return if top {
                Err(LabError::Swanctl("unbalanced '}'".into()))
            } else {
                Ok(entries)
            };
        }
        if let Some(name) = line.strip_suffix('{') {
            let inner = parse_section(lines, false)?;
            entries.push((name.trim().to_owned(), Value::Section(inner)));
        } else if let Some((k, v)) = line.split_once(" = ") {
            if v == "[" {
                let mut list = Vec::new();
                loop {
                    match lines.next() {
                        Some("]") => break,
                        Some(item) => list.push(item.to_owned()),
                        None => return Err(LabError::Swanctl(format!("list {k} not closed"))),
                    }
                }
                entries.push((k.to_owned(), Value::List(list)));
            } else {
                entries.push((k.to_owned(), Value::Scalar(v.to_owned())));
            }
        } else if let Some(k) = line.strip_suffix(" =") {
            entries.push((k.to_owned(), Value::Scalar(String::new())));
        } else {
            return Err(LabError::Swanctl(format!("unexpected line: {line}")));
        }
    }
    if top {
        Ok(entries)
    } else {
        Err(LabError::Swanctl("section not closed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shape taken from strongSwan 5.9.8's `swanctl --list-sas --pretty` in this lab.
    const SAMPLE: &str = "\
list-sa event {
  lab {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 10.213.7.1
    local-id = C=US, ST=IL, L=Chicago, O=IBM Corporation, OU=IBM Software Group
    initiator = yes
    initiator-spi = 3d41309c410a74f5
    responder-spi = 82d2c3b4406cf82d
    encr-alg = AES_CBC
    encr-keysize = 256
    integ-alg = HMAC_SHA2_384_192
    prf-alg = PRF_HMAC_SHA2_384
    dh-group = ECP_384
    child-sas {
      lab-1 {
        name = lab
        state = INSTALLED
        mode = TUNNEL
        encap = yes
        spi-in = b969f005
        bytes-in = 84
        local-ts = [
          10.213.7.1/32
        ]
        remote-ts = [
          10.213.7.2/32
        ]
      }
    }
  }
}
list-sas reply {
}
";

    #[test]
    fn parses_ike_and_child_sas() {
        let sas = parse_list_sas(SAMPLE).unwrap();
        assert_eq!(sas.len(), 1);
        let sa = &sas[0];
        assert_eq!(sa.name, "lab");
        assert_eq!(sa.state(), "ESTABLISHED");
        assert_eq!(
            sa.get("local-id"),
            Some("C=US, ST=IL, L=Chicago, O=IBM Corporation, OU=IBM Software Group")
        );
        assert_eq!(
            sa.suite(),
            "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384"
        );
        let child = &sa.children[0];
        assert_eq!(
            (child.key.as_str(), child.state(), child.get("mode")),
            ("lab-1", "INSTALLED", Some("TUNNEL"))
        );
        assert_eq!(child.counter("bytes-in"), Some(84));
        assert_eq!(child.local_ts, ["10.213.7.1/32"]);
        assert_eq!(child.remote_ts, ["10.213.7.2/32"]);
    }

    #[test]
    fn no_sas_is_an_empty_list() {
        assert!(parse_list_sas("list-sas reply {\n}\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_output_is_an_error() {
        assert!(parse_list_sas("list-sa event {\n  lab {\n").is_err());
        assert!(parse_list_sas("}\n").is_err());
        assert!(parse_list_sas("list-sa event {\n garbage\n}\n").is_err());
        assert!(parse_list_sas("list-sa event {\n x = [\n a\n").is_err());
    }
}
