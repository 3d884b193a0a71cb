//! Traffic between lab hosts, checked end to end: `ping`, and TCP transfers whose every byte is
//! compared on both ends (the server checks what arrives and echoes it, the client checks the
//! echo). Sockets are opened by threads that entered a host's network namespace (`setns`), so
//! no helper program is needed and a mismatch names its exact offset.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

use crate::error::{LabError, Result};
use crate::netns::Host;

/// What `ping` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReport {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
    /// ping's whole output, for assertion messages.
    pub output: String,
}

/// `ping -c COUNT -i INTERVAL -W 2 TO` from `from`. A run with lost replies is not an error:
/// the report says how many came back.
pub fn ping(from: &Host, to: Ipv4Addr, count: u32, interval: Duration) -> Result<PingReport> {
    let mut cmd = from.command("ping");
    cmd.args([
        "-n",
        "-c",
        &count.to_string(),
        "-i",
        &format!("{:.3}", interval.as_secs_f64()),
        "-W",
        "2",
        &to.to_string(),
    ]);
    let out = cmd.output().map_err(|source| LabError::Spawn {
        program: "ping".into(),
        source,
    })?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_ping_summary(&output)
        .map(|(transmitted, received)| PingReport {
            transmitted,
            received,
            output: output.clone(),
        })
        .ok_or_else(|| LabError::Traffic(format!("no ping summary in:\n{output}")))
}

/// `3 packets transmitted, 2 received, …` → (3, 2).
fn parse_ping_summary(output: &str) -> Option<(u32, u32)> {
    let line = output.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Runs `f` on a new thread inside `host`'s network namespace (sockets it opens live there).
pub fn spawn_in<T: Send + 'static>(
    host: &Host,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> JoinHandle<Result<T>> {
    let path = format!("/run/netns/{}", host.namespace());
    std::thread::spawn(move || {
        let ns = File::open(&path).map_err(|e| LabError::io(&path, e))?;
        // Only this thread changes namespace; the test process stays where it was.
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::io(&path, std::io::Error::from(e)))?;
        f()
    })
}

/// What a finished [`Transfer`] moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferReport {
    /// Bytes sent by the client, checked by the server, echoed and checked by the client.
    pub bytes: u64,
    /// From connect to the last echoed byte.
    pub elapsed: Duration,
}

/// A TCP transfer in progress: the client streams a deterministic pseudo-random pattern to a
/// server on another host, the server verifies and echoes every byte, the client verifies
/// the echo. Optionally paced, so a transfer can span rekeys.
#[derive(Debug)]
pub struct Transfer {
    client: JoinHandle<Result<TransferReport>>,
    server: JoinHandle<Result<u64>>,
    bytes: u64,
}

/// Transfer settings.
#[derive(Debug, Clone, Copy)]
pub struct TransferSpec {
    /// TCP port the server listens on.
    pub port: u16,
    /// Bytes the client sends (and gets back).
    pub bytes: u64,
    /// Send at most this many bytes a second (`None`: as fast as possible).
    pub rate: Option<u64>,
    /// Longest time without progress before the transfer fails (a stalled tunnel).
    pub stall: Duration,
}

impl TransferSpec {
    /// `bytes` on `port`, unpaced, failing after 10 s without progress.
    pub fn new(port: u16, bytes: u64) -> TransferSpec {
        TransferSpec {
            port,
            bytes,
            rate: None,
            stall: Duration::from_secs(10),
        }
    }

    /// Spread the transfer over about `duration`.
    pub fn lasting(mut self, duration: Duration) -> TransferSpec {
        let secs = duration.as_secs_f64().max(0.001);
        // truncation is fine: a rate, not an amount
        self.rate = Some(((self.bytes as f64 / secs) as u64).max(1));
        self
    }
}

const CHUNK: usize = 16 * 1024;

