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

/// Send one non-interactive command line to a stats socket and read the whole reply.
pub async fn command(path: &Path, command: &str) -> Result<String, SocketError> {
    let mut stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|source| match source.kind() {
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
