//! Packet sources: capture files (pcap and pcapng) and live interfaces,
//! both through libpcap.

use crate::decode::LinkType;
use crate::SensorError;
use pcap::{Activated, Capture};
use schema::Time;
use std::path::{Path, PathBuf};

/// Where packets come from.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    File(PathBuf),
    Live(LiveSpec),
}

#[derive(Clone, Debug)]
pub struct LiveSpec {
    pub interface: String,
    /// A BPF filter expression applied in the kernel.
    pub filter: Option<String>,
    /// Bytes kept of each packet.
    pub snaplen: i32,
    pub promiscuous: bool,
    /// Kernel capture buffer, in MiB.
    pub buffer_mb: i32,
}

impl Default for LiveSpec {
    fn default() -> Self {
        LiveSpec { interface: String::new(), filter: None, snaplen: 65_535, promiscuous: true, buffer_mb: 64 }
    }
}

/// One step of a source.
pub enum Next<'a> {
    Packet {
        ts: Time,
        data: &'a [u8],
        wire_len: u32,
    },
    /// Nothing arrived within the read timeout (live capture only).
    Idle,
    End,
}

/// Kernel and interface drop counters (live capture).
#[derive(Clone, Copy, Debug, Default)]
pub struct DropStats {
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
}

pub struct Source {
    inner: Inner,
    name: String,
    linktype: LinkType,
    packets: u64,
    /// The last live read found nothing: wait in poll(2) before the next.
    waiting: bool,
}

enum Inner {
    File(Capture<pcap::Offline>, PathBuf),
    Live(Capture<pcap::Active>),
}

impl Source {
    pub fn open(spec: &SourceSpec) -> Result<Source, SensorError> {
        match spec {
            SourceSpec::File(path) => Self::open_file(path),
            SourceSpec::Live(live) => Self::open_live(live),
        }
    }

    fn open_file(path: &Path) -> Result<Source, SensorError> {
        let cap = Capture::from_file(path)
            .map_err(|e| SensorError::OpenFile { path: path.to_path_buf(), msg: e.to_string() })?;
        let linktype = LinkType::from_dlt(cap.get_datalink().0);
        Ok(Source {
            name: path.display().to_string(),
            inner: Inner::File(cap, path.to_path_buf()),
            linktype,
            packets: 0,
            waiting: false,
        })
    }

    fn open_live(spec: &LiveSpec) -> Result<Source, SensorError> {
        let iface = spec.interface.clone();
        let err = |e: pcap::Error| SensorError::OpenInterface { iface: iface.clone(), msg: e.to_string() };
        let mut cap = Capture::from_device(spec.interface.as_str())
            .map_err(err)?
            .promisc(spec.promiscuous)
            .snaplen(spec.snaplen)
            .buffer_size(spec.buffer_mb.saturating_mul(1 << 20))
            .timeout(200)
            .open()
            .map_err(err)?
            // On Linux (TPACKET_V3) the read timeout only runs once a packet
            // has arrived, so a quiet link would block forever: read
            // without blocking and wait in poll(2) with our own timeout.
            .setnonblock()
            .map_err(err)?;
        if let Some(f) = &spec.filter {
            cap.filter(f, true).map_err(|e| SensorError::Filter { filter: f.clone(), msg: e.to_string() })?;
        }
        let linktype = LinkType::from_dlt(cap.get_datalink().0);
        Ok(Source { name: spec.interface.clone(), inner: Inner::Live(cap), linktype, packets: 0, waiting: false })
    }

    pub fn linktype(&self) -> LinkType {
        self.linktype
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_live(&self) -> bool {
        matches!(self.inner, Inner::Live(_))
    }

    pub fn next_packet(&mut self) -> Result<Next<'_>, SensorError> {
        let packets = self.packets;
        match &mut self.inner {
            Inner::File(cap, path) => match next_from(cap) {
                Ok(n) => {
                    if matches!(n, Next::Packet { .. }) {
                        self.packets += 1;
                    }
                    Ok(n)
                }
                Err(msg) => Err(SensorError::DamagedFile { path: path.clone(), packets, msg }),
            },
            Inner::Live(cap) => match next_live(cap, &mut self.waiting) {
                Ok(n) => {
                    if matches!(n, Next::Packet { .. }) {
                        self.packets += 1;
                    }
                    Ok(n)
                }
                Err(msg) => Err(SensorError::Live { iface: self.name.clone(), msg }),
            },
        }
    }

    /// libpcap's drop counters; zero for files.
    pub fn drops(&mut self) -> DropStats {
        match &mut self.inner {
            Inner::Live(cap) => cap
                .stats()
                .map(|s| DropStats {
                    received: u64::from(s.received),
                    dropped: u64::from(s.dropped),
                    if_dropped: u64::from(s.if_dropped),
                })
                .unwrap_or_default(),
            Inner::File(..) => DropStats::default(),
        }
    }
}

/// How long a live read waits for traffic before reporting `Idle`, so that
/// timers, signals and progress are serviced on a quiet link.
const LIVE_POLL_MS: i64 = 200;

fn next_live<'a>(cap: &'a mut Capture<pcap::Active>, waiting: &mut bool) -> Result<Next<'a>, String> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    if *waiting {
        let fd = cap.as_raw_fd();
        // SAFETY: the descriptor belongs to `cap`, which outlives this borrow.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut fds = [rustix::event::PollFd::new(&bfd, rustix::event::PollFlags::IN)];
        let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: LIVE_POLL_MS * 1_000_000 };
        let ready = match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => n > 0,
            Err(rustix::io::Errno::INTR) => false,
            Err(e) => return Err(format!("poll: {e}")),
        };
        if !ready {
            return Ok(Next::Idle);
        }
    }
    // Non-blocking: a busy link is read without any system call per packet.
    let n = next_from(cap)?;
    *waiting = matches!(n, Next::Idle);
    Ok(n)
}

fn next_from<T: Activated + ?Sized>(cap: &mut Capture<T>) -> Result<Next<'_>, String> {
    match cap.next_packet() {
        Ok(p) => {
            let ts = Time::from_secs_micros(p.header.ts.tv_sec, p.header.ts.tv_usec);
            Ok(Next::Packet { ts, data: p.data, wire_len: p.header.len })
        }
        Err(pcap::Error::NoMorePackets) => Ok(Next::End),
        Err(pcap::Error::TimeoutExpired) => Ok(Next::Idle),
        Err(e) => Err(e.to_string()),
    }
}
