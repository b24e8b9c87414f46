//! Helpers shared by the integration tests: they start real parts on port 0 and clean up after themselves.

pub mod admin;
pub mod daemon;
pub mod fabric;
pub mod postgres;
pub mod runtime;

/// A loopback port for a process the tests start (whose listener they cannot hand over), free when asked.
///
/// Taken below the kernel's ephemeral range (32768 and up by default), where nothing binding port 0 or
/// connecting out is given a port: a port picked by binding 0 and released could be handed to the next outgoing
/// connection of any process before the daemon binds it. Never the same port twice in this process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    const RANGE: std::ops::Range<u16> = 20_000..32_000;
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Processes running tests at once start at different places.
    let start = next.get_or_insert_with(|| {
        RANGE.start + (std::process::id() % u32::from(RANGE.end - RANGE.start)) as u16
    });
    for _ in RANGE {
        let port = *start;
        *start = if port + 1 >= RANGE.end {
            RANGE.start
        } else {
            port + 1
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {RANGE:?}");
}
