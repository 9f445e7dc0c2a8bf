//! `usctl pack` and `usctl unpack` on a small store made here: the round trip keeps every byte,
//! a second unpack is a no-op, a taken sequence number moves to the next free one; a damaged store
//! is not packed; flipped bytes, cuts and hostile members (`../evil`, an absolute path, a symbolic
//! link) are refused, each leaving the store root as it was (no temporary folder, no version).
mod common;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A store of three 256-px one-frame images in dataset `d`; returns (store root, version folder).
fn small_store(root: &Path) -> (PathBuf, PathBuf) {
    let (raw, store, m) = (root.join("raw"), root.join("store"), root.join("m.toml"));
    for (name, colour) in [("a1.png", "red"), ("b2.png", "blue"), ("a3.png", "green")] {
        png(&raw.join(name), colour);
    }
    manifest(&m, "d", &["*.png"], &[]);
    let out = ingest(&m, &raw, &store, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let version = newest(&store.join("d"));
    (store, version)
}

fn pack(version: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(usctl().arg("pack").arg("--store").arg(version).arg("--out").arg(out).args(extra))
}

fn unpack(pack: &Path, store: &Path) -> std::process::Output {
    run(usctl().arg("unpack").arg(pack).arg("--store").arg(store))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Unpacking `bad` into a fresh, empty store root fails with exit 2 and `message`, and leaves the
/// root empty: no dataset folder, no temporary folder, no version.
fn refused(bad: &Path, root: &Path, message: &str) {
    std::fs::create_dir_all(root).unwrap();
    let out = unpack(bad, root);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(message), "expected {message:?} in: {}", text(&out));
    assert!(text(&out).contains("nothing was unpacked"), "{}", text(&out));
    assert_eq!(names(root), Vec::<String>::new(), "{} must stay empty", root.display());
}

/// The members of a pack, decompressed: (path, bytes).
fn members(pack: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(pack).unwrap()).unwrap());
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        out.push((path, bytes));
    }
    out
}

/// A pack of raw members: (name written byte for byte into the header, kind, link target, bytes).
fn raw_pack(path: &Path, members: &[(&str, tar::EntryType, &str, &[u8])]) {
    let mut tar = tar::Builder::new(zstd::Encoder::new(std::fs::File::create(path).unwrap(), 3).unwrap());
    for (name, kind, link, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append(&h, *bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn round_trip_keeps_every_byte_and_a_second_unpack_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, version) = small_store(tmp.path());
    let file = tmp.path().join("d.uspack");
    let out = pack(&version, &file, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["files"].as_u64(), r["level"].as_i64()), (Some(7), Some(3)), "{r}");
    assert_eq!(r["pack_bytes"].as_u64(), Some(std::fs::metadata(&file).unwrap().len()));
    // PACK.json first, then store.json, then the files store.json lists.
    let folder = version.file_name().unwrap().to_string_lossy().to_string();
    let paths: Vec<String> = members(&file).into_iter().map(|m| m.0).collect();
    let expected: Vec<String> = std::iter::once("PACK.json".to_string())
        .chain(
            ["store.json", "frames.parquet", "frames.u8", "manifest.toml", "masks.parquet", "masks.u8", "videos.parquet"]
                .iter()
                .map(|n| format!("d/{folder}/{n}")),
        )
        .collect();
    assert_eq!(paths, expected);
    assert_eq!(names(tmp.path()), vec!["d.uspack", "m.toml", "raw", "store"], "no temporary file beside --out");

    // An existing --out is kept unless --force; the same version packs to the same bytes.
    let before = std::fs::read(&file).unwrap();
    let out = pack(&version, &file, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("d.uspack already exists; pass --force to overwrite it"), "{}", text(&out));
    let out = pack(&version, &file, &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(&file).unwrap(), before, "a pack's bytes depend on the version alone");
    // Never into the published version itself.
    let inside = version.join("v.uspack");
    let out = pack(&version, &inside, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is inside the version folder") && !inside.exists(), "{}", text(&out));

    let other = tmp.path().join("other");
    let out = unpack(&file, &other);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copy = other.join("d").join(&folder);
    assert!(text(&out).contains(&format!("→ {}: 7 files", copy.display())), "{}", text(&out));
    assert_eq!(snapshot(&copy), snapshot(&version), "every file byte for byte");
    assert_eq!(names(&other.join("d")), vec![folder.clone()], "no temporary folder or lock left");
    let out = run(usctl().arg("verify").arg("--store").arg(&copy));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(usctl().arg("diff").arg(&version).arg(&copy));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).ends_with("identical\n"), "{}", text(&out));

    let before = snapshot(&other);
    let out = unpack(&file, &other);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("already holds version") && text(&out).contains("nothing written"), "{}", text(&out));
    assert_eq!(snapshot(&other), before, "the second unpack changes nothing");
    assert_eq!(names(&other.join("d")), vec![folder]);
}

