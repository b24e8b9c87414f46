//! Who is on the other end of a connection to the API: an anonymous runtime refuses its own handlers.
//!
//! Handlers share the host's network (outbound connections must work), so they can reach the runtime's API on
//! loopback. A runtime with an access key needs nothing more (handlers hold no key). An anonymous one tells
//! them apart by the owner of the connecting socket: when the peer's address is local, its socket is a row of
//! `/proc/net/tcp` or `/proc/net/tcp6` (local and remote addresses swapped with ours) that names the uid that
//! created it. A runtime that is root runs handlers as another uid (`run_as`, `nobody` by default), and a
//! connection from that uid is refused with 403 `AccessDenied`. The uid of a socket is set when it is created
//! and kept while it lives, so a handler cannot borrow another one (short of a helper process of another user
//! relaying for it, which is outside the sandbox's reach). A runtime that is not root runs handlers as its own
//! uid: this check cannot tell them apart, and the README says to give such a runtime an access key.

use std::net::{IpAddr, SocketAddr};

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};

/// One connection's peer, as the API middleware sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Whether its socket belongs to the uid handlers run as.
    pub is_handler: bool,
}

/// The runtime's listener, noting for each connection whether a handler opened it.
#[derive(Debug)]
pub struct PeerListener {
    inner: TcpListener,
    /// The uid handlers run as, when it differs from the runtime's (root) and the runtime is anonymous.
    handler_uid: Option<u32>,
}

impl PeerListener {
    /// Wraps `inner`; with `handler_uid`, connections from sockets of that uid are marked.
    pub fn new(inner: TcpListener, handler_uid: Option<u32>) -> Self {
        PeerListener { inner, handler_uid }
    }
}

impl Listener for PeerListener {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        // A response goes out as soon as it is written, not after the client acknowledges the previous segment.
        let _ = stream.set_nodelay(true);
        let is_handler = match (self.handler_uid, stream.local_addr()) {
            (Some(uid), Ok(local)) => socket_uid(addr, local) == Some(uid),
            _ => false,
        };
        (stream, Peer { addr, is_handler })
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.inner.local_addr()?,
            is_handler: false,
        })
    }
}

/// The uid owning the local socket `peer` connected to `local` from, if the peer is on this machine.
pub fn socket_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let peer = unmap(peer);
    let local = unmap(local);
    let table = match peer.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let mut found = std::fs::read_to_string(table)
        .ok()
        .and_then(|text| owner_in_table(&text, peer, local));
    if found.is_none() && peer.is_ipv4() {
        // An IPv6 socket connecting to an IPv4 address shows in tcp6 with mapped addresses.
        found = std::fs::read_to_string("/proc/net/tcp6")
            .ok()
            .and_then(|text| owner_in_table(&text, map(peer), map(local)));
    }
    found
}

fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

fn map(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        SocketAddr::V6(_) => addr,
    }
}

/// An address as `/proc/net/tcp{,6}` prints it: each 32-bit word of the address in host byte order, in hex,
/// then `:` and the port in hex.
pub fn proc_address(addr: SocketAddr) -> String {
    let words: Vec<u32> = match addr.ip() {
        IpAddr::V4(ip) => vec![u32::from_ne_bytes(ip.octets())],
        IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
            .collect(),
    };
    let mut out: String = words.iter().map(|w| format!("{w:08X}")).collect();
    out.push_str(&format!(":{:04X}", addr.port()));
    out
}

/// The uid of the row whose local address is `peer` and remote address `local` (the peer's own view).
pub fn owner_in_table(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let (want_local, want_remote) = (proc_address(peer), proc_address(local));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (row_local, row_remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (row_local.eq_ignore_ascii_case(&want_local)
            && row_remote.eq_ignore_ascii_case(&want_remote))
        .then(|| uid.parse().ok())
        .flatten()
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn loopback_v4(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    // Two rows as a little-endian machine prints them: a client (uid 65534) on 127.0.0.1:41234 connected to
    // 127.0.0.1:9000, and the server's accepted socket (uid 0).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A112 0100007F:2328 01 00000000:00000000 00:00000000 00000000 65534        0 4242 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:2328 0100007F:A112 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn addresses_are_printed_as_the_kernel_does() {
        if cfg!(target_endian = "little") {
            assert_eq!(proc_address(loopback_v4(9000)), "0100007F:2328");
            assert_eq!(
                proc_address("[::1]:80".parse().unwrap()),
                "00000000000000000000000001000000:0050"
            );
        }
    }

    #[test]
    fn the_client_row_names_its_owner() {
        if cfg!(target_endian = "little") {
            let client = loopback_v4(0xA112);
            let server = loopback_v4(9000);
            assert_eq!(owner_in_table(TCP, client, server), Some(65534));
            assert_eq!(owner_in_table(TCP, server, client), Some(0));
            assert_eq!(owner_in_table(TCP, loopback_v4(1), server), None);
        }
    }

    #[test]
    fn a_real_connection_is_found_with_its_uid() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = listener.local_addr().unwrap();
            let client = TcpStream::connect(server).await.unwrap();
            let (_accepted, peer) = listener.accept().await.unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            assert_eq!(socket_uid(peer, server), Some(me));
        });
    }
}
