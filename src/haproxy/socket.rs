//! HAProxy's stats socket: one non-interactive command line per connection, the whole reply
//! read (HAProxy management guide, "9.3. Unix Socket commands"), and a refused connection
//! explained in terms of users, groups and the socket's mode.

use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `show info` + `show stat` of a large config is well under this (bytes).
const SOCKET_REPLY_LIMIT: u64 = 8 * 1024 * 1024;

/// Why a command on a stats socket got no reply: the connection, the write or the read
/// failed, or the reply was not text. Every message starts with `stats socket <path>`.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// connect(2) was refused for lack of permission; `hint` says which user, group or
    /// directory is in the way (see [`access_hint`]).
    #[error("stats socket {}: {source}: {hint}", path.display())]
    Denied {
        path: PathBuf,
        source: std::io::Error,
        hint: String,
    },
    /// connect(2) failed otherwise (no such socket, nobody listening).
    #[error("stats socket {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Sending the command line failed.
    #[error("stats socket {}: write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Reading the reply failed.
    #[error("stats socket {}: read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// HAProxy's replies are ASCII; this one was not UTF-8.
    #[error("stats socket {}: reply is not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
}

/// How long a connect refused with EAGAIN is retried: the socket's accept queue (its
/// `backlog`, HAProxy configuration manual "5.1. Bind options") is full for a moment while
/// other clients (more rules, a monitoring agent) are being served.
const BUSY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// connect(2), retried with a short backoff while the accept queue is full (EAGAIN on a unix
/// socket, unix(7)), for up to [`BUSY_RETRY_FOR`]; the caller's timeout bounds it too.
pub(crate) async fn connect(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let deadline = tokio::time::Instant::now() + BUSY_RETRY_FOR;
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        match tokio::net::UnixStream::connect(path).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Send one non-interactive command line to a stats socket and read the whole reply.
pub async fn command(path: &Path, command: &str) -> Result<String, SocketError> {
    let mut stream = connect(path).await.map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => SocketError::Denied {
            path: path.to_owned(),
            hint: access_hint(path),
            source,
        },
        _ => SocketError::Connect {
            path: path.to_owned(),
            source,
        },
    })?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|source| SocketError::Write {
            path: path.to_owned(),
            source,
        })?;
    let mut reply = Vec::new();
    (&mut stream)
        .take(SOCKET_REPLY_LIMIT)
        .read_to_end(&mut reply)
        .await
        .map_err(|source| SocketError::Read {
            path: path.to_owned(),
            source,
        })?;
    String::from_utf8(reply).map_err(|_| SocketError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// Who we are and what the socket allows, for a refused connect: "user haproxy-watchdog
/// (uid 998) is not in group haproxy, which /run/haproxy/admin.sock (mode 660, owner
/// haproxy:haproxy) needs". HAProxy sets the socket's mode and group with `stats socket ...
/// mode 660 group haproxy` (HAProxy configuration manual, "5.1. Bind options").
fn access_hint(path: &Path) -> String {
    use nix::unistd::{access, getuid, AccessFlags, Gid, Group, Uid, User};
    use std::os::unix::fs::MetadataExt;
    let user_name = |uid: u32| {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    };
    let uid = getuid().as_raw();
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    // A directory on the way that this user cannot search hides the socket itself.
    for dir in path.ancestors().skip(1) {
        if !dir.as_os_str().is_empty() && access(dir, AccessFlags::X_OK).is_err() {
            return format!(
                "user {user} (uid {uid}) cannot enter directory {} on the way to it",
                dir.display()
            );
        }
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return format!("user {user} (uid {uid}) cannot look at it either: {e}"),
    };
    let mode = meta.mode() & 0o777;
    let group = Group::from_gid(Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    let owner = user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string());
    let advice = if mode & 0o060 == 0o060 {
        format!(
            "add {user} to group {group} (the packages do when HAProxy is installed) and restart"
        )
    } else {
        format!("the socket gives its group no read-write access, so joining group {group} would not help: set `stats socket ... mode 660 group <a group {user} is in>` in HAProxy's configuration")
    };
    format!(
        "user {user} (uid {uid}) lacks read-write access to it (mode {mode:o}, owner {owner}:{group}); {advice}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unix socket listening with a backlog of 0: one connection waiting fills its queue.
    fn tiny_listener(path: &Path) -> std::os::unix::net::UnixListener {
        let l = std::os::unix::net::UnixListener::bind(path).unwrap();
        // SAFETY: listen(2) again on our own listening socket, only changing its backlog.
        assert_eq!(
            unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 0) },
            0
        );
        l
    }

    #[tokio::test]
    async fn a_busy_stats_socket_is_retried_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = tiny_listener(&path);
        // Someone else's connection waits in the queue, so ours gets EAGAIN at first.
        let other = tokio::net::UnixStream::connect(&path).await.unwrap();
        let serving = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            use std::io::{Read, Write};
            for i in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                if i == 1 {
                    let mut line = [0u8; 64];
                    let _ = s.read(&mut line);
                    s.write_all(b"Name: HAProxy\n").unwrap();
                }
            }
        });
        let reply = command(&path, "show info").await;
        assert_eq!(reply.unwrap(), "Name: HAProxy\n");
        serving.join().unwrap();
        drop(other);
    }
}
