//! `usctl fetch` against a small HTTP/1.1 server started here on 127.0.0.1 (no other network):
//! good, corrupted, cut, missing and redirected files, files already there (good and bad), a
//! server that ignores or refuses ranges, a size the server contradicts, a link out of --into,
//! and the usage errors.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use usctl::hash::sha256_hex;
use usctl::manifest::pin::{section, Pin, Pinned};

/// What the server does with a path.
#[derive(Clone)]
enum Route {
    /// The file's bytes; a `Range: bytes=N-` is answered as `Ranges` says.
    File(Vec<u8>),
    /// While `Mode::cut` is set: Content-Length of the whole file, half of it sent, then the
    /// connection closed. Otherwise a `File`.
    CutThenFile(Vec<u8>),
    Status(u16),
    /// 302 to another path of this server.
    Redirect(&'static str),
}

#[derive(Clone, Copy, PartialEq)]
enum Ranges {
    Honour,
    /// 200 and the whole file.
    Ignore,
    /// 416 to any range.
    Refuse,
}

struct Mode {
    cut: bool,
    ranges: Ranges,
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    range: Option<String>,
    agent: Option<String>,
}

struct Server {
    base: String,
    routes: BTreeMap<&'static str, Route>,
    mode: Arc<Mutex<Mode>>,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(routes: BTreeMap<&'static str, Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(Mode { cut: true, ranges: Ranges::Honour }));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (r, m, l) = (routes.clone(), mode.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, m, l) = (r.clone(), m.clone(), l.clone());
                std::thread::spawn(move || serve(stream, &r, &m, &l));
            }
        });
        Server { base, routes, mode, log }
    }

    fn url(&self, path: &str) -> String {
        assert!(self.routes.contains_key(path), "{path}");
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> Vec<Request> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn set(&self, cut: bool, ranges: Ranges) {
        *self.mode.lock().unwrap() = Mode { cut, ranges };
    }
}

/// Answers one request and closes the connection.
fn serve(stream: TcpStream, routes: &BTreeMap<&'static str, Route>, mode: &Mutex<Mode>, log: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let Some(path) = head.first().and_then(|l| l.split(' ').nth(1)).map(str::to_string) else { return };
    let header = |name: &str| head.iter().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()));
    let request = Request { path: path.clone(), range: header("range"), agent: header("user-agent") };
    log.lock().unwrap().push(request.clone());
    let (cut, ranges) = {
        let m = mode.lock().unwrap();
        (m.cut, m.ranges)
    };
    let mut out = stream;
    let send = |out: &mut TcpStream, status: &str, headers: &[String], body: &[u8]| {
        let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for h in headers {
            text.push_str(&format!("{h}\r\n"));
        }
        text.push_str("\r\n");
        let _ = out.write_all(text.as_bytes());
        let _ = out.write_all(body);
    };
    match routes.get(path.as_str()) {
        None | Some(Route::Status(404)) => send(&mut out, "404 Not Found", &["Content-Length: 0".into()], b""),
        Some(Route::Status(code)) => send(&mut out, &format!("{code} Other"), &["Content-Length: 0".into()], b""),
        Some(Route::Redirect(to)) => send(&mut out, "302 Found", &[format!("Location: {to}"), "Content-Length: 0".into()], b""),
        Some(Route::CutThenFile(bytes)) if cut => send(&mut out, "200 OK", &[format!("Content-Length: {}", bytes.len())], &bytes[..bytes.len() / 2]),
        Some(Route::File(bytes) | Route::CutThenFile(bytes)) => {
            let from: Option<usize> = request.range.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
            match (from, ranges) {
                (Some(_), Ranges::Refuse) => send(&mut out, "416 Range Not Satisfiable", &["Content-Length: 0".into()], b""),
                (Some(n), Ranges::Honour) if n < bytes.len() => send(
                    &mut out,
                    "206 Partial Content",
                    &[format!("Content-Range: bytes {n}-{}/{}", bytes.len() - 1, bytes.len()), format!("Content-Length: {}", bytes.len() - n)],
                    &bytes[n..],
                ),
                _ => send(&mut out, "200 OK", &[format!("Content-Length: {}", bytes.len())], bytes),
            }
        }
    }
    let _ = out.flush();
}

/// `n` bytes that differ from those of another `seed`.
fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i / 256) as u8)).collect()
}

fn pin(path: &str, bytes: &[u8], url: Option<String>) -> Pin {
    Pin { path: path.into(), size: bytes.len() as u64, sha256: sha256_hex(bytes), url, licence: None }
}

