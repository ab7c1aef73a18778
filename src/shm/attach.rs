//! Handing the store's descriptor to another process: the broker sends it
//! with its reply to SHM.ATTACH over the Unix socket (SCM_RIGHTS), after
//! AUTH, so only a process that knows the secret and passes the socket
//! directory's checks ever maps the store. The process then names the slot
//! it took with SHM.SLOT on its own connection: when that closes with the
//! process gone, the broker repairs what it left.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::layout::LAYOUT_VERSION;
use super::Store;

/// Sends `bytes` with `fd` attached, on a non-blocking socket whose output
/// is otherwise empty (retrying briefly while it is full).
pub fn send_with_fd(sock: RawFd, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    let mut sent_fd = false;
    let mut offset = 0;
    for _ in 0..2_000 {
        let rest = &bytes[offset..];
        let mut iov = libc::iovec { iov_base: rest.as_ptr() as *mut libc::c_void, iov_len: rest.len() };
        // SAFETY: a zeroed msghdr is valid; the control buffer is sized with
        // CMSG_SPACE for one descriptor and outlives the call.
        let n = unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            let mut control = vec![0u8; space];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if !sent_fd {
                msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
                msg.msg_controllen = space as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
            }
            libc::sendmsg(sock, &msg, no_sigpipe())
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock || error.kind() == io::ErrorKind::Interrupted {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            return Err(error);
        }
        sent_fd = true;
        offset += n as usize;
        if offset == bytes.len() {
            return Ok(());
        }
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read"))
}

#[cfg(target_os = "linux")]
fn no_sigpipe() -> libc::c_int {
    libc::MSG_NOSIGNAL
}

#[cfg(not(target_os = "linux"))]
fn no_sigpipe() -> libc::c_int {
    0
}

/// Reads what arrives, taking a descriptor that comes with it.
fn recv_with_fd(sock: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: as in send_with_fd; a descriptor received is owned from here on.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut control = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, cloexec());
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fd = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let received = OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd));
                close_on_exec(&received)?;
                fd = Some(received);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((n as usize, fd))
    }
}

#[cfg(target_os = "linux")]
fn cloexec() -> libc::c_int {
    libc::MSG_CMSG_CLOEXEC
}

#[cfg(not(target_os = "linux"))]
fn cloexec() -> libc::c_int {
    0
}

/// Marks a received descriptor close-on-exec: a program the process runs
/// must not inherit the store, which would keep its memory alive and
/// reachable after the app is gone. On Linux recvmsg has marked it already
/// (MSG_CMSG_CLOEXEC, with no window for a fork in another thread); the
/// same call runs there too, so that the path other systems rely on is the
/// one the tests run.
fn close_on_exec(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: sets a flag of a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn command(args: &[&[u8]]) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    crate::resp::encode_command(args, &mut out);
    out
}

/// Reads one reply made of `lines` lines (the replies here are short),
/// keeping a descriptor that arrives with it.
fn read_reply(sock: &mut UnixStream, lines: usize, fd: &mut Option<OwnedFd>) -> io::Result<String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let text = String::from_utf8_lossy(&reply);
        if text.starts_with('-') && text.contains("\r\n") {
            return Err(io::Error::other(text.trim_end().trim_start_matches('-').to_string()));
        }
        if text.matches("\r\n").count() >= lines {
            return Ok(text.into_owned());
        }
        let (n, got) = recv_with_fd(sock, &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the broker closed the connection"));
        }
        if got.is_some() {
            *fd = got;
        }
        reply.extend_from_slice(&buf[..n]);
    }
}

/// Connects to the broker at `socket` (already checked as trusted),
/// authenticates and maps the store. The connection closes once the
/// descriptor is here: the process names its slot on its own connection
/// (SHM.SLOT), whose end tells the broker to look for what it left.
pub fn attach(socket: &Path, secret: Option<&str>, timeout: Duration) -> io::Result<Arc<Store>> {
    let mut connection = UnixStream::connect(socket)?;
    connection.set_read_timeout(Some(timeout))?;
    connection.set_write_timeout(Some(timeout))?;
    let mut fd = None;
    if let Some(secret) = secret {
        connection.write_all(&command(&[b"AUTH", secret.as_bytes()]))?;
        read_reply(&mut connection, 1, &mut fd)?;
    }
    connection.write_all(&command(&[b"SHM.ATTACH"]))?;
    let reply = read_reply(&mut connection, 3, &mut fd)?;
    let version: u64 = reply.lines().nth(1).and_then(|l| l.trim_start_matches(':').parse().ok()).unwrap_or(0);
    if version != LAYOUT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the broker's store has layout version {version}, this build uses {LAYOUT_VERSION}"),
        ));
    }
    let fd = fd.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the broker sent no descriptor"))?;
    Store::attach(fd)
}
