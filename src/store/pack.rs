//! `usctl pack` and `usctl unpack` (docs/pack-format.md): one store version as one zstd-compressed
//! tar, to carry it to another machine. The pack's first member, PACK.json, names the format and the
//! version folder; the second is the version's store.json, whose file digests and self-digest are
//! what unpacking checks every other member against while it streams them into a temporary folder.
//! Only a version that passes `usctl verify` is packed; only a pack whose every file matches is
//! published, under the dataset's publish lock, by one rename.

use super::check::{self, meta_intact};
use super::lock::PublishLock;
use super::writer::rename_into_place;
use super::*;
use crate::error::PackError;
use crate::files::{remove_leftover_temps, sync_dir, tmp_path};
use crate::hash::hex;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::time::Instant;

pub const PACK_FORMAT: &str = "usctl-pack";
pub const PACK_VERSION: u32 = 1;
/// The pack's first member, at the top of the tar.
pub const PACK_FILE: &str = "PACK.json";
/// zstd's level unless `--level` says otherwise (docs/BENCHMARKS.md, "Packs").
pub const DEFAULT_LEVEL: i32 = 3;
/// PACK.json and store.json are read into memory: larger members are refused.
const SMALL_LIMIT: u64 = 1 << 20;

/// PACK.json: which format this is and which version folder it holds. The file digests are
/// store.json's (the next member), covered by its own `meta_sha256`: one record, not two to agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackHeader {
    pub format: String,
    pub version: u32,
    pub dataset: String,
    /// `<seq>-<id>`, the version folder's name where it was packed.
    pub version_dir: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    pub pack: PathBuf,
    pub version_dir: PathBuf,
    pub dataset: String,
    pub files: usize,
    /// Bytes of the version's files, and of the pack.
    pub input_bytes: u64,
    pub pack_bytes: u64,
    pub level: i32,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnpackReport {
    pub pack: PathBuf,
    pub dataset: String,
    pub version_id: String,
    /// The version folder's name in the pack.
    pub packed_as: String,
    /// Where the version is now (an already published one when `already_published`).
    pub version_dir: PathBuf,
    pub seq: u32,
    /// The store already held this version id with the same store.json: nothing was written.
    pub already_published: bool,
    /// Files written and checked, and their bytes (0 when already published).
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// The pack's members after PACK.json: store.json first, then every file it lists, in its order.
fn member_names(meta: &StoreMeta) -> Vec<String> {
    std::iter::once(META_FILE.to_string()).chain(meta.files.keys().cloned()).collect()
}

/// A name that is one plain folder or file name (what manifests allow for dataset names).
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Packs the version folder `dir` into `out` (zstd `level`); refuses a version that `verify`
/// does not pass, and an existing `out` without `force`.
pub fn pack(dir: &Path, out: &Path, level: i32, force: bool) -> Result<PackReport, PackError> {
    let start = Instant::now();
    let range = zstd::compression_level_range();
    if !range.contains(&level) {
        return Err(PackError::Level { level, min: *range.start(), max: *range.end() });
    }
    if !force && out.symlink_metadata().is_ok() {
        return Err(PackError::Exists { path: out.to_path_buf() });
    }
    let report = verify::verify(dir)?;
    if !report.is_ok() {
        let problems = [report.bad_files, report.bad_videos, report.unchecked].concat();
        return Err(PackError::Unverified { path: dir.to_path_buf(), problems: problems.join("; ") });
    }
    let meta = StoreMeta::load(dir)?;
    let full = dir.canonicalize().map_err(PackError::io(dir))?;
    let out_dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if out_dir.canonicalize().is_ok_and(|d| d.starts_with(&full)) {
        return Err(PackError::InsideVersion { path: out.to_path_buf(), version: full });
    }
    let version_dir = full.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let header = PackHeader { format: PACK_FORMAT.into(), version: PACK_VERSION, dataset: meta.dataset.clone(), version_dir };
    let names = member_names(&meta);
    let tmp = tmp_path(out);
    let written = write_pack(&tmp, &full, &header, &names, level).and_then(|input| {
        if force {
            std::fs::rename(&tmp, out).map_err(PackError::io(out))?;
        } else {
            // A link fails where a name exists, so a file that appeared meanwhile is never
            // replaced; a file system without links (a FAT stick) gets a rename after a look.
            match std::fs::hard_link(&tmp, out) {
                Ok(()) => {}
                Err(_) if out.symlink_metadata().is_ok() => return Err(PackError::Exists { path: out.to_path_buf() }),
                Err(_) => std::fs::rename(&tmp, out).map_err(PackError::io(out))?,
            }
        }
        Ok(input)
    });
    let _ = std::fs::remove_file(&tmp);
    let input_bytes = written?;
    sync_dir(out.parent().unwrap_or(Path::new("."))).map_err(PackError::io(out))?;
    let pack_bytes = std::fs::metadata(out).map_err(PackError::io(out))?.len();
    Ok(PackReport {
        pack: out.to_path_buf(),
        version_dir: full,
        dataset: meta.dataset,
        files: names.len(),
        input_bytes,
        pack_bytes,
        level,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes the pack to `tmp` and syncs it; returns the bytes of the version's files.
fn write_pack(tmp: &Path, dir: &Path, header: &PackHeader, names: &[String], level: i32) -> Result<u64, PackError> {
    let at = |e| PackError::Io { path: tmp.to_path_buf(), source: e };
    let mut zstd = zstd::Encoder::new(File::create(tmp).map_err(at)?, level).map_err(at)?;
    zstd.include_checksum(true).map_err(at)?;
    let mut tar = tar::Builder::new(zstd);
    let mut json = serde_json::to_vec_pretty(header).unwrap_or_default();
    json.push(b'\n');
    append(&mut tar, PACK_FILE, json.len() as u64, &json[..]).map_err(at)?;
    let mut input = 0;
    for name in names {
        let path = dir.join(name);
        let file = File::open(&path).map_err(PackError::io(&path))?;
        let len = file.metadata().map_err(PackError::io(&path))?.len();
        append(&mut tar, &format!("{}/{}/{name}", header.dataset, header.version_dir), len, file.take(len)).map_err(at)?;
        input += len;
    }
    let file = tar.into_inner().and_then(|z| z.finish()).map_err(at)?;
    file.sync_all().map_err(at)?;
    Ok(input)
}

/// One plain file with fixed metadata (mode 644, owner 0, time 0): a pack's bytes depend on the
/// version's bytes and the level alone.
fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, len: u64, data: impl Read) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(0);
    tar.append_data(&mut h, path, data)
}

/// A read of the pack failed: truncated when it ended early, damaged otherwise.
fn broken(pack: &Path, what: &str, e: std::io::Error) -> PackError {
    let message = format!("{e} while reading {what}");
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => PackError::Truncated { path: pack.to_path_buf(), message },
        _ => PackError::Damaged { path: pack.to_path_buf(), message },
    }
}

/// The temporary version folder of an unpack, removed unless published (and the dataset folder
/// with it when the unpack made it and it is empty again).
struct Staging {
    tmp: PathBuf,
    made_dataset_dir: Option<PathBuf>,
    published: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            interrupt::remove(&self.tmp);
            if let Some(d) = &self.made_dataset_dir {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// Unpacks `pack` (`-`: standard input, e.g. the pieces of a split pack joined by `cat`) into the
/// store root `store`: every member is checked against store.json while it is written into a
/// temporary folder of the dataset, the whole stream must end intact, the folder passes the
/// reader's checks, and is then renamed into place under the publish lock.
pub fn unpack(pack: &Path, store: &Path) -> Result<UnpackReport, PackError> {
    let start = Instant::now();
    let refused = |message: String| PackError::Refused { path: pack.to_path_buf(), message };
    let file: Box<dyn Read> = if pack == Path::new("-") { Box::new(std::io::stdin().lock()) } else { Box::new(File::open(pack).map_err(PackError::io(pack))?) };
    let mut archive = tar::Archive::new(zstd::Decoder::new(file).map_err(PackError::io(pack))?);
    let mut entries = archive.entries().map_err(|e| broken(pack, "its start", e))?;
    let mut next_small = |want: &str| -> Result<Vec<u8>, PackError> {
        let mut entry = match entries.next() {
            Some(entry) => entry.map_err(|e| broken(pack, want, e))?,
            None => return Err(refused(format!("it ends before {want}"))),
        };
        let path = String::from_utf8_lossy(&entry.path_bytes()).to_string();
        if path != want || entry.header().entry_type() != tar::EntryType::Regular || entry.size() > SMALL_LIMIT {
            return Err(refused(format!("member '{path}' where a plain file {want} of at most {SMALL_LIMIT} bytes belongs")));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| broken(pack, want, e))?;
        Ok(bytes)
    };

    let header = parse_header(pack, &next_small(PACK_FILE)?)?;
    let prefix = format!("{}/{}", header.dataset, header.version_dir);
    let meta_member = format!("{prefix}/{META_FILE}");
    let meta_bytes = next_small(&meta_member)?;
    let meta = StoreMeta::parse(&meta_bytes, pack.join(&meta_member)).map_err(|e| match e {
        StoreError::Corrupt { message, .. } => PackError::Damaged { path: pack.to_path_buf(), message: format!("{meta_member}: {message}") },
        e => PackError::Store(e),
    })?;
    match meta_intact(&meta) {
        Some(true) => {}
        Some(false) => return Err(PackError::Damaged { path: pack.to_path_buf(), message: format!("{meta_member} does not match its meta_sha256") }),
        None => return Err(refused(format!("{meta_member} is of store format 1, which has no self-digest to check it by"))),
    }
    let (seq, id) = parse_version_name(&header.version_dir).unwrap_or_default();
    if meta.dataset != header.dataset || meta.version_id != id {
        return Err(refused(format!("{meta_member} is of dataset '{}' version {}, PACK.json says {prefix}", meta.dataset, meta.version_id)));
    }
    if let Some(bad) = meta.files.keys().find(|n| !plain_name(n) || *n == META_FILE) {
        return Err(refused(format!("{meta_member} lists a file '{bad}', which is no plain file name")));
    }

    let dataset_dir = store.join(&meta.dataset);
    if let Some(done) = already_published(pack, &dataset_dir, &meta)? {
        return Ok(UnpackReport { packed_as: header.version_dir, seconds: start.elapsed().as_secs_f64(), ..done });
    }
    let made_dataset_dir = (!dataset_dir.exists()).then(|| dataset_dir.clone());
    std::fs::create_dir_all(&dataset_dir).map_err(PackError::io(&dataset_dir))?;
    remove_leftover_temps(&dataset_dir);
    let tmp = dataset_dir.join(format!("{TMP_PREFIX}{id}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(PackError::io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(PackError::io(&tmp))?;
    interrupt::register(&tmp);
    let mut staging = Staging { tmp: tmp.clone(), made_dataset_dir, published: false };
    write_checked(&tmp.join(META_FILE), &mut &meta_bytes[..], pack)?;

    let mut bytes = meta_bytes.len() as u64;
    let mut missing: BTreeMap<&String, &FileDigest> = meta.files.iter().collect();
    for entry in entries {
        let mut entry = entry.map_err(|e| broken(pack, "a member's header", e))?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).to_string();
        let name = path.strip_prefix(&prefix).and_then(|p| p.strip_prefix('/')).unwrap_or_default().to_string();
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(refused(format!("member '{path}' is a {}, not a plain file", kind_name(kind))));
        }
        let Some(want) = missing.remove(&name) else {
            let why = if meta.files.contains_key(&name) || name == META_FILE { "a second copy of a file" } else { "not a file of store.json in" };
            return Err(refused(format!("member '{path}' is {why} {prefix}/")));
        };
        if entry.size() != want.bytes {
            return Err(PackError::Damaged {
                path: pack.to_path_buf(),
                message: format!("{path} has {} bytes, store.json records {}", entry.size(), want.bytes),
            });
        }
        let (got, sha256) = write_checked(&tmp.join(&name), &mut entry, pack)?;
        if got != want.bytes || sha256 != want.sha256 {
            return Err(PackError::Damaged {
                path: pack.to_path_buf(),
                message: format!("{path}: {got} bytes with sha256 {sha256}, store.json records {} bytes with sha256 {}", want.bytes, want.sha256),
            });
        }
        bytes += got;
    }
    // The tar ends before the zstd frame does: read that to its end, where zstd checks its checksum.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|e| broken(pack, "its end", e))?;
    if let Some(name) = missing.keys().next() {
        return Err(refused(format!("it lacks {prefix}/{name}")));
    }
    sync_dir(&tmp).map_err(PackError::io(&tmp))?;
    check::check_named(&tmp, &meta.dataset, &header.version_dir)?;

    let _lock = PublishLock::acquire(&dataset_dir)?;
    if let Some(done) = already_published(pack, &dataset_dir, &meta)? {
        return Ok(UnpackReport { packed_as: header.version_dir, seconds: start.elapsed().as_secs_f64(), ..done });
    }
    let versions = list_versions(&dataset_dir)?;
    let first = if versions.iter().any(|v| v.seq == seq) { versions.last().map_or(1, |v| v.seq + 1) } else { seq };
    let (seq, path) = rename_into_place(&tmp, &dataset_dir, &id, &versions, first)?;
    staging.published = true;
    Ok(UnpackReport {
        pack: pack.to_path_buf(),
        dataset: meta.dataset,
        version_id: id,
        packed_as: header.version_dir,
        version_dir: path,
        seq,
        already_published: false,
        files: meta.files.len() + 1,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn parse_header(pack: &Path, bytes: &[u8]) -> Result<PackHeader, PackError> {
    let refused = |message: String| PackError::Refused { path: pack.to_path_buf(), message };
    #[derive(Deserialize)]
    struct Probe {
        format: String,
        version: u32,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| refused(format!("{PACK_FILE}: {e}")))?;
    if probe.format != PACK_FORMAT {
        return Err(refused(format!("{PACK_FILE} names format '{}', not '{PACK_FORMAT}'", probe.format)));
    }
    if probe.version != PACK_VERSION {
        return Err(PackError::Version { path: pack.to_path_buf(), found: probe.version, expected: PACK_VERSION });
    }
    let header: PackHeader = serde_json::from_slice(bytes).map_err(|e| refused(format!("{PACK_FILE}: {e}")))?;
    if !plain_name(&header.dataset) || parse_version_name(&header.version_dir).is_none() {
        return Err(refused(format!(
            "{PACK_FILE} names dataset '{}' and version folder '{}', not a dataset name and a <seq>-<id>",
            header.dataset, header.version_dir
        )));
    }
    Ok(header)
}

/// The report of an unpack that finds this version id published already: the same store.json is
/// the same bytes (it records every file's digest); another one is an error.
fn already_published(pack: &Path, dataset_dir: &Path, meta: &StoreMeta) -> Result<Option<UnpackReport>, PackError> {
    let Some(v) = list_versions(dataset_dir)?.into_iter().find(|v| v.id == meta.version_id) else { return Ok(None) };
    if StoreMeta::load(&v.path)? != *meta {
        return Err(PackError::OtherBytes { path: v.path, id: v.id, pack: pack.to_path_buf() });
    }
    Ok(Some(UnpackReport {
        pack: pack.to_path_buf(),
        dataset: meta.dataset.clone(),
        version_id: v.id.clone(),
        packed_as: String::new(),
        version_dir: v.path,
        seq: v.seq,
        already_published: true,
        files: 0,
        bytes: 0,
        seconds: 0.0,
    }))
}

/// Writes a new file from the pack's stream and syncs it; returns its size and sha256.
fn write_checked(to: &Path, from: &mut impl Read, pack: &Path) -> Result<(u64, String), PackError> {
    let mut out = File::options().write(true).create_new(true).open(to).map_err(PackError::io(to))?;
    let (mut hasher, mut buf, mut n) = (Sha256::new(), vec![0u8; 1 << 20], 0u64);
    let what = to.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    loop {
        let k = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(broken(pack, &what, e)),
        };
        hasher.update(&buf[..k]);
        out.write_all(&buf[..k]).map_err(PackError::io(to))?;
        n += k as u64;
    }
    out.sync_all().map_err(PackError::io(to))?;
    Ok((n, hex(&hasher.finalize())))
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Directory => "directory",
        _ => "special entry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, dataset: &str, dir: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"format": PACK_FORMAT, "version": version, "dataset": dataset, "version_dir": dir})).unwrap()
    }

    #[test]
    fn pack_json_is_checked_before_anything_is_written() {
        let p = Path::new("x.uspack");
        let ok = parse_header(p, &header(1, "covid-blues", "0002-e8517be8882620cb")).unwrap();
        assert_eq!((ok.dataset.as_str(), ok.version_dir.as_str()), ("covid-blues", "0002-e8517be8882620cb"));
        let err = |bytes: &[u8]| parse_header(p, bytes).unwrap_err().to_string();
        assert!(err(&header(2, "d", "0001-ab")).contains("has format usctl-pack version 2; this usctl reads version 1"));
        for (dataset, dir) in [("..", "0001-ab"), ("a/b", "0001-ab"), (".hidden", "0001-ab"), ("d", "../0001-ab"), ("d", "1-ab"), ("d", "0001-ab/x")] {
            assert!(err(&header(1, dataset, dir)).contains("not a dataset name and a <seq>-<id>"), "{dataset} {dir}");
        }
        assert!(err(br#"{"format": "zip", "version": 1}"#).contains("PACK.json names format 'zip', not 'usctl-pack'"));
        let extra = br#"{"format": "usctl-pack", "version": 1, "dataset": "d", "version_dir": "0001-ab", "x": 1}"#;
        assert!(err(extra).contains("unknown field `x`"));
    }

    #[test]
    fn a_read_that_ends_early_is_told_from_other_damage() {
        let p = Path::new("x.uspack");
        let eof = broken(p, "frames.u8", std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "incomplete frame"));
        assert_eq!(
            eof.to_string(),
            "pack x.uspack ends early (incomplete frame while reading frames.u8): it is truncated, or damaged; nothing was unpacked: copy the whole file again"
        );
        let other = broken(p, "its end", std::io::Error::other("Restored data doesn't match checksum"));
        assert!(other.to_string().starts_with("pack x.uspack is damaged: Restored data doesn't match checksum while reading its end;"));
    }

    #[test]
    fn plain_names_only() {
        assert!(plain_name("frames.u8") && plain_name("covid-blues") && plain_name("a_b.1"));
        for bad in ["", ".", "..", ".tmp-x", "a/b", "/etc", "a\\b", "é"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
