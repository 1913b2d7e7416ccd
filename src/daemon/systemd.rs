//! systemd's notification protocol (`sd_notify(3)`): `READY=1`, `WATCHDOG=1`, `STOPPING=1`,
//! `STATUS=…` datagrams to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//!
//! Written here rather than taken from the sd-notify crate because that crate sends on a
//! blocking socket: when the receiver does not read (a stuck manager, a test harness), its send
//! blocks and, called from the daemon's loop, stops every schedule. These sends never block: a
//! datagram that cannot go now is dropped (the next watchdog ping is 1/2 interval away), and an
//! absent `$NOTIFY_SOCKET` makes every call a no-op.

use std::os::unix::net::UnixDatagram;

fn socket_addr(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    if let Some(abs) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes())
    } else {
        std::os::unix::net::SocketAddr::from_pathname(name)
    }
}

/// Send one notification (e.g. `"READY=1"`). Errors are logged at debug level only.
pub fn notify(state: &str) {
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let res = (|| {
        let addr = socket_addr(&name.to_string_lossy())?;
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        sock.send_to_addr(state.as_bytes(), &addr)
    })();
    if let Err(e) = res {
        tracing::debug!("sd_notify {state:?} not sent: {e}");
    }
}

/// Half the watchdog interval, when systemd watches this process (`WATCHDOG_USEC`, and
/// `WATCHDOG_PID` naming us or unset, as libsystemd reads them).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_socket_never_blocks_the_sender() {
        let d = tempfile::tempdir().expect("tmp");
        let path = d.path().join("notify.sock");
        let rx = super::UnixDatagram::bind(&path).expect("bind");
        let addr = super::socket_addr(&path.to_string_lossy()).expect("addr");
        let tx = super::UnixDatagram::unbound().expect("sock");
        tx.set_nonblocking(true).expect("nb");
        // Fill the receiver's queue; every send returns (Ok or WouldBlock), none hangs.
        let mut blocked = false;
        for _ in 0..10_000 {
            if tx.send_to_addr(b"WATCHDOG=1", &addr).is_err() {
                blocked = true;
                break;
            }
        }
        assert!(blocked, "the queue never filled");
        let mut buf = [0u8; 32];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
