//! One strongSwan charon per lab host, configured and driven through swanctl, following
//! `shared/strongswan-lab.md`: a private strongswan.conf (`load_modular = no`, explicit plugin
//! list with `kdf`), a private `/run` (charon always writes `/var/run/charon.pid`) via
//! `unshare -m` and a bind mount, and a private VICI socket named to both charon and swanctl.
//!
//! This kernel has no ESP transform, so CHILD_SAs are installed by `kernel-libipsec`
//! (userspace ESP over a TUN device; tunnel mode only, ESP in UDP with `encap = yes`).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::netns::Host;
use crate::pki::Identity;
use crate::process::{run, wait_until, LabProcess};
use crate::sas::{parse_list_sas, IkeSa};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PLUGINS: &str = "random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey \
                       kdf gcm hmac aes sha1 sha2 curve25519 kernel-libipsec kernel-netlink \
                       socket-default vici";

/// Everything one charon is given: connections, credentials, logging.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// swanctl connections.
    pub connections: Vec<Connection>,
    /// End-entity certificates (copied to `x509/`; reference them by file name).
    pub certs: Vec<PathBuf>,
    /// CA certificates (copied to `x509ca/`).
    pub cas: Vec<PathBuf>,
    /// Private keys (copied to `private/`).
    pub keys: Vec<PathBuf>,
    /// Pre-shared keys.
    pub secrets: Vec<Secret>,
    /// Log at `ike 4, enc 4, chd 4, cfg 2` (derived keys and decrypted payloads) instead of 1.
    /// Slows charon noticeably; leave off for timing.
    pub debug: bool,
    /// Extra lines inside `charon { … }` of strongswan.conf (e.g. `retransmit_tries = 2`).
    pub charon_options: Vec<String>,
}

/// A pre-shared key for a set of identities.
#[derive(Debug, Clone)]
pub struct Secret {
    /// The identities it is shared between.
    pub ids: Vec<String>,
    /// The key (written quoted into swanctl.conf).
    pub psk: String,
}

/// One swanctl connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Connection name.
    pub name: String,
    /// `local_addrs`.
    pub local_addrs: String,
    /// `remote_addrs`.
    pub remote_addrs: String,
    /// IKE `proposals`.
    pub proposals: String,
    /// `encap`: force UDP encapsulation (NAT-T on 4500) as IBM Cloud requires.
    pub encap: bool,
    /// Local authentication round.
    pub local: Auth,
    /// Remote authentication round.
    pub remote: Auth,
    /// CHILD_SA configurations.
    pub children: Vec<Child>,
    /// Extra `key = value` lines (`dpd_delay = 30s`, `rekey_time = 1h`, …).
    pub options: Vec<String>,
}

/// One authentication round.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Certificate/public-key authentication.
    Pubkey {
        /// File name of the certificate in `x509/` (local side only).
        cert: Option<String>,
        /// Identity; `None` = strongSwan's default (the certificate's subject DN locally,
        /// `%any` remotely).
        id: Option<String>,
    },
    /// Pre-shared key authentication with this identity.
    Psk {
        /// The identity.
        id: String,
    },
}

/// One CHILD_SA configuration.
#[derive(Debug, Clone)]
pub struct Child {
    /// Child name.
    pub name: String,
    /// `tunnel` or `transport` (kernel-libipsec supports only tunnel).
    pub mode: String,
    /// `local_ts`.
    pub local_ts: String,
    /// `remote_ts`.
    pub remote_ts: String,
    /// `esp_proposals`.
    pub esp_proposals: String,
    /// Extra `key = value` lines.
    pub options: Vec<String>,
}

/// Shortened SA timers for rekey and DPD scenarios; `None` keeps strongSwan's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifetimes {
    /// IKE SA `rekey_time`.
    pub ike_rekey: Option<Duration>,
    /// CHILD_SA `rekey_time`.
    pub child_rekey: Option<Duration>,
    /// `dpd_delay`: an empty INFORMATIONAL after this much silence.
    pub dpd_delay: Option<Duration>,
}

impl Auth {
    /// Authenticate locally with `identity`'s certificate, identity = its subject DN.
    pub fn cert(identity: &Identity) -> Auth {
        Auth::Pubkey {
            cert: file_name(&identity.cert),
            id: None,
        }
    }