#[test]
fn a_taken_sequence_number_moves_to_the_next_free_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, first) = small_store(tmp.path());
    // A second version of d (another size: another id), 0002-…
    let out = ingest(&tmp.path().join("m.toml"), &tmp.path().join("raw"), &store, &["--size", "32"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = newest(&store.join("d"));
    let file = tmp.path().join("first.uspack");
    assert_eq!(pack(&first, &file, &[]).status.code(), Some(0));
    // Elsewhere the second version holds sequence number 1 (a valid version folder, copied).
    let other = tmp.path().join("other");
    let (_, id2) = usctl::store::parse_version_name(&second.file_name().unwrap().to_string_lossy()).unwrap();
    std::fs::create_dir_all(other.join("d").join(format!("0001-{id2}"))).unwrap();
    for (name, bytes) in snapshot(&second) {
        if !bytes.is_empty() {
            std::fs::write(other.join("d").join(format!("0001-{id2}")).join(name), bytes).unwrap();
        }
    }
    let out = unpack(&file, &other);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, id1) = usctl::store::parse_version_name(&first.file_name().unwrap().to_string_lossy()).unwrap();
    assert_eq!(names(&other.join("d")), vec![format!("0001-{id2}"), format!("0002-{id1}")]);
    assert!(text(&out).contains("(packed as 0001-"), "{}", text(&out));
    assert_eq!(snapshot(&other.join("d").join(format!("0002-{id1}"))), snapshot(&first));
}

#[test]
fn a_store_that_fails_verify_is_not_packed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, version) = small_store(tmp.path());
    let copy = tmp.path().join("copy").join("d").join(version.file_name().unwrap());
    std::fs::create_dir_all(&copy).unwrap();
    for (name, bytes) in snapshot(&version) {
        if !bytes.is_empty() {
            std::fs::write(copy.join(name), bytes).unwrap();
        }
    }
    let mut payload = std::fs::read(copy.join("frames.u8")).unwrap();
    payload[70_000] ^= 1;
    std::fs::write(copy.join("frames.u8"), payload).unwrap();
    let out = pack(&copy, &tmp.path().join("bad.uspack"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("does not pass `usctl verify` (frames.u8 (sha256 differs"), "{}", text(&out));
    assert!(text(&out).contains("a damaged or unverifiable version is never packed"), "{}", text(&out));
    assert_eq!(names(tmp.path()), vec!["copy", "m.toml", "raw", "store"], "no pack, no temporary file");
}