/// A schema-3 manifest with one source (homepage and citation given) and these pins.
fn manifest(path: &Path, pins: Vec<Pin>) {
    let head = "schema = 3\nname = \"web\"\n[[source]]\nsubdataset = \"site\"\ninclude = [\"**/*.bin\"]\nlicence = \"CC BY 4.0\"\n\
                homepage = \"https://example.org/corpus\"\ncitation = \"Doe et al., Lungs (2020)\"\n\n";
    std::fs::write(path, format!("{head}{}", section(&Pinned { generated_by: "test".into(), files: pins }))).unwrap();
}

fn fetch(m: &Path, into: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_usctl"));
    cmd.arg("fetch").arg("--manifest").arg(m).arg("--into").arg(into).args(extra);
    // Only 127.0.0.1 is asked, never through a proxy.
    for var in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The report line of `path`.
fn line<'a>(out: &'a str, path: &str) -> &'a str {
    out.lines().find(|l| l.contains(&format!(" {path}: "))).unwrap_or_else(|| panic!("no line for {path} in:\n{out}"))
}

fn part(into: &Path, path: &str) -> PathBuf {
    into.join(".usctl-fetch").join(format!("{path}.part"))
}

#[test]
fn every_kind_of_file_is_fetched_or_reported() {
    let (good, other, cut, here, bad_here) = (content(10_000, 1), content(4_000, 2), content(9_000, 3), content(300, 4), content(500, 5));
    let mut corrupted = other.clone();
    corrupted[1234] ^= 0xff;
    let server = Server::start(BTreeMap::from([
        ("/good.bin", Route::File(good.clone())),
        ("/corrupt.bin", Route::File(corrupted.clone())),
        ("/cut.bin", Route::CutThenFile(cut.clone())),
        ("/gone.bin", Route::Status(404)),
        ("/moved.bin", Route::Redirect("/good.bin")),
        ("/here.bin", Route::File(here.clone())),
        ("/bad-here.bin", Route::Status(404)),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let (m, into) = (tmp.path().join("m.toml"), tmp.path().join("into"));
    manifest(
        &m,
        vec![
            pin("a/good.bin", &good, Some(server.url("/good.bin"))),
            pin("corrupt.bin", &other, Some(server.url("/corrupt.bin"))),
            pin("cut.bin", &cut, Some(server.url("/cut.bin"))),
            pin("gone.bin", &other, Some(server.url("/gone.bin"))),
            pin("b/renamed.bin", &good, Some(server.url("/moved.bin"))),
            pin("here.bin", &here, Some(server.url("/here.bin"))),
            pin("bad-here.bin", &bad_here, Some(server.url("/bad-here.bin"))),
            pin("nourl.bin", &here, None),
        ],
    );
    std::fs::create_dir_all(&into).unwrap();
    std::fs::write(into.join("here.bin"), &here).unwrap();
    std::fs::write(into.join("bad-here.bin"), b"not the pinned bytes").unwrap();

    let out = fetch(&m, &into, &["--jobs", "3"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert_eq!(line(&t, "a/good.bin"), "ok      a/good.bin: downloaded 10000 bytes");
    assert_eq!(line(&t, "b/renamed.bin"), "ok      b/renamed.bin: downloaded 10000 bytes");
    assert_eq!(line(&t, "here.bin"), "ok      here.bin: already present");
    let (found, pinned) = (sha256_hex(&corrupted), sha256_hex(&other));
    assert_eq!(line(&t, "corrupt.bin"), format!("FAILED  corrupt.bin: corrupt: sha256 {found}, pinned {pinned}; the download was deleted"));
    assert!(line(&t, "cut.bin").starts_with("FAILED  cut.bin: cut after 4500 of 9000 bytes ("), "{t}");
    assert!(line(&t, "cut.bin").ends_with("); run again to resume"), "{t}");
    assert_eq!(line(&t, "gone.bin"), "FAILED  gone.bin: HTTP 404 Not Found");
    assert_eq!(line(&t, "bad-here.bin"), "FAILED  bad-here.bin: HTTP 404 Not Found; the file there has other bytes (20 bytes) and was left as it is");
    assert_eq!(line(&t, "nourl.bin"), "NO URL  nourl.bin: no URL in its pin");
    assert!(t.contains("8 pinned files: 1 already present, 2 downloaded (20000 bytes), 1 without URL, 4 failed"), "{t}");
    assert!(
        t.contains("5 file(s) are missing or have other bytes")
            && t.contains("source 'site' (5 file(s)): homepage https://example.org/corpus; citation: Doe et al., Lungs (2020)"),
        "{t}"
    );

    // On disk: verified files in place, the cut one's half waiting, nothing from the failures.
    assert_eq!(std::fs::read(into.join("a/good.bin")).unwrap(), good);
    assert_eq!(std::fs::read(into.join("b/renamed.bin")).unwrap(), good);
    assert_eq!(std::fs::read(part(&into, "cut.bin")).unwrap(), &cut[..4500]);
    assert_eq!(std::fs::read(into.join("bad-here.bin")).unwrap(), b"not the pinned bytes");
    for absent in ["corrupt.bin", "cut.bin", "gone.bin", "nourl.bin"] {
        assert!(!into.join(absent).exists(), "{absent}");
    }
    assert!(!part(&into, "corrupt.bin").exists(), "a corrupt download is deleted");
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "nothing written beside --into: {names:?}");

    // The requests: none for the file already there; a 302 followed; our User-Agent.
    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert!(!paths.contains(&"/here.bin"), "{paths:?}");
    assert_eq!(paths.iter().filter(|p| **p == "/good.bin").count(), 2, "{paths:?}");
    assert!(paths.contains(&"/moved.bin"), "{paths:?}");
    let agent = format!("usctl/{}", env!("CARGO_PKG_VERSION"));
    assert!(requests.iter().all(|r| r.agent.as_deref() == Some(agent.as_str()) && r.range.is_none()), "{requests:?}");

    // Second run: the server now honours ranges and sends cut.bin whole.
    server.set(false, Ranges::Honour);
    let out = fetch(&m, &into, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["format"].as_str(), report["version"].as_u64()), (Some("usctl fetch report"), Some(1)));
    let entry = |path: &str| report["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap().clone();
    let c = entry("cut.bin");
    assert_eq!(
        (c["status"].as_str(), c["ok"].as_bool(), c["resumed_from"].as_u64(), c["bytes"].as_u64()),
        (Some("downloaded"), Some(true), Some(4500), Some(4500)),
        "{c}"
    );
    assert_eq!(c["message"], "resumed from 4500, downloaded 4500 bytes");
    assert_eq!(std::fs::read(into.join("cut.bin")).unwrap(), cut);
    assert!(!part(&into, "cut.bin").exists());
    let requests = server.requests();
    let cut_requests: Vec<_> = requests.iter().filter(|r| r.path == "/cut.bin").collect();
    assert_eq!(cut_requests.len(), 1);
    assert_eq!(cut_requests[0].range.as_deref(), Some("bytes=4500-"));
    assert!(!requests.iter().any(|r| ["/good.bin", "/moved.bin", "/here.bin"].contains(&r.path.as_str())), "{requests:?}");
    for path in ["a/good.bin", "b/renamed.bin", "here.bin"] {
        assert_eq!(entry(path)["status"], "present", "{path}");
    }
    let g = entry("gone.bin");
    assert_eq!(g["failure"], serde_json::json!({"kind": "http", "status": 404, "reason": "Not Found"}));
    assert_eq!((g["source"].as_str(), g["licence"].as_str()), (Some("site"), Some("CC BY 4.0")));
    assert_eq!(entry("bad-here.bin")["other_bytes"], serde_json::json!({"size": 20, "sha256": null}));
    assert_eq!(entry("corrupt.bin")["failure"]["kind"], "corrupt");
    assert_eq!(report["counts"], serde_json::json!({"pinned": 8, "present": 3, "downloaded": 1, "no_url": 1, "failed": 3, "bytes": 4500}));
    assert_eq!(report["get_from"][0]["files"], serde_json::json!(["corrupt.bin", "gone.bin", "bad-here.bin", "nourl.bin"]));
    assert!(into.join(".usctl-fetch").exists(), "kept while files are missing");
}

#[test]
fn a_run_with_everything_there_exits_0_and_replaces_bad_files_only_with_verified_ones() {
    let (a, b) = (content(7_000, 6), content(3_001, 7));
    let server = Server::start(BTreeMap::from([("/a.bin", Route::File(a.clone())), ("/b.bin", Route::File(b.clone()))]));
    let tmp = tempfile::tempdir().unwrap();
    let (m, into) = (tmp.path().join("m.toml"), tmp.path().join("new/into"));
    manifest(&m, vec![pin("a.bin", &a, Some(server.url("/a.bin"))), pin("d/b.bin", &b, Some(server.url("/b.bin")))]);
    // b is there with the right size and other bytes; a has a partial download left, which the
    // server ignores (200): it starts again.
    let mut wrong = b.clone();
    wrong[0] ^= 1;
    std::fs::create_dir_all(into.join("d")).unwrap();
    std::fs::write(into.join("d/b.bin"), &wrong).unwrap();
    std::fs::create_dir_all(into.join(".usctl-fetch")).unwrap();
    std::fs::write(part(&into, "a.bin"), b"garbage").unwrap();
    server.set(false, Ranges::Ignore);
    let out = fetch(&m, &into, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(line(&t, "a.bin"), "ok      a.bin: downloaded 7000 bytes");
    assert_eq!(
        line(&t, "d/b.bin"),
        format!("ok      d/b.bin: downloaded 3001 bytes; replaced a file with other bytes (3001 bytes, sha256 {})", sha256_hex(&wrong))
    );
    assert_eq!(std::fs::read(into.join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(into.join("d/b.bin")).unwrap(), b);
    assert!(!into.join(".usctl-fetch").exists(), "the work folder goes when nothing is left to resume");
    let requests = server.requests();
    assert_eq!(requests.iter().find(|r| r.path == "/a.bin").unwrap().range.as_deref(), Some("bytes=7-"));

    // A server that refuses ranges (416): the partial file goes and the download starts over.
    std::fs::remove_file(into.join("a.bin")).unwrap();
    std::fs::create_dir_all(into.join(".usctl-fetch")).unwrap();
    std::fs::write(part(&into, "a.bin"), &a[..100]).unwrap();
    server.set(false, Ranges::Refuse);
    let out = fetch(&m, &into, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(line(&text(&out), "a.bin"), "ok      a.bin: downloaded 7000 bytes");
    let ranges: Vec<Option<String>> = server.requests().into_iter().filter(|r| r.path == "/a.bin").map(|r| r.range).collect();
    assert_eq!(ranges, vec![Some("bytes=100-".to_string()), None]);
    assert_eq!(std::fs::read(into.join("a.bin")).unwrap(), a);

    // Everything there: no request at all.
    let out = fetch(&m, &into, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("2 pinned files: 2 already present, 0 downloaded (0 bytes), 0 without URL, 0 failed"), "{}", text(&out));
    assert!(server.requests().is_empty());
}

#[test]
fn sizes_the_server_contradicts_and_links_out_of_into_are_refused() {
    let (a, b) = (content(1_000, 8), content(600, 9));
    let server = Server::start(BTreeMap::from([("/a.bin", Route::File(a.clone())), ("/b.bin", Route::File(b.clone()))]));
    let tmp = tempfile::tempdir().unwrap();
    let (m, into, outside) = (tmp.path().join("m.toml"), tmp.path().join("into"), tmp.path().join("outside"));
    // The pin says a.bin has 1 byte more than the server sends.
    let mut longer = pin("a.bin", &a, Some(server.url("/a.bin")));
    longer.size += 1;
    manifest(&m, vec![longer, pin("link/b.bin", &b, Some(server.url("/b.bin")))]);
    std::fs::create_dir_all(&into).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, into.join("link")).unwrap();
    let out = fetch(&m, &into, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert_eq!(line(&t, "a.bin"), "FAILED  a.bin: size mismatch: the server has 1000 bytes, pinned 1001; nothing downloaded");
    assert!(line(&t, "link/b.bin").contains("outside --into, so nothing is written there"), "{t}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!part(&into, "a.bin").exists());
    // Refused before downloading.
    assert!(!part(&into, "link/b.bin").exists());
    assert!(server.requests().iter().all(|r| r.path != "/b.bin"));
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m.toml");
    std::fs::write(&m, "schema = 3\nname = \"web\"\n[[source]]\nsubdataset = \"s\"\ninclude = [\"*.bin\"]\n").unwrap();
    let out = fetch(&m, &tmp.path().join("into"), &[]);
    assert_eq!(out.status.code(), Some(2));
    let pin_first =
        format!("has no [pinned] table, so there is nothing to fetch: run `usctl manifest pin --manifest {} --raw <corpus folder>` first", m.display());
    assert!(text(&out).contains(&pin_first), "{}", text(&out));

    manifest(&m, vec![pin("x.bin", b"x", None)]);
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = fetch(&m, &file, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains(&format!("cannot write into {}", file.display())), "{}", text(&out));

    // One fetch at a time into a folder.
    let into = tmp.path().join("into");
    std::fs::create_dir_all(into.join(".usctl-fetch")).unwrap();
    let held = std::fs::File::create(into.join(".usctl-fetch/lock")).unwrap();
    held.lock().unwrap();
    let out = fetch(&m, &into, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains(&format!("another usctl fetch is writing into {}", into.display())), "{}", text(&out));
    drop(held);
    let out = fetch(&m, &into, &[]);
    assert_eq!(out.status.code(), Some(1), "the lock is free again; x.bin has no URL: {}", text(&out));

    let out = fetch(&m, &tmp.path().join("into"), &["--jobs", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    std::fs::write(&m, "schema = 3\nname = \"web\"\n").unwrap();
    let out = fetch(&m, &tmp.path().join("into"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("is not valid"), "{}", text(&out));
}
