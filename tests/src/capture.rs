//! tcpdump on a lab interface, read back with [`crate::pcap`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::Host;
use crate::pcap::{self, Packet};
use crate::process::{wait_until, LabProcess};

/// A running tcpdump; [`Capture::finish`] stops it and returns the packets.
#[derive(Debug)]
pub struct Capture {
    tcpdump: LabProcess,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing on `iface` of `host` with a pcap `filter` (e.g. `"udp port 500 or udp
    /// port 4500"`; empty for everything). Returns once tcpdump is listening, so nothing sent
    /// afterwards is missed.
    pub fn start(host: &Host, iface: &str, filter: &str) -> Result<Capture> {
        let file = host
            .log_file(&format!("{iface}-capture"))
            .with_extension("pcap");
        let file_arg = file.to_string_lossy().into_owned();
        // --immediate-mode: no buffering in the kernel ring, so finish() sees every packet;
        // -Z root: tcpdump otherwise drops to its own user and cannot write into our 0700 dir.
        let mut args = vec![
            "tcpdump",
            "-i",
            iface,
            "-n",
            "--immediate-mode",
            "-U",
            "-s",
            "0",
            // 32 MiB of kernel buffer: a GSO-sending datapath fills the default 2 MiB within
            // milliseconds on a loaded machine, and dropped packets make counts lie
            "-B",
            "32768",
            "-Z",
            "root",
            "-w",
            &file_arg,
        ];
        args.extend(filter.split_whitespace());
        let mut tcpdump = host.spawn(&args)?;
        let ready = wait_until("tcpdump to listen", Duration::from_secs(5), || {
            tcpdump.output().contains("listening on") || !tcpdump.is_running()
        });
        if ready.is_err() || !tcpdump.is_running() {
            return Err(tcpdump.died());
        }
        Ok(Capture { tcpdump, file })
    }

    /// The pcap file (kept in the lab directory until the lab drops).
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Stops tcpdump and parses what it wrote.
    pub fn finish(mut self) -> Result<Vec<Packet>> {
        // packets already on the wire reach the socket within microseconds; give them a moment
        std::thread::sleep(Duration::from_millis(50));
        self.tcpdump.stop();
        let data = std::fs::read(&self.file).map_err(|e| LabError::io(&self.file, e))?;
        pcap::parse(&data)
    }
}