    /// Authenticate locally with `identity`'s certificate under another identity (its SAN,
    /// say: `id` must be one the certificate holds, or the peer refuses it).
    pub fn cert_as(identity: &Identity, id: &str) -> Auth {
        Auth::Pubkey {
            cert: file_name(&identity.cert),
            id: Some(id.to_owned()),
        }
    }

    /// Accept any peer whose certificate chains to a loaded CA (the IBM helper's `%any`).
    pub fn any_cert() -> Auth {
        Auth::Pubkey {
            cert: None,
            id: None,
        }
    }

    /// Accept only a peer that proves `id` with a certificate chaining to a loaded CA.
    pub fn peer_cert(id: &str) -> Auth {
        Auth::Pubkey {
            cert: None,
            id: Some(id.to_owned()),
        }
    }
}

impl Connection {
    /// IBM's mount-target settings (`ibm-mount-helper.md`): IKE `aes256-sha384-ecp384`,
    /// `encap = yes`, ESP `aes256gcm16` without PFS; a host-to-host child named `name`, in
    /// tunnel mode because kernel-libipsec refuses transport.
    pub fn ibm(
        name: &str,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        local_auth: Auth,
        remote_auth: Auth,
    ) -> Connection {
        Connection {
            name: name.to_owned(),
            local_addrs: local.to_string(),
            remote_addrs: remote.to_string(),
            proposals: "aes256-sha384-ecp384".to_owned(),
            encap: true,
            local: local_auth,
            remote: remote_auth,
            children: vec![Child {
                name: name.to_owned(),
                mode: "tunnel".to_owned(),
                local_ts: format!("{local}/32"),
                remote_ts: format!("{remote}/32"),
                esp_proposals: "aes256gcm16".to_owned(),
                options: Vec::new(),
            }],
            options: Vec::new(),
        }
    }

    /// [`Connection::ibm`] authenticated with a pre-shared key: `local_id` and `remote_id`
    /// are the identities (FQDNs or addresses) the key is shared between.
    pub fn psk(
        name: &str,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        local_id: &str,
        remote_id: &str,
    ) -> Connection {
        Connection::ibm(
            name,
            local,
            remote,
            Auth::Psk {
                id: local_id.to_owned(),
            },
            Auth::Psk {
                id: remote_id.to_owned(),
            },
        )
    }

    /// Replaces the IKE `proposals` (`aes256gcm16-prfsha256-x25519`, …).
    pub fn with_proposals(mut self, proposals: &str) -> Connection {
        proposals.clone_into(&mut self.proposals);
        self
    }

    /// Replaces every child's `esp_proposals` (`aes256gcm16-x25519` asks for PFS).
    pub fn with_esp_proposals(mut self, proposals: &str) -> Connection {
        for c in &mut self.children {
            proposals.clone_into(&mut c.esp_proposals);
        }
        self
    }

    /// Sets every child's `mode` (`tunnel`, `transport`).
    pub fn with_mode(mut self, mode: &str) -> Connection {
        for c in &mut self.children {
            mode.clone_into(&mut c.mode);
        }
        self
    }

    /// Adds a `key = value` line to the connection (`fragmentation = force`, …).
    pub fn with_option(mut self, line: &str) -> Connection {
        self.options.push(line.to_owned());
        self
    }

    /// Adds a `key = value` line to every child.
    pub fn with_child_option(mut self, line: &str) -> Connection {
        for c in &mut self.children {
            c.options.push(line.to_owned());
        }
        self
    }

