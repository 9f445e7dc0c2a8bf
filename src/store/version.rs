//! Version ids: a digest of everything that decides a store's bytes: the manifest's bytes, each
//! source file's path, labels and sha256, the ingest parameters and the store format version.
//! Identical inputs give the same id, so a re-run reuses the published version.

use super::{IngestParams, FORMAT_VERSION};
use crate::hash::sha256_hex;
use serde::Serialize;

/// How one manifest entry stood when the version was made.
#[derive(Debug, Clone, Serialize)]
pub struct SourceState<'a> {
    pub rel_path: &'a str,
    pub subdataset: &'a str,
    pub class: Option<&'a str>,
    pub patient: Option<&'a str>,
    /// sha256 of the file's bytes; None when it could not be read.
    pub sha256: Option<&'a str>,
    /// Why it could not be read, if so.
    pub unreadable: Option<&'a str>,
    /// Its mask files (`[source.masks]`, format 4), in file-name order; not written when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<MaskState<'a>>,
}

/// One mask file of a source when the version was made.
#[derive(Debug, Clone, Serialize)]
pub struct MaskState<'a> {
    pub rel_path: &'a str,
    pub sha256: Option<&'a str>,
    pub unreadable: Option<&'a str>,
}

#[derive(Serialize)]
struct VersionInput<'a> {
    format_version: u32,
    manifest_sha256: String,
    params: &'a IngestParams,
    sources: &'a [SourceState<'a>],
}

/// Returns (short id used in directory names, full sha256).
pub fn version_id(manifest: &[u8], params: &IngestParams, sources: &[SourceState<'_>]) -> (String, String) {
    let input = VersionInput { format_version: FORMAT_VERSION, manifest_sha256: sha256_hex(manifest), params, sources };
    // serde_json writes struct fields in declaration order: a stable canonical form.
    let canonical = serde_json::to_vec(&input).unwrap_or_default();
    let full = sha256_hex(&canonical);
    (full[..16].to_string(), full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> IngestParams {
        IngestParams { fps: "3".into(), size: 256, pixel_format: "gray8".into(), fit: "letterbox".into(), decoder: "x".into() }
    }

    fn src<'a>(sha: &'a str) -> SourceState<'a> {
        SourceState { rel_path: "a.mp4", subdataset: "s", class: Some("c"), patient: None, sha256: Some(sha), unreadable: None, masks: Vec::new() }
    }

    #[test]
    fn changes_with_every_input() {
        let base = version_id(b"m", &params(), &[src("aa")]);
        assert_eq!(base, version_id(b"m", &params(), &[src("aa")]));
        assert_eq!(base.0.len(), 16);
        assert_eq!(&base.1[..16], base.0);
        let mut p = params();
        p.size = 128;
        let mut relabelled = src("aa");
        relabelled.class = Some("d");
        let mask = |sha| MaskState { rel_path: "m.png", sha256: Some(sha), unreadable: None };
        let with_mask = SourceState { masks: vec![mask("m1")], ..src("aa") };
        let other_mask = SourceState { masks: vec![mask("m2")], ..src("aa") };
        assert_ne!(version_id(b"m", &params(), &[with_mask]), version_id(b"m", &params(), &[other_mask]));
        for other in [
            version_id(b"m2", &params(), &[src("aa")]),
            version_id(b"m", &p, &[src("aa")]),
            version_id(b"m", &params(), &[src("ab")]),
            version_id(b"m", &params(), &[relabelled]),
            version_id(b"m", &params(), &[]),
            version_id(b"m", &params(), &[SourceState { masks: vec![mask("m1")], ..src("aa") }]),
        ] {
            assert_ne!(base, other);
        }
    }
}
