//! systemd's notification protocol (`Type=notify`), by hand: one datagram per message to the
//! unix socket named in `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Does
//! nothing when not started by systemd. `WATCHDOG_USEC` (with `WATCHDOG_PID` naming us, if
//! set) asks for a `WATCHDOG=1` at least that often.

use std::time::Duration;

/// Sends `state` (e.g. `"READY=1"`) to systemd; false when there is no one to tell.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    send(&path.to_string_lossy(), state).is_ok()
}

#[cfg(unix)]
fn send(path: &str, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    }
    socket.send_to(state.as_bytes(), path)?;
    Ok(())
}

#[cfg(not(unix))]
fn send(_: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::other("no systemd here"))
}

/// How often systemd wants `WATCHDOG=1`, if it does.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn a_message_reaches_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        super::send(&path.to_string_lossy(), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
