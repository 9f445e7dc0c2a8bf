//! Files whose bytes are identical (equal sha256, computed once when sources are hashed) under
//! different names. Each later copy gets a note naming the first; copies whose classes differ
//! are warnings, listed first, because one of the two labels must be wrong. (A full audit of
//! duplicates is a later step.)

use crate::manifest::{Entry, Problem};
use std::collections::HashMap;

/// Notes about identical files: (class conflicts, plain copies), in manifest order.
pub fn same_bytes(entries: &[Entry], sha256: &[Option<&str>]) -> (Vec<Problem>, Vec<Problem>) {
    let (mut conflicts, mut copies) = (Vec::new(), Vec::new());
    let mut first: HashMap<&str, &Entry> = HashMap::new();
    for (e, sha) in entries.iter().zip(sha256) {
        let Some(sha) = sha else { continue };
        let Some(f) = first.get(sha) else {
            first.insert(sha, e);
            continue;
        };
        let class = |e: &Entry| e.class.as_ref().map(|c| c.0.clone());
        let said = |c: Option<String>| c.map_or("no class".to_string(), |c| format!("class '{c}'"));
        let note = |reason: String| Problem { path: e.rel_path.clone(), reason };
        match (class(e), class(f)) {
            (Some(here), Some(there)) if here != there => conflicts.push(note(format!(
                "same bytes as {} but different classes: '{here}' here, '{there}' there; one label is wrong: \
                 fix the manifest's class rules or metadata, or remove one copy",
                f.rel_path
            ))),
            (here, there) if here == there => copies.push(note(format!("same bytes as {} (same class: {}); the file is stored twice", f.rel_path, said(here)))),
            (here, there) => copies.push(note(format!("same bytes as {} ({} here, {} there); the file is stored twice", f.rel_path, said(here), said(there)))),
        }
    }
    (conflicts, copies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, class: Option<&str>) -> Entry {
        Entry {
            subdataset: "s".into(),
            source: 0,
            rel_path: path.into(),
            path: path.into(),
            class: class.map(|c| (c.to_string(), 0)),
            patient: None,
            missing: false,
            masks: None,
        }
    }

    #[test]
    fn copies_are_noted_and_class_conflicts_come_apart() {
        let entries = [entry("a1", Some("a")), entry("a2", Some("a")), entry("b1", Some("b")), entry("c", None), entry("x", Some("a")), entry("gone", None)];
        let sha = [Some("1"), Some("1"), Some("1"), Some("1"), Some("2"), None];
        let (conflicts, copies) = same_bytes(&entries, &sha);
        let paths = |v: &[Problem]| v.iter().map(|p| p.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&conflicts), ["b1"]);
        assert!(conflicts[0].reason.contains("as a1") && conflicts[0].reason.contains("'b' here, 'a' there"), "{conflicts:?}");
        assert_eq!(paths(&copies), ["a2", "c"]);
        assert!(copies[0].reason.contains("same class: class 'a'"), "{copies:?}");
        assert!(copies[1].reason.contains("no class here, class 'a' there"), "{copies:?}");
    }
}
