//! The CLI edge: parse, run, print, and map outcomes to exit codes
//! (0 all good, 1 something was skipped or differs, 2 error).

mod cli;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use cli::{AuditArgs, Cli, Command, DiffArgs, ExportArgs, FetchArgs, IngestArgs, ManifestCommand, PackArgs, PinArgs, ReportArgs, StoreArgs, UnpackArgs};
use std::process::ExitCode;
use usctl::ingest::{self, IngestOptions, IngestReport};
use usctl::store::reader::Store;

fn main() -> ExitCode {
    usctl::store::reader::exit_clearly_on_sigbus();
    // Answered before clap so that only `--version` pays for probing CUDA.
    if std::env::args().nth(1).is_some_and(|a| a == "--version" || a == "-V") {
        println!("usctl {}", long_version());
        return ExitCode::SUCCESS;
    }
    // The libtorch commands run in the sibling binary, so that ingest never loads libtorch.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "train" || a == "eval") {
        return forward_to_torch(&args[1..]);
    }
    let matches = Cli::command().version(env!("CARGO_PKG_VERSION")).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", usctl::error::one_line(&e));
            ExitCode::from(2)
        }
    }
}

fn long_version() -> String {
    format!("{}\nFFmpeg at run time: {}\n{}", usctl::build_info(), ingest::decode::runtime_versions(), torch_version())
}

const NO_TORCH: &str = "usctl-torch not found beside usctl (build with feature `torch`: make setup)";

/// `usctl-torch`, the binary beside this one that links libtorch.
fn torch_binary() -> Option<std::path::PathBuf> {
    let sibling = std::env::current_exe().ok().and_then(|p| Some(p.parent()?.join("usctl-torch")));
    sibling.filter(|p| p.is_file())
}

/// Replaces this process with `usctl-torch ARGS…` (same arguments, same exit code).
fn forward_to_torch(args: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let Some(path) = torch_binary() else {
        eprintln!("error: {NO_TORCH}");
        return ExitCode::from(2);
    };
    let err = std::process::Command::new(&path).args(args).exec();
    eprintln!("error: cannot run {}: {err}", path.display());
    ExitCode::from(2)
}

