use clap::{Parser, Subcommand};
use ibm_ipsec::commands::ike_decode;

/// ibm-ipsec: IKEv2 and ESP in transport mode, for NFS encryption in transit.
#[derive(Parser)]
#[command(name = "ibm-ipsec", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Host key, CSR and certificate tools.
    Cert {
        #[command(subcommand)]
        command: ibm_ipsec::commands::cert::CertCommand,
    },
    /// Run the per-host daemon in the foreground (control socket, datapath, identity).
    Daemon(ibm_ipsec::commands::daemon::DaemonArgs),
    /// Protect traffic with a peer: IKE SA + CHILD_SA through the daemon (started if needed).
    Up(ibm_ipsec::commands::up::UpArgs),
    /// Show the daemon, its datapath and identity, and every IKE SA and CHILD_SA.
    Status(ibm_ipsec::commands::status::StatusArgs),
    /// Delete the SAs with a peer (or with every peer).
    Down(ibm_ipsec::commands::down::DownArgs),
    /// IKEv2 tools.
    Ike {
        #[command(subcommand)]
        command: IkeCommand,
    },
    /// Run the product end to end in two network namespaces and prove the wire is encrypted.
    Demo(ibm_ipsec::commands::demo::DemoArgs),
    /// Serve the metadata identity API locally, issuing from a test CA (tests, demo, lab).
    MetadataTestServer(ibm_ipsec::commands::metadata_server::Args),
}

#[derive(Subcommand)]
enum IkeCommand {
    /// Decode one IKE message (a raw UDP payload, with or without the non-ESP marker).
    Decode(ike_decode::DecodeArgs),
}

fn main() -> std::process::ExitCode {
    // mount(8) and umount(8) run us as /sbin/mount.ibmshare and /sbin/umount.ibmshare.
    let argv0 = std::env::args().next().unwrap_or_default();
    let helper = ibm_ipsec::commands::mount::helper_name(&argv0);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IBM_IPSEC_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if helper.is_some() { "warn" } else { "info" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(helper) = helper {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return match helper {
            "umount.ibmshare" => ibm_ipsec::commands::mount::umount_main(&args),
            _ => ibm_ipsec::commands::mount::mount_main(&args),
        };
    }
    let Cli { command } = Cli::parse();
    let result = match command {
        // Exits with the IBM mount helper's codes (1 unreachable, 2 token, 3 certificate).
        Command::Cert {
            command: ibm_ipsec::commands::cert::CertCommand::Fetch(args),
        } => return ibm_ipsec::commands::cert_fetch::run(args),
        Command::Cert { command } => ibm_ipsec::commands::cert::run(command),
        Command::Daemon(args) => ibm_ipsec::commands::daemon::run(args),
        Command::Up(args) => ibm_ipsec::commands::up::run(args),
        Command::Status(args) => ibm_ipsec::commands::status::run(args),
        Command::Down(args) => ibm_ipsec::commands::down::run(args),
        // Prints its own one-line error and chooses its exit code.
        Command::Ike {
            command: IkeCommand::Decode(args),
        } => return ike_decode::run(&args),
        Command::Demo(args) => ibm_ipsec::commands::demo::run(args),
        Command::MetadataTestServer(args) => ibm_ipsec::commands::metadata_server::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
