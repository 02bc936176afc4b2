//! systemd's readiness protocol (`sd_notify`): one datagram of
//! `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`.
//!
//! Written by hand: the protocol is a single `sendto`, and the crates that
//! wrap it bring nothing we need. A leading `@` names a socket in the
//! abstract namespace.

use std::{
    ffi::OsStr,
    io,
    os::unix::{ffi::OsStrExt as _, net::UnixDatagram},
};

/// Where notifications go; a no-op when not started by systemd.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<std::ffi::OsString>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` once (systemd sets it for `Type=notify`).
    pub fn from_env() -> Self {
        Notifier {
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
        }
    }

    pub fn to_socket(socket: &OsStr) -> Self {
        Notifier {
            socket: Some(socket.to_owned()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (e.g. "READY=1"); Ok(false) when there is no socket.
    pub fn notify(&self, state: &str) -> io::Result<bool> {
        let Some(path) = &self.socket else {
            return Ok(false);
        };
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), path)?;
        }
        Ok(true)
    }

    /// `RELOADING=1` needs the monotonic time of the request (systemd 253+
    /// checks it for `Type=notify-reload`; older ones ignore it).
    pub fn reloading(&self, monotonic_us: u64) -> io::Result<bool> {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={monotonic_us}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path)?;
        let n = Notifier::to_socket(path.as_os_str());
        assert!(n.notify("READY=1")?);
        assert!(n.reloading(42)?);
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"READY=1");
        let len = rx.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"RELOADING=1\nMONOTONIC_USEC=42");
        Ok(())
    }

    #[test]
    fn abstract_sockets_are_supported() -> io::Result<()> {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("cowtrace-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let rx = UnixDatagram::bind_addr(&addr)?;
        let n = Notifier::to_socket(OsStr::new(&format!("@{name}")));
        assert!(n.notify("STOPPING=1")?);
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"STOPPING=1");
        Ok(())
    }

    #[test]
    fn without_a_socket_nothing_is_sent() -> io::Result<()> {
        assert!(!Notifier::default().notify("READY=1")?);
        Ok(())
    }
}