/// libtorch is reported by `usctl-torch`.
fn torch_version() -> String {
    let Some(path) = torch_binary() else {
        return format!("libtorch: {NO_TORCH}");
    };
    match std::process::Command::new(&path).arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim_end().to_string(),
        Ok(o) => format!("libtorch: {} failed: {}", path.display(), String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("libtorch: cannot run {}: {e}", path.display()),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ingest(a) => run_ingest(a),
        Command::Manifest { command: ManifestCommand::Pin(a) } => run_pin(a),
        Command::DecodeOnly(a) => {
            let opts = options(&a)?;
            let (files, frames, secs) = ingest::decode_only(&opts)?;
            println!("{{\"files\": {files}, \"frames_decoded\": {frames}, \"seconds\": {secs:.3}, \"threads\": {}}}", opts.threads);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(a) => run_verify(a),
        Command::Info(a) => run_info(a),
        Command::Train { args } => Ok(forward_to_torch(&[vec!["train".to_string()], args].concat().iter().map(Into::into).collect::<Vec<_>>())),
        Command::Eval { args } => Ok(forward_to_torch(&[vec!["eval".to_string()], args].concat().iter().map(Into::into).collect::<Vec<_>>())),
        Command::Audit(a) => run_audit(a),
        Command::Diff(a) => run_diff(a),
        Command::Pack(a) => run_pack(a),
        Command::Unpack(a) => run_unpack(a),
        Command::Fetch(a) => run_fetch(a),
        Command::Export(a) => run_export(a),
        Command::Report(a) => run_report(a),
    }
}

fn options(a: &IngestArgs) -> anyhow::Result<IngestOptions> {
    let fps = a.fps.parse().map_err(|e: String| anyhow::anyhow!("--fps: {e}"))?;
    let threads = a.threads.unwrap_or_else(|| usctl::files::threads(0));
    Ok(IngestOptions {
        manifest: a.manifest.clone(),
        raw: a.raw.clone(),
        store: a.store.clone(),
        fps,
        size: a.size,
        threads,
        progress: !a.quiet && !a.json,
        accept_changed: a.accept_changed,
        skip_absent_sources: a.skip_absent_sources,
    })
}

fn run_ingest(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let opts = options(&a)?;
    let report = ingest::ingest(&opts).with_context(|| format!("ingest of {} failed", a.manifest.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !a.quiet {
        print_ingest(&report);
    }
    if report.has_problems() {
        if !a.json {
            eprintln!("{} file(s) or folder(s) skipped or incomplete; see above (exit code 1)", report.problems.len());
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_pin(a: PinArgs) -> anyhow::Result<ExitCode> {
    use usctl::manifest::{pin, Manifest};
    let (manifest, bytes) = Manifest::load(&a.manifest)?;
    let outcome = pin::pin(&manifest, &a.raw, &a.manifest)?;
    let total: u64 = outcome.pinned.files.iter().map(|p| p.size).sum();
    let absent = |out: &mut Vec<String>| {
        if !outcome.absent.is_empty() {
            out.push(format!("{} listed file(s) absent, not pinned: {}", outcome.absent.len(), outcome.absent.join(", ")));
        }
        for s in &outcome.absent_sources {
            out.push(format!("sub-dataset {} absent ({}: {}), not pinned", s.subdataset, s.dir, s.reason));
        }
    };
    if a.check {
        let Some(old) = &manifest.pinned else {
            anyhow::bail!("{} has no [pinned] table to check; run `usctl manifest pin` without --check to write one", a.manifest.display());
        };
        let found = outcome.pinned.files.iter().map(|p| (p.path.as_str(), Some((p.size, p.sha256.as_str()))));
        let c = pin::check(old, found);
        let same = old.files == outcome.pinned.files;
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "same": same, "check": c, "absent": outcome.absent, "absent_sources": outcome.absent_sources })
                )?
            );
        } else {
            let mut lines = vec![format!(
                "{}: {} pinned files compared with {} under {}",
                a.manifest.display(),
                old.files.len(),
                outcome.pinned.files.len(),
                a.raw.display()
            )];
            if c.refuses() {
                lines.push(format!("differ: {}", c.listing(10)));
            }
            if !c.unpinned.is_empty() {
                lines.push(format!("no pin: {}", c.unpinned_listing(10)));
            }
            if !c.absent.is_empty() {
                lines.push(format!("pinned but absent: {}", c.absent.join(", ")));
            }
            if !same && !c.refuses() && c.unpinned.is_empty() && c.absent.is_empty() {
                lines.push("the bytes match; a URL or licence differs (the manifest's provenance changed): pin again".into());
            }
            absent(&mut lines);
            lines.push(if same { "pins are current".into() } else { "pins are out of date (exit code 1)".to_string() });
            println!("{}", lines.join("\n"));
        }
        return Ok(if same { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let text = std::str::from_utf8(&bytes)?;
    let new_text = pin::rewrite(text, &outcome.pinned, &a.manifest)?;
    // The rewritten manifest must read back as the same manifest plus these pins.
    let reread = Manifest::parse(new_text.as_bytes(), &a.manifest)?;
    anyhow::ensure!(reread.pinned.as_ref() == Some(&outcome.pinned), "internal error: the pins of {} do not read back", a.manifest.display());
    usctl::files::write_atomic(&a.manifest, new_text.as_bytes()).with_context(|| format!("cannot write {}", a.manifest.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "manifest": a.manifest, "files": outcome.pinned.files.len(), "bytes": total, "absent": outcome.absent, "absent_sources": outcome.absent_sources })
            )?
        );
    } else {
        let mut lines = vec![format!(
            "{}: pinned {} files ({:.1} MB) from {}{}",
            a.manifest.display(),
            outcome.pinned.files.len(),
            total as f64 / 1e6,
            a.raw.display(),
            if manifest.schema < pin::PIN_SCHEMA { format!(" (schema {} → {})", manifest.schema, pin::PIN_SCHEMA) } else { String::new() }
        )];
        absent(&mut lines);
        println!("{}", lines.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_ingest(r: &IngestReport) {
    let state = if r.reused { "unchanged inputs, reused" } else { "new version" };
    println!("{} → {} ({state})", r.dataset, r.version_dir.display());
    println!("  files   {} ({} ok, {} partial, {} failed, {} missing)", r.videos, r.ok, r.partial, r.failed, r.missing);
    println!("  frames  {} kept of {} decoded", r.frames_kept, r.frames_decoded);
    // With the per-sub-dataset lines below, classes without files are left out here.
    for c in r.classes.iter().filter(|c| c.videos > 0 || !shows_subdatasets(r)) {
        println!("  class   {:<20} {:>5} files {:>7} frames", c.class, c.videos, c.frames);
    }
    print_subdatasets(r);
    println!("  time    {:.1} s with {} threads", r.seconds, r.threads);
    if let Some(p) = &r.pins {
        match p.changed.len() {
            0 if p.checked > 0 => println!("  pins    {} files match their pins", p.checked),
            0 => {}
            n => println!("  pins    {} files checked; {n} differ, ingested anyway (--accept-changed): {}", p.checked, p.listing(10)),
        }
        if !p.unpinned.is_empty() {
            println!("  pins    {} files have no pin (pin them: usctl manifest pin): {}", p.unpinned.len(), p.unpinned_listing(10));
        }
    }
    if !r.notes.is_empty() {
        println!("  notes   {} (run with --json to list them all)", r.notes.len());
        for n in r.notes.iter().take(5) {
            println!("          {}: {}", n.path, n.reason);
        }
    }
    for p in &r.problems {
        eprintln!("skipped: {}: {}", p.path, p.reason);
    }
}

fn shows_subdatasets(r: &IngestReport) -> bool {
    r.subdatasets.len() > 1 || !r.expectations.is_empty() || !r.absent.is_empty()
}

/// Per sub-dataset and class, built against the manifest's `[[expect]]` rows, and the sources
/// left out as absent; only for manifests with several sub-datasets, expectations or absences.
fn print_subdatasets(r: &IngestReport) {
    if !shows_subdatasets(r) {
        return;
    }
    let expected = |sub: &str, class: Option<&str>| {
        let e = r.expectations.iter().find(|e| e.subdataset == sub && e.class.as_deref() == class)?;
        let part = |what: &str, v: &Option<usctl::audit::inventory::Versus>| v.map(|v| format!("{} {what} ({:+})", v.expected, v.difference));
        let parts: Vec<String> = [part("videos", &e.videos), part("frames", &e.frames)].into_iter().flatten().collect();
        Some(format!("   expected {}", parts.join(", ")))
    };
    for s in &r.subdatasets {
        let t = &s.total;
        println!("  built   {:<20} {:>5} videos {:>7} frames{}", s.subdataset, t.videos, t.frames, expected(&s.subdataset, None).unwrap_or_default());
        for c in &s.classes {
            let name = c.class.as_deref().unwrap_or("(no class)");
            let exp = c.class.as_deref().and_then(|n| expected(&s.subdataset, Some(n))).unwrap_or_default();
            println!("          {:<20} {:>5} videos {:>7} frames{exp}", format!("  {name}"), c.tally.videos, c.tally.frames);
        }
    }
    for a in &r.absent {
        let declared: Vec<String> = r
            .expectations
            .iter()
            .filter(|e| e.subdataset == a.subdataset && e.class.is_none())
            .flat_map(|e| [e.videos.map(|v| format!("{} videos", v.expected)), e.frames.map(|v| format!("{} frames", v.expected))])
            .flatten()
            .collect();
        let declared = if declared.is_empty() { String::new() } else { format!("; expected {}", declared.join(", ")) };
        println!("  absent  {:<20} {}: absent (not an error){declared}", a.subdataset, a.reason);
    }
}

fn run_verify(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let dir = a.sel.locate()?;
    let report = usctl::store::verify::verify(&dir)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.bad_files {
            println!("DIFFERS file  {f}");
        }
        for v in &report.bad_videos {
            println!("DIFFERS video {v}");
        }
        for f in &report.unchecked {
            println!("UNCHECKED file {f}");
        }
        println!(
            "{}: {} files, {} videos checked: {}",
            report.version_dir,
            report.files_checked,
            report.videos_checked,
            match (report.bad_files.is_empty() && report.bad_videos.is_empty(), report.unchecked.is_empty()) {
                (true, true) => "all match",
                (true, false) => "what could be checked matches",
                (false, _) => "MISMATCH",
            }
        );
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_info(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let dir = a.sel.locate()?;
    let store = Store::open(&dir)?;
    let m = &store.meta;
    if a.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} version {} at {}", m.dataset, m.version_id, dir.display());
    println!(
        "  {} files, {} frames of {}×{} {} ({} fps, {})",
        m.videos, m.frames, m.params.size, m.params.size, m.params.pixel_format, m.params.fps, m.params.fit
    );
    let mut by: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
    for v in &store.videos {
        let e = by.entry((v.subdataset.clone(), v.class_name.clone().unwrap_or_else(|| "(no class)".into()))).or_default();
        e.0 += 1;
        e.1 += v.frames_kept as u64;
    }
    for ((sub, class), (files, frames)) in by {
        println!("  {sub:<14} {class:<20} {files:>5} files {frames:>7} frames");
    }
    if !store.masks.is_empty() {
        let annotated = store.masks.iter().map(|r| r.frame_row).collect::<std::collections::BTreeSet<_>>().len();
        println!("  masks: {} files on {annotated} frames, {} lesion instances", store.masks.len(), store.instance_count());
    }
    for v in store.videos.iter().filter(|v| v.status != "ok") {
        println!("  {}: {}: {}", v.status, v.source_path, v.message.as_deref().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_audit(a: AuditArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.share) || a.radius > 63 || a.still_radius > 63 {
        anyhow::bail!("--share must be within 0..1 and --radius and --still-radius within 0..63 (got {}, {} and {})", a.share, a.radius, a.still_radius);
    }
    let mut stores = Vec::new();
    for path in &a.store {
        stores.push(Store::open(&usctl::store::locate(path, None, None)?)?);
    }
    let out = a.out.clone().unwrap_or_else(|| usctl::audit::default_out(&stores));
    let opts = usctl::audit::Options {
        disk: a.manifest.clone().zip(a.raw.clone()),
        folds: a.folds.clone(),
        out: out.clone(),
        rule: usctl::audit::matching::Rule { radius: a.radius, still_radius: a.still_radius, share: a.share },
    };
    let r = usctl::audit::audit(&stores, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_audit(&r, &out);
    }
    Ok(if r.counts.findings == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_audit(r: &usctl::audit::report::Report, out: &std::path::Path) {
    for s in &r.stores {
        println!("{} {}: {} videos, {} frames of {} px (frame hashes: {})", s.dataset, s.version_id, s.videos, s.frames, s.size, s.frame_hashes);
    }
    let c = &r.counts;
    println!("  duplicate clusters  {} joining {} videos ({} exact pairs, {} near pairs)", c.clusters, c.videos_in_clusters, c.exact_pairs, c.near_pairs);
    println!("  label conflicts     {}", c.label_conflicts);
    if r.stores.len() > 1 {
        println!("  across stores       {} clusters", c.clusters_across_stores);
    }
    if let Some(f) = &r.folds_file {
        println!("  fold leaks          {} ({f})", c.fold_leaks);
    }
    println!("  inventory           {} findings", c.inventory);
    for cl in r.findings.clusters.iter().filter(|cl| cl.is_conflict() || cl.datasets.len() > 1).take(8) {
        let names: Vec<String> = cl.members.iter().map(|m| format!("{} ({})", m.source_path, m.class.as_deref().unwrap_or("-"))).collect();
        println!("  {}: {}", cl.id, names.join(" = "));
    }
    println!("report: {} ({:.1} s)", out.join(usctl::audit::report::REPORT_MD).display(), r.seconds);
    if c.findings > 0 {
        println!("{} finding(s); exit code 1", c.findings);
    }
}

fn run_diff(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let open = |p: &std::path::Path| -> anyhow::Result<Store> { Ok(Store::open(&usctl::store::locate(p, None, None)?)?) };
    let d = usctl::store::diff::diff(&open(&a.a)?, &open(&a.b)?);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", d.text());
    }
    Ok(if d.is_identical() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_pack(a: PackArgs) -> anyhow::Result<ExitCode> {
    let r = usctl::store::pack::pack(&a.sel.locate()?, &a.out, a.level, a.force)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{}: {} {} ({} files), {} → {} bytes ({:.2}×, zstd level {}) in {:.1} s",
            r.pack.display(),
            r.dataset,
            r.version_dir.display(),
            r.files,
            r.input_bytes,
            r.pack_bytes,
            r.input_bytes as f64 / r.pack_bytes.max(1) as f64,
            r.level,
            r.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_unpack(a: UnpackArgs) -> anyhow::Result<ExitCode> {
    let r = usctl::store::pack::unpack(&a.pack, &a.store)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.already_published {
        println!("{} already holds version {} with the same store.json; nothing written", r.version_dir.display(), r.version_id);
    } else {
        let renamed = if r.version_dir.ends_with(&r.packed_as) { String::new() } else { format!(" (packed as {}, whose number is taken here)", r.packed_as) };
        println!(
            "{} → {}{renamed}: {} files, {} bytes, every digest matches, in {:.1} s",
            r.pack.display(),
            r.version_dir.display(),
            r.files,
            r.bytes,
            r.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_fetch(a: FetchArgs) -> anyhow::Result<ExitCode> {
    let opts = usctl::fetch::Options { manifest: a.manifest, into: a.into, jobs: a.jobs.into() };
    let print_line = |f: &usctl::fetch::report::FileReport| {
        if !a.json {
            println!("{}", f.line());
        }
    };
    let report = usctl::fetch::fetch(&opts, &print_line)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(if report.all_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let e = usctl::export::export(&a.checkpoint, &a.out, a.eval.as_deref(), a.force)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&e.card)?);
    } else {
        println!(
            "{}: {} tensors, {} parameters (torchvision resnet18 names, no fc); model card {}",
            a.out.display(),
            e.tensors,
            e.parameters,
            usctl::export::card_path(&a.out).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    use usctl::eval::{dense, report};
    let table = match a.runs.iter().filter(|d| dense::is_dense_report(d)).count() {
        0 => {
            let reports: Vec<_> = a.runs.iter().map(|d| report::Report::read(d).map(|r| (d.clone(), r))).collect::<Result<_, _>>()?;
            if let Some(path) = &a.json {
                report::write_atomic(path, serde_json::to_string_pretty(&report::compare_json(&reports))?.as_bytes())?;
                eprintln!("wrote {}", path.display());
            }
            report::compare(&reports)
        }
        n if n == a.runs.len() => {
            anyhow::ensure!(a.json.is_none(), "--json is written for classification reports only; segment/detect reports have their numbers in report.json");
            let reports: Result<Vec<_>, _> = a.runs.iter().map(|d| dense::DenseReport::read(d).map(|r| (d.clone(), r))).collect();
            dense::compare(&reports?)
        }
        _ => anyhow::bail!("give `usctl report` classification reports or segment/detect reports, not both: their tables have different columns"),
    };
    match &a.out {
        Some(path) => {
            report::write_atomic(path, table.as_bytes())?;
            println!("wrote {}", path.display());
        }
        None => print!("{table}"),
    }
    Ok(ExitCode::SUCCESS)
}
