//! Ctrl-C (SIGINT) or SIGTERM during an ingest: the unfinished version directories of this
//! process are removed, then the process exits with 128 + the signal (130, 143), as shells
//! expect. Renaming a directory into place and removing one hold the same mutex as the cleanup,
//! so a signal never removes a directory that is being published. A SIGKILL cannot be caught:
//! the next ingest removes what it left (`files::remove_leftover_temps`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

fn temps() -> MutexGuard<'static, Vec<PathBuf>> {
    TEMPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes `tmp` if the process is interrupted before `rename` or `remove` forgets it.
pub fn register(tmp: &Path) {
    HANDLER.call_once(install);
    temps().push(tmp.to_path_buf());
}

/// Renames a registered directory into place; once renamed it is no longer removed on a signal.
pub fn rename(tmp: &Path, target: &Path) -> std::io::Result<()> {
    let mut temps = temps();
    std::fs::rename(tmp, target)?;
    temps.retain(|t| t != tmp);
    Ok(())
}

/// Removes a registered directory now.
pub fn remove(tmp: &Path) {
    let mut temps = temps();
    let _ = std::fs::remove_dir_all(tmp);
    temps.retain(|t| t != tmp);
}

fn install() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Without a handler a signal ends the process as before, and the next ingest cleans up.
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
    let _ = std::thread::Builder::new().name("usctl-signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held until the process ends: nothing is renamed into place any more.
            let temps = temps();
            for t in temps.iter() {
                if std::fs::remove_dir_all(t).is_ok() {
                    eprintln!("usctl: interrupted; removed the unfinished version {}", t.display());
                }
            }
            std::process::exit(128 + signal);
        }
    });
}
