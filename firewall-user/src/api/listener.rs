//! The API socket: creating it safely and deciding who may talk through it.

use std::{
    fs::{self, DirBuilder, Permissions},
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::Path,
};

use tokio::net::{UnixListener, UnixStream};

use super::ApiError;

/// Binds the API socket at `path`, mode 0600.
///
/// Creates the parent directory (mode 0755) if needed and removes a socket file left by a
/// daemon that is gone. The socket is owned by the daemon's effective user (root in
/// production).
///
/// Between `bind` and `chmod` the socket briefly carries the umask's mode; a connection made
/// in that window is still subject to [`peer_allowed`], so it gains nothing.
///
/// # Errors
/// [`ApiError`] if the directory cannot be made, `path` is something other than a socket,
/// another daemon answers on it, or binding or `chmod` fails.
pub(crate) fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|source| ApiError::SocketDir {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| ApiError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(|source| {
        ApiError::Permissions {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

/// Removes a socket file nobody listens on; refuses to touch anything else.
fn remove_stale(path: &Path) -> Result<(), ApiError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ApiError::Bind {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(ApiError::NotASocket(path.to_path_buf()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ApiError::InUse(path.to_path_buf()));
    }
    fs::remove_file(path).map_err(|source| ApiError::RemoveStale {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether the peer of `stream` may use the API: root, or the daemon's own effective user.
///
/// Returns the peer's uid on refusal (or `None` if its credentials could not be read), for
/// the caller to log.
pub(crate) fn peer_allowed(stream: &UnixStream) -> Result<(), Option<u32>> {
    let credentials = stream.peer_cred().map_err(|_| None)?;
    let uid = credentials.uid();
    if uid == 0 || uid == effective_uid() {
        Ok(())
    } else {
        Err(Some(uid))
    }
}

/// The daemon's effective user id.
pub(crate) fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}
