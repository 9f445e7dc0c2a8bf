//! From links to findings a curator acts on (docs/AUDIT.md): exact duplicates, near-duplicate
//! pairs, duplicate clusters, label conflicts, and leakage across the folds of a saved split and
//! across stores. Pure given a corpus; report.rs writes them.

use super::corpus::{Corpus, VideoRef};
use super::matching::{components, Link, Why};
use crate::eval::folds::Folds;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A video as findings name it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// Index into the report's `stores`.
    pub store: usize,
    pub dataset: String,
    pub source_path: String,
    pub class: Option<String>,
    pub patient: Option<String>,
    pub frames: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    pub a: Member,
    pub b: Member,
    pub why: Why,
    /// Frames of the shorter video matched in time order, of its frame count.
    pub matched: usize,
    pub of: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// `c1`, `c2`, … in order of each cluster's first video.
    pub id: String,
    pub members: Vec<Member>,
    /// The strongest reason linking each pair inside it, counted.
    pub links: BTreeMap<String, usize>,
    /// Distinct classes of its members, per dataset, where a dataset has more than one.
    pub conflicting_classes: BTreeMap<String, Vec<String>>,
    /// Datasets it spans (more than one: it leaks between stores).
    pub datasets: Vec<String>,
}

impl Cluster {
    pub fn is_conflict(&self) -> bool {
        !self.conflicting_classes.is_empty()
    }
}

/// A cluster or patient found in more than one fold of a saved split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldLeak {
    /// `cluster c3` or `patient 42`.
    pub unit: String,
    /// Fold of each member, by source path.
    pub folds: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Findings {
    /// Pairs of videos with the same source bytes or the same stored frames.
    pub exact: Vec<Pair>,
    pub near: Vec<Pair>,
    pub clusters: Vec<Cluster>,
    pub fold_leaks: Vec<FoldLeak>,
}

impl Findings {
    pub fn conflicts(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.iter().filter(|c| c.is_conflict())
    }

    pub fn across_stores(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.iter().filter(|c| c.datasets.len() > 1)
    }

    /// Every cluster is one finding (its pairs are its evidence), every fold leak another.
    pub fn count(&self) -> usize {
        self.clusters.len() + self.fold_leaks.len()
    }
}

pub fn member(corpus: &Corpus, v: VideoRef) -> Member {
    let row = corpus.row(v);
    Member {
        store: v.store,
        dataset: corpus.stores[v.store].meta.dataset.clone(),
        source_path: row.source_path.clone(),
        class: row.class_name.clone(),
        patient: row.patient_id.clone(),
        frames: row.frames_kept as usize,
    }
}

/// Clusters of two or more videos, with what links them; `component` numbers each clip's cluster.
pub fn clusters(corpus: &Corpus, links: &[Link]) -> (Vec<Cluster>, Vec<usize>) {
    let component = components(corpus.clips.len(), links);
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in component.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    let mut why: BTreeMap<usize, BTreeMap<String, usize>> = BTreeMap::new();
    for l in links {
        let name = serde_json::to_value(l.why).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        *why.entry(component[l.a]).or_default().entry(name).or_default() += 1;
    }
    let mut out = Vec::new();
    for (c, clips) in members.into_iter().filter(|(_, m)| m.len() > 1) {
        let members: Vec<Member> = clips.iter().map(|&i| member(corpus, corpus.videos[i])).collect();
        let mut classes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &members {
            if let Some(class) = &m.class {
                classes.entry(m.dataset.clone()).or_default().insert(class.clone());
            }
        }
        let conflicting_classes = classes.into_iter().filter(|(_, k)| k.len() > 1).map(|(d, k)| (d, k.into_iter().collect())).collect();
        let datasets: BTreeSet<String> = members.iter().map(|m| m.dataset.clone()).collect();
        out.push(Cluster {
            id: format!("c{}", out.len() + 1),
            members,
            links: why.remove(&c).unwrap_or_default(),
            conflicting_classes,
            datasets: datasets.into_iter().collect(),
        });
    }
    (out, component)
}

/// Clusters and patients of `store` (an index into the corpus's stores) that a saved split puts
/// in more than one fold. `Err` names a video of the split that the store does not have.
pub fn fold_leaks(corpus: &Corpus, store: usize, component: &[usize], clusters: &[Cluster], folds: &Folds) -> Result<Vec<FoldLeak>, String> {
    let fold_of: BTreeMap<&str, usize> = folds.items.iter().zip(&folds.fold).map(|(it, &f)| (it.video.as_str(), f)).collect();
    let paths: BTreeSet<&str> = corpus.stores[store].videos.iter().map(|v| v.source_path.as_str()).collect();
    if let Some(missing) = fold_of.keys().find(|p| !paths.contains(*p)) {
        return Err(format!("it lists {missing}, which {} does not have; give the store the split was made for", corpus.stores[store].dir.display()));
    }
    // Name each component by its cluster id.
    let mut id_of: BTreeMap<usize, &str> = BTreeMap::new();
    for (i, &c) in component.iter().enumerate() {
        let path = corpus.row(corpus.videos[i]).source_path.as_str();
        if let Some(cl) = clusters.iter().find(|cl| cl.members.iter().any(|m| m.store == corpus.videos[i].store && m.source_path == path)) {
            id_of.insert(c, cl.id.as_str());
        }
    }
    let mut units: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (i, v) in corpus.videos.iter().enumerate().filter(|(_, v)| v.store == store) {
        let row = corpus.row(*v);
        if let (Some(&f), Some(id)) = (fold_of.get(row.source_path.as_str()), id_of.get(&component[i])) {
            units.entry(format!("cluster {id}")).or_default().insert(row.source_path.clone(), f);
        }
    }
    // Patients as the split itself records them.
    for (it, &f) in folds.items.iter().zip(&folds.fold) {
        if let Some(p) = &it.patient {
            units.entry(format!("patient {p}")).or_default().insert(it.video.clone(), f);
        }
    }
    Ok(units.into_iter().filter(|(_, folds)| folds.values().collect::<BTreeSet<_>>().len() > 1).map(|(unit, folds)| FoldLeak { unit, folds }).collect())
}

/// Every finding of a corpus; `folds` is a saved split of store 0.
pub fn find(corpus: &Corpus, links: &[Link], folds: Option<&Folds>) -> Result<Findings, String> {
    let pair = |l: &Link| Pair { a: member(corpus, corpus.videos[l.a]), b: member(corpus, corpus.videos[l.b]), why: l.why, matched: l.matched, of: l.of };
    let (clusters, component) = clusters(corpus, links);
    let fold_leaks = match folds {
        Some(f) => fold_leaks(corpus, 0, &component, &clusters, f)?,
        None => Vec::new(),
    };
    Ok(Findings {
        exact: links.iter().filter(|l| l.why != Why::Near).map(pair).collect(),
        near: links.iter().filter(|l| l.why == Why::Near).map(pair).collect(),
        clusters,
        fold_leaks,
    })
}
