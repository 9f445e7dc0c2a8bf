//! Stores as the matcher sees them: every stored video of one or more store versions as a clip
//! (frame pHashes from frames.parquet, or computed from the payload for format 1 and 2 versions,
//! which have none), the links between them and their duplicate clusters. `usctl audit` reports
//! them; `usctl eval` groups folds by them and drops overlap with a pretraining store.

use super::matching::{self, Clip, Link, Rule};
use crate::store::index::FrameHashes;
use crate::store::reader::Store;
use rayon::prelude::*;
use serde::Serialize;

/// A stored video: `store` indexes the stores given, `video` is its row in videos.parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct VideoRef {
    pub store: usize,
    pub video: usize,
}

pub struct Corpus<'a> {
    pub stores: Vec<&'a Store>,
    /// Videos with at least one stored frame, store by store in index order.
    pub videos: Vec<VideoRef>,
    pub clips: Vec<Clip>,
    /// Whether store i's hashes were computed here (a format 1 or 2 version) rather than read.
    pub computed: Vec<bool>,
}

/// The pHash of every stored frame of a version: read from its index, or computed from its
/// payload when the version predates frame hashes (store format < 3).
pub fn frame_phashes(store: &Store) -> (Vec<u64>, bool) {
    if store.frames.iter().all(|f| f.hashes.is_some()) {
        return (store.frames.iter().map(|f| f.hashes.as_ref().map_or(0, |h| h.phash)).collect(), false);
    }
    let size = store.meta.params.size as usize;
    ((0..store.frames.len()).into_par_iter().map(|r| crate::phash::phash(store.frame(r), size)).collect(), true)
}

/// sha256 of each stored frame's pixels, read or computed like `frame_phashes`.
pub fn frame_digests(store: &Store) -> Vec<String> {
    let size = store.meta.params.size as usize;
    (0..store.frames.len())
        .into_par_iter()
        .map(|r| match &store.frames[r].hashes {
            Some(h) => h.pixels_sha256.clone(),
            None => FrameHashes::of(store.frame(r), size).pixels_sha256,
        })
        .collect()
}

impl<'a> Corpus<'a> {
    pub fn new(stores: Vec<&'a Store>) -> Corpus<'a> {
        let mut videos = Vec::new();
        let mut clips = Vec::new();
        let mut computed = Vec::new();
        for (s, store) in stores.iter().enumerate() {
            let (phashes, was_computed) = frame_phashes(store);
            let digests = frame_digests(store);
            computed.push(was_computed);
            for (v, row) in store.videos.iter().enumerate().filter(|(_, r)| r.frames_kept > 0) {
                let rows = row.first_frame_row as usize..(row.first_frame_row + row.frames_kept) as usize;
                videos.push(VideoRef { store: s, video: v });
                clips.push(Clip { phashes: phashes[rows.clone()].to_vec(), source_sha256: row.source_sha256.clone(), frame_sha256: digests[rows].to_vec() });
            }
        }
        Corpus { stores, videos, clips, computed }
    }

    pub fn row(&self, v: VideoRef) -> &crate::store::index::VideoRow {
        &self.stores[v.store].videos[v.video]
    }

    /// Links between clips (indices into `videos`).
    pub fn links(&self, rule: Rule) -> Vec<Link> {
        matching::links(&self.clips, rule)
    }
}

/// Duplicate clusters of one store's videos: for each row of videos.parquet, the number of its
/// cluster when it shares one with another video, else None. Clusters are numbered 0, 1, … in
/// order of their first video.
pub fn duplicate_groups(store: &Store, rule: Rule) -> Vec<Option<usize>> {
    let corpus = Corpus::new(vec![store]);
    let links = corpus.links(rule);
    let component = matching::components(corpus.videos.len(), &links);
    let mut size = vec![0usize; corpus.videos.len()];
    for &c in &component {
        size[c] += 1;
    }
    let mut number = std::collections::HashMap::new();
    let mut out = vec![None; store.videos.len()];
    for (i, v) in corpus.videos.iter().enumerate() {
        if size[component[i]] > 1 {
            let next = number.len();
            out[v.video] = Some(*number.entry(component[i]).or_insert(next));
        }
    }
    out
}

/// A video of `store` with a near-duplicate (or identical copy) in `other`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overlap {
    /// Row in `store`'s videos.parquet.
    pub video: usize,
    pub source_path: String,
    /// The matching videos of `other`, by source path.
    pub matches: Vec<String>,
}

/// The videos of `store` that have a copy in `other` (each with what it matches), in row order.
pub fn overlap(store: &Store, other: &Store, rule: Rule) -> Vec<Overlap> {
    let corpus = Corpus::new(vec![store, other]);
    let mut found: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for l in corpus.links(rule) {
        let (a, b) = (corpus.videos[l.a], corpus.videos[l.b]);
        // Videos are listed store by store, so a cross-store link has a in `store`, b in `other`.
        if a.store == 0 && b.store == 1 {
            found.entry(a.video).or_default().push(corpus.row(b).source_path.clone());
        }
    }
    found.into_iter().map(|(video, matches)| Overlap { video, source_path: store.videos[video].source_path.clone(), matches }).collect()
}