    /// Shortened timers: IKE and CHILD_SA rekeying and DPD, without strongSwan's random
    /// jitter (`rand_time = 0s`) so a test knows when they happen.
    ///
    /// The hard lifetimes are set too, to twice the rekey time: strongSwan's defaults (10 %
    /// more than `rekey_time`) are whole seconds, so with a 3 s rekey the hard expiry falls on
    /// the rekey itself and charon closes the SA ("closing expired CHILD_SA", "maximum IKE_SA
    /// lifetime 4s") instead of rekeying it.
    pub fn with_lifetimes(mut self, lifetimes: Lifetimes) -> Connection {
        let secs = |d: Duration| d.as_secs().max(1);
        if let Some(t) = lifetimes.ike_rekey {
            self.options.push(format!("rekey_time = {}s", secs(t)));
            self.options.push(format!("over_time = {}s", secs(t)));
            self.options.push("rand_time = 0s".to_owned());
        }
        if let Some(t) = lifetimes.dpd_delay {
            self.options.push(format!("dpd_delay = {}s", secs(t)));
        }
        if let Some(t) = lifetimes.child_rekey {
            for c in &mut self.children {
                c.options.push(format!("rekey_time = {}s", secs(t)));
                c.options.push(format!("life_time = {}s", 2 * secs(t)));
                c.options.push("rand_time = 0s".to_owned());
            }
        }
        self
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "    {} {{", self.name);
        let _ = writeln!(out, "        version = 2");
        let _ = writeln!(out, "        local_addrs = {}", self.local_addrs);
        let _ = writeln!(out, "        remote_addrs = {}", self.remote_addrs);
        let _ = writeln!(out, "        proposals = {}", self.proposals);
        let _ = writeln!(
            out,
            "        encap = {}",
            if self.encap { "yes" } else { "no" }
        );
        for o in &self.options {
            let _ = writeln!(out, "        {o}");
        }
        for (section, auth) in [("local", &self.local), ("remote", &self.remote)] {
            let _ = writeln!(out, "        {section} {{");
            match auth {
                Auth::Pubkey { cert, id } => {
                    let _ = writeln!(out, "            auth = pubkey");
                    if let Some(c) = cert {
                        let _ = writeln!(out, "            certs = {c}");
                    }
                    if let Some(i) = id {
                        let _ = writeln!(out, "            id = \"{i}\"");
                    }
                }
                Auth::Psk { id } => {
                    let _ = writeln!(out, "            auth = psk");
                    let _ = writeln!(out, "            id = \"{id}\"");
                }
            }
            let _ = writeln!(out, "        }}");
        }
        let _ = writeln!(out, "        children {{");
        for c in &self.children {
            let _ = writeln!(out, "            {} {{", c.name);
            let _ = writeln!(out, "                mode = {}", c.mode);
            let _ = writeln!(out, "                local_ts = {}", c.local_ts);
            let _ = writeln!(out, "                remote_ts = {}", c.remote_ts);
            let _ = writeln!(out, "                esp_proposals = {}", c.esp_proposals);
            for o in &c.options {
                let _ = writeln!(out, "                {o}");
            }
            let _ = writeln!(out, "            }}");
        }
        let _ = writeln!(out, "        }}");
        let _ = writeln!(out, "    }}");
    }
}

impl Config {
    /// Adds a certificate and its key (for [`Auth::cert`]).
    pub fn identity(mut self, identity: &Identity) -> Config {
        self.certs.push(identity.cert.clone());
        self.keys.push(identity.key.clone());
        self
    }

    /// Adds a trusted CA certificate.
    pub fn ca(mut self, cert: &Path) -> Config {
        self.cas.push(cert.to_owned());
        self
    }

    /// Adds a connection.
    pub fn connection(mut self, connection: Connection) -> Config {
        self.connections.push(connection);
        self
    }

    /// Adds a pre-shared key between `ids`.
    pub fn psk(mut self, ids: &[&str], psk: &str) -> Config {
        self.secrets.push(Secret {
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            psk: psk.to_owned(),
        });
        self
    }

    fn swanctl_conf(&self) -> String {
        let mut out = String::from("connections {\n");
        for c in &self.connections {
            c.render(&mut out);
        }
        out.push_str("}\nsecrets {\n");
        for (n, s) in self.secrets.iter().enumerate() {
            let _ = writeln!(out, "    ike-{n} {{");
            for (k, id) in s.ids.iter().enumerate() {
                let _ = writeln!(out, "        id-{k} = \"{id}\"");
            }
            let _ = writeln!(out, "        secret = \"{}\"", s.psk);
            let _ = writeln!(out, "    }}");
        }
        out.push_str("}\n");
        out
    }
}

/// A charon running in a lab host, with its own configuration directory.
#[derive(Debug)]
pub struct StrongSwan {
    host: Host,
    dir: PathBuf,
    charon: LabProcess,
}

