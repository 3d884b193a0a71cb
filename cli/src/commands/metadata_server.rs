//! `ibm-ipsec metadata-test-server`: a local HTTP server that speaks the metadata service's
//! identity API and issues certificates from a test CA, for tests, the demo and the lab (bind
//! it to 169.254.169.254 inside a network namespace). Never used unless started by hand.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use metadata::test_server::{TestServer, TestServerConfig, DEFAULT_INSTANCE_ID};
use pki::ca::TestCa;

/// Arguments of `ibm-ipsec metadata-test-server`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ibm-ipsec metadata-test-server --listen 127.0.0.1:8080 --state-dir /tmp/mds
  ibm-ipsec metadata-test-server --listen 127.0.0.1:0 --cert-lifetime-seconds 30   # fast renewals")]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Keeps the test CA (ca/) across runs and receives the root CA PEM that clients verify
    /// the issued chains against.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Instance id the server writes into each certificate's subject CN.
    #[arg(long, default_value = DEFAULT_INSTANCE_ID)]
    pub instance_id: String,
    /// Issue certificates valid for S seconds whatever the client requests (the service may
    /// grant less than asked; below the API's 300 s floor, for watching renewals in tests).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..))]
    pub cert_lifetime_seconds: Option<u32>,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let ca = load_or_create_ca(args.state_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let config = TestServerConfig {
            instance_id: args.instance_id,
            state_dir: args.state_dir,
            tls: None,
            certificate_lifetime: args
                .cert_lifetime_seconds
                .map(|s| Duration::from_secs(u64::from(s))),
        };
        let server = TestServer::start(args.listen, config, Arc::new(ca)).await?;
        // One parseable line on stdout, so scripts and tests can find a port-0 address.
        let mut out = std::io::stdout().lock();
        writeln!(out, "metadata test server listening on {}", server.url())?;
        match server.root_ca_path() {
            Some(path) => writeln!(out, "root CA: {}", path.display())?,
            None => writeln!(out, "root CA: not written (no --state-dir)")?,
        }
        out.flush()?;
        drop(out);
        shutdown_signal().await?;
        tracing::info!("metadata test server stopping");
        server.shutdown().await;
        Ok(())
    })
}

/// Loads `DIR/ca` if a previous run saved a CA there, else makes a new one (and saves it).
fn load_or_create_ca(state_dir: Option<&Path>) -> anyhow::Result<TestCa> {
    let Some(dir) = state_dir else {
        return TestCa::generate(SystemTime::now()).context("generating the test CA");
    };
    let ca_dir = dir.join("ca");
    if ca_dir.join("root.pem").exists() {
        return TestCa::load(&ca_dir)
            .with_context(|| format!("loading the test CA from {}", ca_dir.display()));
    }
    std::fs::create_dir_all(&ca_dir).with_context(|| format!("creating {}", ca_dir.display()))?;
    let ca = TestCa::generate(SystemTime::now()).context("generating the test CA")?;
    ca.save(&ca_dir)
        .with_context(|| format!("saving the test CA in {}", ca_dir.display()))?;
    Ok(ca)
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