#[test]
fn damaged_truncated_and_hostile_packs_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, version) = small_store(tmp.path());
    let file = tmp.path().join("d.uspack");
    assert_eq!(pack(&version, &file, &[]).status.code(), Some(0));
    let good = std::fs::read(&file).unwrap();
    let bad = tmp.path().join("bad.uspack");
    let mut case = 0;
    let mut root = || {
        case += 1;
        tmp.path().join(format!("root{case}"))
    };

    // One flipped byte anywhere in the compressed stream past zstd's frame header (whose window
    // size a flip may only enlarge): a block, a tar header, a file's bytes, the checksum.
    for at in [good.len() / 4, good.len() / 2, 3 * good.len() / 4, good.len() - 2] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&bad, &bytes).unwrap();
        refused(&bad, &root(), "damaged");
    }
    // Not zstd at all.
    std::fs::write(&bad, b"not a pack\n").unwrap();
    refused(&bad, &root(), "is damaged: Unknown frame descriptor while reading PACK.json");

    // Cut short: inside zstd's header, early, half way, one byte before the end.
    for len in [6, 200, good.len() / 2, good.len() - 1] {
        std::fs::write(&bad, &good[..len]).unwrap();
        refused(&bad, &root(), "ends early (incomplete frame while reading");
    }

    // Hostile members around an otherwise valid pack.
    let m = members(&file);
    let (pack_json, store_json) = (&m[0], &m[1]);
    let folder = store_json.0.trim_end_matches("/store.json").to_string();
    let reg = tar::EntryType::Regular;
    let rest: Vec<(&str, tar::EntryType, &str, &[u8])> = m[2..].iter().map(|(p, b)| (p.as_str(), reg, "", b.as_slice())).collect();
    let with = |extra: (&str, tar::EntryType, &str, &[u8]), skip: &str| {
        let mut v: Vec<(&str, tar::EntryType, &str, &[u8])> =
            vec![(pack_json.0.as_str(), reg, "", &pack_json.1), (store_json.0.as_str(), reg, "", &store_json.1)];
        v.push(extra);
        v.extend(rest.iter().filter(|r| !r.0.ends_with(skip)).cloned());
        raw_pack(&bad, &v);
    };
    let evil = tmp.path().join("evil");
    with(("../evil", reg, "", b"x"), "-");
    refused(&bad, &root(), "member '../evil' is not a file of store.json in d/");
    with((&format!("{folder}/../../../evil"), reg, "", b"x"), "-");
    refused(&bad, &root(), "/../../../evil' is not a file of store.json in d/");
    let absolute = evil.display().to_string();
    with((&absolute, reg, "", b"x"), "-");
    refused(&bad, &root(), &format!("member '{absolute}' is not a file of store.json in d/"));
    assert!(!evil.exists(), "nothing is written outside the store root");
    let link = format!("{folder}/frames.u8");
    with((&link, tar::EntryType::Symlink, "/etc/passwd", b""), "frames.u8");
    refused(&bad, &root(), &format!("member '{link}' is a symbolic link, not a plain file"));
    with((&format!("{folder}/extra"), tar::EntryType::Directory, "", b""), "-");
    refused(&bad, &root(), "extra' is a directory, not a plain file");
    // A member missing, and one twice.
    with((&link, reg, "", &m.iter().find(|x| x.0 == link).unwrap().1), "-");
    refused(&bad, &root(), "is a second copy of a file");
    with((&store_json.0, reg, "", &store_json.1), "videos.parquet");
    refused(&bad, &root(), "is a second copy of a file");
    raw_pack(&bad, &[(pack_json.0.as_str(), reg, "", &pack_json.1), (store_json.0.as_str(), reg, "", &store_json.1)]);
    refused(&bad, &root(), &format!("it lacks {folder}/frames.parquet"));
    // Another pack format version.
    let v2 = String::from_utf8(pack_json.1.clone()).unwrap().replace("\"version\": 1", "\"version\": 2");
    raw_pack(&bad, &[("PACK.json", reg, "", v2.as_bytes())]);
    let r = root();
    std::fs::create_dir_all(&r).unwrap();
    let out = unpack(&bad, &r);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("has format usctl-pack version 2; this usctl reads version 1"), "{}", text(&out));
}

/// A pack carried in pieces (as `split -b` cuts it) unpacks from standard input when the pieces
/// come in order (`cat x.* | usctl unpack -`); out of order, or with the last one missing, it is
/// refused and leaves nothing.
#[test]
fn a_split_pack_unpacks_from_standard_input_only_whole_and_in_order() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let (_, version) = small_store(tmp.path());
    let file = tmp.path().join("d.uspack");
    assert_eq!(pack(&version, &file, &[]).status.code(), Some(0));
    let bytes = std::fs::read(&file).unwrap();
    let third = bytes.len() / 3 + 1;
    let pieces: Vec<&[u8]> = bytes.chunks(third).collect();
    assert_eq!(pieces.len(), 3);
    let from_stdin = |input: Vec<u8>, root: &Path| {
        let mut child = usctl()
            .args(["unpack", "-", "--store"])
            .arg(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    };
    let root = tmp.path().join("joined");
    let out = from_stdin(pieces.concat(), &root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(snapshot(&usctl::store::locate(&root.join("d"), None, None).unwrap()), snapshot(&version));
    for (what, input) in [("swapped", [pieces[1], pieces[0], pieces[2]].concat()), ("last missing", [pieces[0], pieces[1]].concat())] {
        let root = tmp.path().join(what.replace(' ', "-"));
        std::fs::create_dir_all(&root).unwrap();
        let out = from_stdin(input, &root);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(text(&out).contains("nothing was unpacked"), "{what}: {}", text(&out));
        assert_eq!(names(&root), Vec::<String>::new(), "{what}: the store root stays empty");
    }
}