impl StrongSwan {
    /// Writes the configuration, starts charon in `host`, waits for its VICI socket and loads
    /// everything with `swanctl --load-all`.
    pub fn start(host: &Host, config: Config) -> Result<StrongSwan> {
        if !Path::new(CHARON).exists() {
            return Err(LabError::Spawn {
                program: CHARON.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "strongSwan is not installed: run scripts/install-deps",
                ),
            });
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(LabError::Usage(
                "/dev/net/tun is missing: charon's kernel-libipsec needs TUN for CHILD_SAs".into(),
            ));
        }
        let dir = host.log_file("strongswan").with_extension("d");
        for sub in ["run", "swanctl/x509", "swanctl/x509ca", "swanctl/private"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| LabError::io(&d, e))?;
        }
        let vici = dir.join("charon.vici");
        // sun_path holds 108 bytes
        if vici.as_os_str().len() > 100 {
            return Err(LabError::io(
                &vici,
                std::io::Error::other("VICI socket path too long (TMPDIR?)"),
            ));
        }
        write(
            &dir.join("strongswan.conf"),
            &strongswan_conf(&dir, &config),
        )?;
        let mut cmd = host.command("unshare");
        cmd.env("STRONGSWAN_CONF", dir.join("strongswan.conf"))
            .args([
                "-m",
                "sh",
                "-c",
                &format!(
                    "mount --bind '{}' /run && exec {CHARON}",
                    dir.join("run").display()
                ),
            ]);
        let mut charon = LabProcess::spawn(cmd, &dir.join("charon.stdout"))?;
        let up = wait_until("charon's VICI socket", Duration::from_secs(10), || {
            vici.exists() || !charon.is_running()
        });
        if up.is_err() || !charon.is_running() {
            let mut err = charon.died();
            if let LabError::Command { output, .. } = &mut err {
                output
                    .push_str(&std::fs::read_to_string(dir.join("charon.log")).unwrap_or_default());
            }
            return Err(err);
        }
        let ss = StrongSwan {
            host: host.clone(),
            dir,
            charon,
        };
        ss.load(&config)?;
        Ok(ss)
    }

    /// Replaces the swanctl configuration and credentials and loads them.
    pub fn load(&self, config: &Config) -> Result<()> {
        let swanctl = self.dir.join("swanctl");
        for (files, sub) in [
            (&config.certs, "x509"),
            (&config.cas, "x509ca"),
            (&config.keys, "private"),
        ] {
            for f in files {
                let name = f
                    .file_name()
                    .ok_or_else(|| LabError::io(f, std::io::Error::other("not a file")))?;
                let dest = swanctl.join(sub).join(name);
                std::fs::copy(f, &dest).map_err(|e| LabError::io(&dest, e))?;
            }
        }
        write(&swanctl.join("swanctl.conf"), &config.swanctl_conf())?;
        self.swanctl(&["--load-all", "--noprompt", "--clear"])
            .map(drop)
    }

    /// Runs swanctl against this charon; its stdout, or an error with its output.
    pub fn swanctl(&self, args: &[&str]) -> Result<String> {
        let uri = format!("unix://{}", self.dir.join("charon.vici").display());
        run(Command::new("swanctl")
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"))
            .env("SWANCTL_DIR", self.dir.join("swanctl"))
            .args(args)
            .args(["--uri", &uri]))
    }

    /// `swanctl --initiate --child CHILD`: returns once the CHILD_SA is up, with the wall time
    /// it took.
    pub fn initiate(&self, child: &str) -> Result<Duration> {
        let start = Instant::now();
        self.swanctl(&["--initiate", "--child", child, "--timeout", "10"])?;
        Ok(start.elapsed())
    }

    /// `swanctl --terminate --ike NAME` (sends a DELETE and waits for the answer).
    pub fn terminate_ike(&self, name: &str) -> Result<()> {
        self.swanctl(&["--terminate", "--ike", name, "--timeout", "10"])
            .map(drop)
    }

    /// `swanctl --rekey --child NAME` (asynchronous: watch [`StrongSwan::list_sas`]).
    pub fn rekey_child(&self, name: &str) -> Result<()> {
        self.swanctl(&["--rekey", "--child", name]).map(drop)
    }

    /// `swanctl --rekey --ike NAME` (asynchronous).
    pub fn rekey_ike(&self, name: &str) -> Result<()> {
        self.swanctl(&["--rekey", "--ike", name]).map(drop)
    }

    /// The IKE SAs charon has now (`swanctl --list-sas`).
    pub fn list_sas(&self) -> Result<Vec<IkeSa>> {
        parse_list_sas(&self.swanctl(&["--list-sas", "--pretty"])?)
    }

    /// The certificates charon holds (`swanctl --list-certs --pem`), DER: those it loaded and
    /// those it cached after verifying them in an IKE_AUTH (a peer's end-entity certificate).
    pub fn list_certs(&self) -> Result<Vec<Vec<u8>>> {
        let pem = self.swanctl(&["--list-certs", "--pem"])?;
        pki::pem::certificates(pem.as_bytes())
            .map_err(|e| LabError::Swanctl(format!("--list-certs --pem: {e}")))
    }

    /// Polls [`StrongSwan::list_sas`] until `done` accepts the list (or `limit` passes, which
    /// is an error naming `what` and showing the last list).
    pub fn wait_for_sas(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&[IkeSa]) -> bool,
    ) -> Result<Vec<IkeSa>> {
        let start = Instant::now();
        loop {
            let sas = self.list_sas()?;
            if done(&sas) {
                return Ok(sas);
            }
            if start.elapsed() >= limit {
                return Err(LabError::Timeout {
                    what: format!("{what}; last --list-sas: {sas:#?}"),
                    waited_ms: limit.as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// charon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    /// Waits until charon's log holds `needle` (or `limit` passes: an error with the log).
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> Result<()> {
        wait_until(&format!("charon to log {needle:?}"), limit, || {
            self.log().contains(needle)
        })
        .map_err(|e| LabError::Timeout {
            what: format!("{e}; charon.log:\n{}", self.log()),
            waited_ms: limit.as_millis(),
        })
    }

    /// How often `needle` occurs in charon's log so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// charon's process id (for CPU and memory figures from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.charon.pid()
    }

    /// The host it runs in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Its configuration directory (strongswan.conf, swanctl/, charon.log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops charon (it deletes its SAs first, like on shutdown).
    pub fn stop(&mut self) {
        self.charon.stop();
    }
}

fn strongswan_conf(dir: &Path, config: &Config) -> String {
    let levels = if config.debug {
        "default = 1\n            ike = 4\n            enc = 4\n            chd = 4\n            cfg = 2"
    } else {
        "default = 1"
    };
    let vici = dir.join("charon.vici");
    let mut extra = String::new();
    for o in &config.charon_options {
        let _ = writeln!(extra, "    {o}");
    }
    format!(
        "charon {{
    load_modular = no
    load = {PLUGINS}
{extra}    filelog {{
        lab {{
            path = {log}
            time_format = %H:%M:%S
            time_add_ms = yes
            {levels}
            flush_line = yes
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{vici}
        }}
        kernel-libipsec {{
            allow_peer_ts = yes
        }}
        # keep IKE and ESP-in-UDP off the TUN route of kernel-libipsec
        kernel-netlink {{
            fwmark = !0x42
        }}
        socket-default {{
            fwmark = 0x42
        }}
    }}
}}
swanctl {{
    socket = unix://{vici}
}}
",
        log = dir.join("charon.log").display(),
        vici = vici.display(),
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io(path, e))
}

fn file_name(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_ibm_connection() {
        let conn = Connection::ibm(
            "share",
            Ipv4Addr::new(10, 213, 1, 1),
            Ipv4Addr::new(10, 213, 1, 2),
            Auth::Pubkey {
                cert: Some("client.crt".into()),
                id: None,
            },
            Auth::any_cert(),
        );
        let text = Config::default()
            .connection(conn)
            .psk(&["a", "b"], "k")
            .swanctl_conf();
        for needle in [
            "proposals = aes256-sha384-ecp384",
            "encap = yes",
            "certs = client.crt",
            "esp_proposals = aes256gcm16",
            "local_ts = 10.213.1.1/32",
            "remote_ts = 10.213.1.2/32",
            "mode = tunnel",
            "secret = \"k\"",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn strongswan_conf_follows_the_lab_notes() {
        let conf = strongswan_conf(
            Path::new("/tmp/x"),
            &Config {
                debug: true,
                ..Config::default()
            },
        );
        for needle in [
            "load_modular = no",
            " kdf ",
            "socket = unix:///tmp/x/charon.vici",
            "ike = 4",
            "allow_peer_ts = yes",
        ] {
            assert!(conf.contains(needle), "{needle} missing in\n{conf}");
        }
        assert_eq!(
            conf.matches("socket = unix:///tmp/x/charon.vici").count(),
            2,
            "charon and swanctl"
        );
    }
}
