use clap::{Parser, Subcommand};

/// ibm-ipsec: IKEv2 and ESP in transport mode, for NFS encryption in transit.
#[derive(Parser)]
#[command(name = "ibm-ipsec", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

// The skeleton has no subcommand yet; the attribute goes with the first one.
#[allow(unreachable_code)]
fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IBM_IPSEC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cli { command } = Cli::parse();
    match command {}
}