impl Transfer {
    /// Starts the server on `to` (its address, `spec.port`) and the client on `from`; returns
    /// once the server listens and the client has connected.
    pub fn start(from: &Host, to: &Host, spec: TransferSpec) -> Result<Transfer> {
        let addr = SocketAddr::from((to.addr(), spec.port));
        let (ready_tx, ready_rx) = mpsc::channel();
        let server = spawn_in(to, move || serve(addr, spec, &ready_tx));
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(()) => {}
            Err(_) => {
                return Err(match server.join() {
                    Ok(Err(e)) => e,
                    _ => LabError::Traffic(format!("server on {addr} did not start")),
                })
            }
        }
        let (connected_tx, connected_rx) = mpsc::channel();
        let client = spawn_in(from, move || send(addr, spec, &connected_tx));
        if connected_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let why = match client.join() {
                Ok(Err(e)) => e.to_string(),
                _ => "no connection within 10 s".into(),
            };
            // unblock the server's accept by connecting ourselves is not possible across
            // namespaces; it gives up on its own accept deadline
            return Err(LabError::Traffic(format!("client → {addr}: {why}")));
        }
        Ok(Transfer {
            client,
            server,
            bytes: spec.bytes,
        })
    }

    /// Waits for both ends; an error says which end saw what.
    pub fn finish(self) -> Result<TransferReport> {
        let client = joined(self.client.join(), "client");
        let server = joined(self.server.join(), "server");
        let received = server.map_err(|e| LabError::Traffic(format!("server: {e}")))?;
        let report = client.map_err(|e| LabError::Traffic(format!("client: {e}")))?;
        if received != self.bytes || report.bytes != self.bytes {
            return Err(LabError::Traffic(format!(
                "sent {} bytes, server received {received}, client got back {}",
                self.bytes, report.bytes
            )));
        }
        Ok(report)
    }

    /// Whether both ends are done (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.client.is_finished() && self.server.is_finished()
    }
}

fn joined<T>(r: std::thread::Result<Result<T>>, end: &str) -> Result<T> {
    r.unwrap_or_else(|_| Err(LabError::Traffic(format!("{end} thread panicked"))))
}

/// Runs a whole unpaced transfer of `bytes` from `from` to `to` on `port`.
pub fn transfer(from: &Host, to: &Host, port: u16, bytes: u64) -> Result<TransferReport> {
    Transfer::start(from, to, TransferSpec::new(port, bytes))?.finish()
}

fn serve(addr: SocketAddr, spec: TransferSpec, ready: &mpsc::Sender<()>) -> Result<u64> {
    let io = |e: std::io::Error| LabError::Traffic(format!("{addr}: {e}"));
    let listener = TcpListener::bind(addr).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    let _ = ready.send(());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io(e)),
        }
    };
    stream.set_nonblocking(false).map_err(io)?;
    stream.set_read_timeout(Some(spec.stall)).map_err(io)?;
    stream.set_write_timeout(Some(spec.stall)).map_err(io)?;
    let mut buf = vec![0u8; CHUNK];
    let mut expected = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(LabError::Traffic(format!(
                    "server stalled after receiving {offset} of {} bytes: {e}",
                    spec.bytes
                )))
            }
        };
        pattern(offset, &mut expected[..n]);
        check(&buf[..n], &expected[..n], offset, "server received")?;
        stream
            .write_all(&buf[..n])
            .map_err(|e| LabError::Traffic(format!("server echo stalled at byte {offset}: {e}")))?;
        offset += n as u64;
    }
    stream.shutdown(Shutdown::Write).map_err(io)?;
    Ok(offset)
}

