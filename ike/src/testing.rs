//! Deterministic helpers for tests, examples and benchmarks.

use crate::crypto::Random;

/// A seeded, deterministic [`Random`] source (SplitMix64). **Not** cryptographically secure:
/// for tests, fuzzing and simulations that must replay byte for byte.
#[derive(Debug, Clone)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRandom { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// How the simulated network mistreats datagrams; each probability applies independently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back so later ones overtake it.
    pub reorder: f64,
    /// One-way delay of every datagram.
    pub latency: std::time::Duration,
}

impl LinkConfig {
    /// A perfect link with 1 ms latency.
    pub fn perfect() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            latency: std::time::Duration::from_millis(1),
        }
    }

    /// Loss, duplication and reordering each with probability `p`.
    pub fn lossy(p: f64) -> Self {
        LinkConfig {
            loss: p,
            duplicate: p,
            reorder: p,
            ..Self::perfect()
        }
    }
}

/// A deterministic in-memory network of [`Endpoint`](crate::Endpoint)s with simulated time:
/// datagrams go to the endpoint owning their destination IP, subject to a [`LinkConfig`]
/// driven by a seed, so any run can be replayed exactly.
pub struct Network {
    /// Simulated time.
    pub now: std::time::Instant,
    /// The endpoints and their IP addresses.
    pub endpoints: Vec<(std::net::IpAddr, crate::Endpoint)>,
    /// Events seen by each endpoint, in order.
    pub events: Vec<Vec<(crate::SaHandle, crate::Event)>>,
    /// Datagrams delivered so far.
    pub delivered: usize,
    /// Datagrams dropped by the link so far.
    pub dropped: usize,
    /// Errors returned by `handle_datagram` (dropped datagrams), for diagnosis.
    pub errors: Vec<String>,
    /// Largest IP datagram sent so far (UDP payload + 8 + 20 or 40), to check fragmentation.
    pub max_datagram: usize,
    link: LinkConfig,
    rng: SeededRandom,
    in_flight: std::collections::BinaryHeap<InFlight>,
    seq: u64,
}

#[derive(Debug)]
struct InFlight {
    at: std::time::Instant,
    seq: u64,
    to: usize,
    datagram: crate::Datagram,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl Network {
    /// A network starting at `now` whose link decisions follow `seed`.
    pub fn new(now: std::time::Instant, link: LinkConfig, seed: u64) -> Self {
        Network {
            now,
            endpoints: Vec::new(),
            events: Vec::new(),
            delivered: 0,
            dropped: 0,
            errors: Vec::new(),
            max_datagram: 0,
            link,
            rng: SeededRandom::new(seed),
            in_flight: std::collections::BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Adds an endpoint reachable at `ip`; returns its index.
    pub fn add(&mut self, ip: std::net::IpAddr, endpoint: crate::Endpoint) -> usize {
        self.endpoints.push((ip, endpoint));
        self.events.push(Vec::new());
        self.endpoints.len() - 1
    }

    /// Changes the link behaviour from now on.
    pub fn set_link(&mut self, link: LinkConfig) {
        self.link = link;
    }

    /// Moves queued datagrams onto the link and events into [`Network::events`].
    pub fn collect(&mut self) {
        for i in 0..self.endpoints.len() {
            while let Some(e) = self.endpoints[i].1.poll_event() {
                self.events[i].push(e);
            }
            while let Some(d) = self.endpoints[i].1.poll_transmit() {
                let ip_header = if d.remote.is_ipv6() { 40 } else { 20 };
                self.max_datagram = self.max_datagram.max(d.payload.len() + 8 + ip_header);
                let Some(to) = self
                    .endpoints
                    .iter()
                    .position(|(ip, _)| *ip == d.remote.ip())
                else {
                    self.dropped += 1;
                    continue;
                };
                if self.rng.next_f64() < self.link.loss {
                    self.dropped += 1;
                    continue;
                }
                let copies = if self.rng.next_f64() < self.link.duplicate {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut at = self.now + self.link.latency;
                    if self.rng.next_f64() < self.link.reorder {
                        let extra = self.rng.next_u64() % 50;
                        at += std::time::Duration::from_millis(1 + extra);
                    }
                    self.seq += 1;
                    self.in_flight.push(InFlight {
                        at,
                        seq: self.seq,
                        to,
                        datagram: d.clone(),
                    });
                }
            }
        }
    }

    /// The time of the next delivery or timer.
    pub fn next_time(&self) -> Option<std::time::Instant> {
        let timers = self.endpoints.iter().filter_map(|(_, e)| e.poll_timeout());
        let delivery = self.in_flight.peek().map(|f| f.at);
        timers.chain(delivery).min()
    }

    /// Advances to the next delivery or timer and runs it; `false` when nothing is left.
    pub fn step(&mut self) -> bool {
        self.collect();
        let Some(t) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(t);
        if self.in_flight.peek().is_some_and(|f| f.at <= self.now) {
            if let Some(f) = self.in_flight.pop() {
                let d = f.datagram;
                self.delivered += 1;
                let ep = &mut self.endpoints[f.to].1;
                if let Err(e) = ep.handle_datagram(self.now, d.local, d.remote, &d.payload) {
                    self.errors.push(e.to_string());
                }
            }
        } else {
            for (_, e) in &mut self.endpoints {
                e.handle_timeout(self.now);
            }
        }
        self.collect();
        true
    }

    /// Steps until `done` holds or `limit` passes; returns whether `done` held.
    pub fn run_until(
        &mut self,
        limit: std::time::Instant,
        mut done: impl FnMut(&Network) -> bool,
    ) -> bool {
        loop {
            self.collect();
            if done(self) {
                return true;
            }
            if self.next_time().map_or(true, |t| t > limit) || !self.step() {
                return done(self);
            }
        }
    }
}
