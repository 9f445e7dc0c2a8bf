//! One pinned file: already there, or downloaded to its `.part` (resumed when one is left),
//! verified against the pin, and only then renamed over the target. A file at the target with
//! other bytes is replaced by a verified download, never by anything else.

use super::dest::Dest;
use super::http::{Answer, Client};
use super::report::{Failure, Found, Outcome, Status};
use crate::hash::sha256_file;
use crate::manifest::pin::Pin;
use std::cmp::Ordering;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

/// Brings one pinned file into `dest`.
pub fn fetch(client: &Client, dest: &Dest, pin: &Pin) -> Outcome {
    let (target, part) = (dest.target(&pin.path), dest.part(&pin.path));
    let other_bytes = match examine(&target, pin) {
        Ok(AtTarget::Pinned) => {
            // A partial download of a file that is already good is of no use.
            let _ = std::fs::remove_file(&part);
            return Outcome::new(Status::Present);
        }
        Ok(AtTarget::Absent) => None,
        Ok(AtTarget::Other(found)) => Some(found),
        Err(failure) => return Outcome { failure: Some(failure), ..Outcome::new(Status::Failed) },
    };
    let Some(url) = &pin.url else {
        return Outcome { other_bytes, ..Outcome::new(Status::NoUrl) };
    };
    if let Err(message) = dest.confined(&target) {
        return Outcome { failure: Some(Failure::Disk { message }), other_bytes, ..Outcome::new(Status::Failed) };
    }
    match download(client, dest, url, pin, &part).and_then(|got| install(dest, &part, &target).map(|()| got)) {
        Ok((bytes, resumed_from)) => Outcome { bytes, resumed_from, other_bytes, ..Outcome::new(Status::Downloaded) },
        Err(failure) => Outcome { failure: Some(failure), other_bytes, ..Outcome::new(Status::Failed) },
    }
}

/// What is at a file's target before the download.
enum AtTarget {
    Pinned,
    Absent,
    /// Other bytes (hashed only when the size is the pinned one).
    Other(Found),
}

fn examine(target: &Path, pin: &Pin) -> Result<AtTarget, Failure> {
    let disk = |e: std::io::Error| Failure::Disk { message: format!("cannot read {}: {e}", target.display()) };
    let size = match std::fs::metadata(target) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AtTarget::Absent),
        Err(e) => return Err(disk(e)),
    };
    if size != pin.size {
        return Ok(AtTarget::Other(Found { size, sha256: None }));
    }
    let (size, sha256) = sha256_file(target).map_err(disk)?;
    Ok(if size == pin.size && sha256 == pin.sha256 { AtTarget::Pinned } else { AtTarget::Other(Found { size, sha256: Some(sha256) }) })
}

/// Downloads into `part` until it holds the pinned bytes: (bytes received, resumed from).
fn download(client: &Client, dest: &Dest, url: &str, pin: &Pin, part: &Path) -> Result<(u64, Option<u64>), Failure> {
    let disk = |what: &str, e: std::io::Error| Failure::Disk { message: format!("cannot {what} {}: {e}", part.display()) };
    dest.make_parent(part).map_err(|message| Failure::Disk { message })?;
    let mut from = match leftover(part, pin).map_err(|e| disk("read", e))? {
        // An earlier run was stopped between its last byte and the rename.
        Some(len) if len == pin.size => return Ok((0, Some(len))),
        Some(len) => len,
        None => 0,
    };
    loop {
        let (start, body) = match client.get(url, from).map_err(|message| Failure::Network { message })? {
            Answer::Bytes { total: Some(size), .. } if size != pin.size => {
                let _ = std::fs::remove_file(part);
                return Err(Failure::SizeMismatch { size, pinned: pin.size, announced: true });
            }
            Answer::Bytes { start, body, .. } if start == 0 || start == from => (start, body),
            Answer::Bytes { start, .. } => return Err(Failure::Network { message: format!("asked for bytes {from}- and the server sent bytes {start}-") }),
            // The partial file is longer than what the server has now: start again.
            Answer::RangeNotSatisfiable if from > 0 => {
                std::fs::remove_file(part).map_err(|e| disk("remove", e))?;
                from = 0;
                continue;
            }
            Answer::RangeNotSatisfiable => return Err(Failure::Http { status: 416, reason: "Range Not Satisfiable".into() }),
            Answer::Status { code, reason } => return Err(Failure::Http { status: code, reason }),
        };
        // Start 0 answers a range request with the whole file (200): the partial one goes.
        let mut file = OpenOptions::new().create(true).write(true).append(start > 0).truncate(start == 0).open(part).map_err(|e| disk("write", e))?;
        let have = receive(body, &mut file, start, pin)?;
        file.sync_all().map_err(|e| disk("write", e))?;
        return match have.cmp(&pin.size) {
            Ordering::Less => Err(Failure::Cut { received: have, expected: pin.size, cause: "the server sent no more".into() }),
            Ordering::Greater => {
                let _ = std::fs::remove_file(part);
                Err(Failure::SizeMismatch { size: have, pinned: pin.size, announced: false })
            }
            Ordering::Equal => verify(part, pin).map(|()| (have - start, (start > 0).then_some(start))),
        };
    }
}

/// Appends the body to `file`, which holds `start` bytes, and returns its length; stops one byte
/// past the pinned size (enough to know the file is too long).
fn receive(body: impl Read, file: &mut std::fs::File, start: u64, pin: &Pin) -> Result<u64, Failure> {
    let mut body = body.take(pin.size + 1 - start);
    let mut buf = vec![0u8; 1 << 16];
    let mut have = start;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(have),
            Ok(n) => n,
            Err(e) => return Err(Failure::Cut { received: have, expected: pin.size, cause: e.to_string() }),
        };
        file.write_all(&buf[..n]).map_err(|e| Failure::Disk { message: format!("cannot write the download of {}: {e}", pin.path) })?;
        have += n as u64;
    }
}

/// The length of a partial download worth resuming, if there is one. One longer than the pin,
/// or as long with other bytes, is deleted.
fn leftover(part: &Path, pin: &Pin) -> std::io::Result<Option<u64>> {
    let len = match std::fs::metadata(part) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if len < pin.size || (len == pin.size && verify(part, pin).is_ok()) {
        return Ok(Some(len));
    }
    match std::fs::remove_file(part) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(None),
    }
}

/// The partial file holds the pinned bytes; otherwise it is deleted and the digest reported.
fn verify(part: &Path, pin: &Pin) -> Result<(), Failure> {
    let (size, sha256) = sha256_file(part).map_err(|e| Failure::Disk { message: format!("cannot read {}: {e}", part.display()) })?;
    if size == pin.size && sha256 == pin.sha256 {
        return Ok(());
    }
    let _ = std::fs::remove_file(part);
    Err(Failure::Corrupt { sha256, pinned: pin.sha256.clone() })
}

/// Renames the verified partial file over the target and makes the rename durable.
fn install(dest: &Dest, part: &Path, target: &Path) -> Result<(), Failure> {
    let disk = |e: std::io::Error| Failure::Disk { message: format!("cannot move {} to {}: {e}", part.display(), target.display()) };
    dest.make_parent(target).map_err(|message| Failure::Disk { message })?;
    std::fs::rename(part, target).map_err(disk)?;
    crate::files::sync_dir(target.parent().unwrap_or(Path::new("."))).map_err(disk)
}