fn send(
    addr: SocketAddr,
    spec: TransferSpec,
    connected: &mpsc::Sender<()>,
) -> Result<TransferReport> {
    let io = move |e: std::io::Error| LabError::Traffic(format!("{addr}: {e}"));
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(io)?;
    let _ = connected.send(());
    stream.set_read_timeout(Some(spec.stall)).map_err(io)?;
    stream.set_write_timeout(Some(spec.stall)).map_err(io)?;
    let mut writer = stream.try_clone().map_err(io)?;
    let sender = std::thread::spawn(move || -> Result<()> {
        let mut chunk = vec![0u8; CHUNK];
        let mut offset = 0u64;
        let begun = Instant::now();
        while offset < spec.bytes {
            let n = usize::try_from((spec.bytes - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
            pattern(offset, &mut chunk[..n]);
            writer.write_all(&chunk[..n]).map_err(|e| {
                LabError::Traffic(format!("client send stalled at byte {offset}: {e}"))
            })?;
            offset += n as u64;
            if let Some(rate) = spec.rate {
                let due = Duration::from_secs_f64(offset as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(begun.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        writer.shutdown(Shutdown::Write).map_err(io)
    });
    let mut reader = stream;
    let mut buf = vec![0u8; CHUNK];
    let mut expected = vec![0u8; CHUNK];
    let mut offset = 0u64;
    let read_result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                pattern(offset, &mut expected[..n]);
                if let Err(e) = check(&buf[..n], &expected[..n], offset, "client got back") {
                    break Err(e);
                }
                offset += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                break Err(LabError::Traffic(format!(
                    "echo stalled after {offset} of {} bytes: {e}",
                    spec.bytes
                )))
            }
        }
    };
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(LabError::Traffic("sender thread panicked".into())));
    read_result?;
    sent?;
    Ok(TransferReport {
        bytes: offset,
        elapsed: start.elapsed(),
    })
}

fn check(got: &[u8], expected: &[u8], offset: u64, what: &str) -> Result<()> {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(LabError::Traffic(format!(
            "{what} a wrong byte at offset {}: {:#04x} instead of {:#04x}",
            offset + i as u64,
            got[i],
            expected[i]
        ))),
    }
}

/// The transfer's bytes at `offset..offset + out.len()`: a splitmix64 stream, one 64-bit word
/// per 8-byte block, so any range can be recomputed without the ones before it.
fn pattern(offset: u64, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        let at = offset + i as u64;
        let word = splitmix64(at / 8);
        *byte = word.to_le_bytes()[(at % 8) as usize];
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lab;

    #[test]
    fn pattern_is_position_independent() {
        let mut whole = vec![0u8; 100];
        pattern(0, &mut whole);
        let mut part = vec![0u8; 37];
        pattern(13, &mut part);
        assert_eq!(&whole[13..50], &part[..]);
        assert_ne!(whole[..8], whole[8..16], "not a constant");
    }

    #[test]
    fn ping_summary_is_parsed() {
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n--- 10.0.0.2 ping statistics \
                   ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n";
        assert_eq!(parse_ping_summary(out), Some((3, 2)));
        assert_eq!(parse_ping_summary("connect: Network is unreachable"), None);
    }

    #[test]
    fn a_changed_byte_is_reported_with_its_offset() {
        let mut expected = vec![0u8; 64];
        pattern(1000, &mut expected);
        let mut got = expected.clone();
        got[17] ^= 1;
        let err = check(&got, &expected, 1000, "server received")
            .unwrap_err()
            .to_string();
        assert!(err.contains("offset 1017"), "{err}");
    }

    #[test]
    fn transfer_and_ping_across_a_veth_link() {
        let Some(lab) = Lab::require_root() else {
            return;
        };
        let (client, share) = lab.two_hosts().unwrap();
        let p = ping(&client, share.addr(), 2, Duration::from_millis(200)).unwrap();
        assert_eq!((p.transmitted, p.received), (2, 2), "{}", p.output);
        let report = transfer(&client, &share, 5201, 3 * 1024 * 1024 + 7).unwrap();
        assert_eq!(report.bytes, 3 * 1024 * 1024 + 7);
        // nobody listens on the far side of a link that does not exist
        let lonely = lab.host("lonely").unwrap();
        let err = Transfer::start(&lonely, &share, TransferSpec::new(5202, 10)).unwrap_err();
        assert!(err.to_string().contains("client"), "{err}");
    }
}
