//! k-fold cross-validation split by unit and stratified by class: no unit is ever on both sides of
//! a fold. A unit is a connected component of items that share a patient (where the metadata names
//! one) or a duplicate cluster (near-duplicate videos, `audit::corpus::duplicate_groups`); an item
//! with neither is a unit of its own. Deterministic for a seed; saved as JSON so that a split can be
//! reused and audited.

use crate::seed;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One item to split: a video (or a still image, a one-frame video).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub video: String,
    pub patient: Option<String>,
    pub class: usize,
    /// The duplicate cluster the video shares with other items, when folds keep clusters together.
    /// Absent in folds.json without one (and in every file written before clusters existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<usize>,
}

impl Item {
    /// What the item was grouped by before duplicate clusters: its patient, else the video itself.
    /// Units are named by their smallest such key.
    fn primary(&self) -> String {
        match &self.patient {
            Some(p) => format!("patient:{p}"),
            None => format!("video:{}", self.video),
        }
    }

    /// Every key that ties this item to others: the video, its patient, its duplicate cluster.
    pub fn keys(&self) -> Vec<String> {
        let mut k = vec![format!("video:{}", self.video)];
        k.extend(self.patient.as_ref().map(|p| format!("patient:{p}")));
        k.extend(self.cluster.map(|c| format!("cluster:{c}")));
        k
    }
}

/// The unit of each item: items that share any key (`Item::keys`), directly or through others, get
/// the same number; units are numbered 0, 1, … in order of their first item. Union-find.
pub fn units(items: &[Item]) -> Vec<usize> {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..items.len()).collect();
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        for key in it.keys() {
            let j = *first.entry(key).or_insert(i);
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            // The smaller index becomes the root, so a unit's root is its first item.
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut number: BTreeMap<usize, usize> = BTreeMap::new();
    (0..items.len())
        .map(|i| {
            let r = root(&mut parent, i);
            let next = number.len();
            *number.entry(r).or_insert(next)
        })
        .collect()
}

/// Items of each unit (indices into `items`), keyed by the unit's smallest primary key. Without
/// duplicate clusters these are exactly the patient-or-video groups of earlier versions, in the
/// same order, so such splits are unchanged.
fn groups(items: &[Item]) -> BTreeMap<String, Vec<usize>> {
    let unit = units(items);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); unit.iter().map(|u| u + 1).max().unwrap_or(0)];
    for (i, &u) in unit.iter().enumerate() {
        members[u].push(i);
    }
    members.into_iter().map(|m| (m.iter().map(|&i| items[i].primary()).min().unwrap_or_default(), m)).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Folds {
    pub k: usize,
    pub seed: u64,
    /// Fold (0..k) of each item, in the order of `items`.
    pub fold: Vec<usize>,
    pub items: Vec<Item>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FoldError {
    #[error(
        "{k}-fold cross-validation needs at least {k} groups (patients or videos, joined by duplicate clusters), found {groups}; lower --folds (or, where near-duplicate videos join them, --duplicate-groups off splits by patient alone)"
    )]
    TooFewGroups { k: usize, groups: usize },
    #[error("fold {fold} mixes train and test: {group} is on both sides; the split file was edited or built wrongly, rebuild it")]
    Leak { fold: usize, group: String },
}

/// Splits `items` into k folds. Units are taken largest first (ties in a seeded order) and each
/// goes to the fold that holds the fewest items of its majority class so far, then the fewest
/// items, then the lowest index: folds come out balanced in size and class.
pub fn split(items: &[Item], k: usize, seed: u64) -> Result<Folds, FoldError> {
    let groups = groups(items);
    if k < 2 || groups.len() < k {
        return Err(FoldError::TooFewGroups { k, groups: groups.len() });
    }
    let classes = items.iter().map(|i| i.class + 1).max().unwrap_or(0);
    let mut order: Vec<(String, Vec<usize>)> = groups.into_iter().collect();
    order.shuffle(&mut seed::stream(seed, "folds", &[k as u64]));
    order.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
    let mut per_class = vec![vec![0usize; classes]; k];
    let mut size = vec![0usize; k];
    let mut fold = vec![0usize; items.len()];
    for (_, members) in &order {
        let mut count = vec![0usize; classes];
        for &m in members {
            count[items[m].class] += 1;
        }
        let major = (0..classes).max_by_key(|&c| (count[c], std::cmp::Reverse(c))).unwrap_or(0);
        let f = (0..k).min_by_key(|&f| (per_class[f][major], size[f], f)).unwrap_or(0);
        for &m in members {
            fold[m] = f;
            per_class[f][items[m].class] += 1;
        }
        size[f] += members.len();
    }
    let folds = Folds { k, seed, fold, items: items.to_vec() };
    folds.check()?;
    Ok(folds)
}

/// Splits the items `of` (indices into `items`) into (kept, held out), holding out about
/// `fraction` of them by unit and stratified by class: one fold of a grouped k-fold split with
/// k = round(1 / fraction), or k = the number of units when there are fewer.
pub fn hold_out(items: &[Item], of: &[usize], fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>), FoldError> {
    let sub: Vec<Item> = of.iter().map(|&i| items[i].clone()).collect();
    let groups = units(&sub).into_iter().max().map_or(0, |u| u + 1);
    // Few groups: hold out one of them rather than fail (at least one group stays for training).
    let k = ((1.0 / fraction).round() as usize).clamp(2, groups.max(2));
    let f = split(&sub, k, seed)?;
    let (keep, held) = f.train_test(0);
    Ok((keep.into_iter().map(|i| of[i]).collect(), held.into_iter().map(|i| of[i]).collect()))
}

impl Folds {
    /// A saved split applied to `items` (in their order): the same videos with the same classes
    /// and patients must be in both, and the split must keep every unit of `items` (their duplicate
    /// clusters included) within one fold. A split made without clusters is reused when it happens
    /// to respect the clusters `items` now carry, and refused, naming the fix, when it does not.
    pub fn reuse(&self, items: &[Item]) -> Result<Folds, String> {
        self.check().map_err(|e| e.to_string())?;
        let saved: BTreeMap<&str, (usize, &Item)> = self.items.iter().zip(&self.fold).map(|(it, &f)| (it.video.as_str(), (f, it))).collect();
        if saved.len() != items.len() {
            return Err(format!(
                "it splits {} videos, this evaluation has {}; it was made for other data or classes: drop --folds-file",
                saved.len(),
                items.len()
            ));
        }
        let mut fold = Vec::with_capacity(items.len());
        for it in items {
            match saved.get(it.video.as_str()) {
                Some((f, s)) if s.class == it.class && s.patient == it.patient => fold.push(*f),
                Some(_) => return Err(format!("{} has another class or patient there; it was made for other data: drop --folds-file", it.video)),
                None => return Err(format!("it does not list {}; it was made for other data: drop --folds-file", it.video)),
            }
        }
        let reused = Folds { k: self.k, seed: self.seed, fold, items: items.to_vec() };
        match reused.check() {
            Ok(()) => Ok(reused),
            Err(FoldError::Leak { group, .. }) if group.starts_with("cluster:") => {
                let made = if self.items.iter().any(|i| i.cluster.is_some()) {
                    "with other duplicate clusters (the store or the matching rule changed)"
                } else {
                    "without duplicate clusters (by a usctl before them, or with --duplicate-groups off)"
                };
                Err(format!(
                    "it puts near-duplicate videos of {group} ({}) in different folds; it was made {made}: drop --folds-file to split again, or pass --duplicate-groups off to reuse it ungrouped",
                    reused.members(&group).join(", ")
                ))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Videos that carry `key` (`Item::keys`).
    fn members(&self, key: &str) -> Vec<String> {
        self.items.iter().filter(|i| i.keys().iter().any(|k| k == key)).map(|i| i.video.clone()).collect()
    }

    /// Indices of the (train, test) items of fold `f`.
    pub fn train_test(&self, f: usize) -> (Vec<usize>, Vec<usize>) {
        (0..self.items.len()).partition(|&i| self.fold[i] != f)
    }

    /// Refuses a split where any unit has items in two folds (so on both sides of some fold): no
    /// video, patient or duplicate cluster may appear in two folds, which holds exactly when every
    /// unit (`units`) lies in one fold.
    pub fn check(&self) -> Result<(), FoldError> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (it, &f) in self.items.iter().zip(&self.fold) {
            for key in it.keys() {
                match seen.get(&key) {
                    Some(&other) if other != f => return Err(FoldError::Leak { fold: f.min(other), group: key }),
                    _ => {
                        seen.insert(key, f);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Item> {
        // 40 videos of 3 classes; 24 of them from 8 patients with 3 videos each.
        (0..40).map(|i| Item { video: format!("v{i}"), patient: (i < 24).then(|| format!("p{}", i / 3)), class: i % 3, cluster: None }).collect()
    }

    #[test]
    fn groups_stay_together_and_folds_balance() {
        let it = items();
        let f = split(&it, 5, 1).unwrap();
        f.check().unwrap();
        for fold in 0..5 {
            let (train, test) = f.train_test(fold);
            assert_eq!(train.len() + test.len(), 40);
            assert!((6..=10).contains(&test.len()), "fold {fold}: {} test items", test.len());
            for &t in &test {
                assert!(train.iter().all(|&r| it[r].primary() != it[t].primary()));
            }
            let classes: std::collections::BTreeSet<usize> = test.iter().map(|&t| it[t].class).collect();
            assert_eq!(classes.len(), 3, "every class in every test fold");
        }
        let mut all: Vec<usize> = (0..5).flat_map(|k| f.train_test(k).1).collect();
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>(), "each item is tested exactly once");
    }

    #[test]
    fn stable_for_a_seed_and_saved_as_json() {
        let it = items();
        let a = split(&it, 5, 7).unwrap();
        assert_eq!(a, split(&it, 5, 7).unwrap());
        assert_ne!(a.fold, split(&it, 5, 8).unwrap().fold);
        let back: Folds = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn held_out_part_and_reused_splits() {
        let it = items();
        let f = split(&it, 5, 1).unwrap();
        let (train, _) = f.train_test(2);
        let (keep, held) = hold_out(&it, &train, 0.2, 3).unwrap();
        assert_eq!(keep.len() + held.len(), train.len());
        assert!((4..=9).contains(&held.len()), "{} held out of {}", held.len(), train.len());
        for h in &held {
            assert!(train.contains(h) && keep.iter().all(|k| it[*k].primary() != it[*h].primary()));
        }
        let mut shuffled = it.clone();
        shuffled.reverse();
        let again = f.reuse(&shuffled).unwrap();
        for (i, item) in shuffled.iter().enumerate() {
            let j = it.iter().position(|x| x == item).unwrap();
            assert_eq!(again.fold[i], f.fold[j]);
        }
        assert!(f.reuse(&it[1..]).unwrap_err().contains("drop --folds-file"));
        let (keep, held) = hold_out(&it, &[0, 1, 2, 3, 4, 5], 0.2, 3).unwrap();
        assert_eq!((keep.len(), held.len()), (3, 3), "two patients: one of them is held out");
        let mut other = it.clone();
        other[0].class = 2;
        assert!(f.reuse(&other).unwrap_err().contains("another class"));
    }

    #[test]
    fn refuses_leaks_and_too_few_groups() {
        let it = items();
        let mut f = split(&it, 5, 1).unwrap();
        // Move one video of patient p0 to another fold.
        f.fold[0] = (f.fold[1] + 1) % 5;
        assert!(matches!(f.check(), Err(FoldError::Leak { group, .. }) if group == "patient:p0"));
        let few: Vec<Item> = it.iter().take(6).cloned().collect(); // two patients
        assert_eq!(split(&few, 5, 1), Err(FoldError::TooFewGroups { k: 5, groups: 2 }));
    }

    /// Random items: patients from a small pool or none, clusters from a small pool or none.
    fn random_items(rng: &mut seed::Rng, n: usize) -> Vec<Item> {
        use rand::Rng as _;
        let (patients, clusters) = (rng.gen_range(1..n.max(2)), rng.gen_range(1..n.max(2)));
        (0..n)
            .map(|i| Item {
                video: format!("v{i}"),
                patient: rng.gen_bool(0.6).then(|| format!("p{}", rng.gen_range(0..patients))),
                class: rng.gen_range(0..3),
                cluster: rng.gen_bool(0.3).then(|| rng.gen_range(0..clusters)),
            })
            .collect()
    }

    /// Components the slow way: relabel both items of every pair that shares a key with the smaller
    /// label until nothing changes.
    fn naive_units(items: &[Item]) -> Vec<usize> {
        let mut label: Vec<usize> = (0..items.len()).collect();
        loop {
            let mut changed = false;
            for i in 0..items.len() {
                for j in i + 1..items.len() {
                    let shared = items[i].keys().iter().any(|k| items[j].keys().contains(k));
                    if shared && label[i] != label[j] {
                        let m = label[i].min(label[j]);
                        label[i] = m;
                        label[j] = m;
                        changed = true;
                    }
                }
            }
            if !changed {
                return label;
            }
        }
    }

    #[test]
    fn units_are_the_components_of_shared_patients_and_clusters() {
        // By hand: a–b share patient p, b–c cluster 0, d alone, e–f cluster 1 (no patients).
        let item = |v: &str, p: Option<&str>, c: Option<usize>| Item { video: v.into(), patient: p.map(String::from), class: 0, cluster: c };
        let hand = [
            item("a", Some("p"), None),
            item("d", Some("q"), None),
            item("b", Some("p"), Some(0)),
            item("e", None, Some(1)),
            item("c", Some("r"), Some(0)),
            item("f", None, Some(1)),
        ];
        assert_eq!(units(&hand), vec![0, 1, 0, 2, 0, 2]);
        for case in 0..300u64 {
            let mut rng = seed::stream(case, "units-test", &[]);
            let n = 1 + (case as usize % 25);
            let it = random_items(&mut rng, n);
            let (fast, slow) = (units(&it), naive_units(&it));
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(fast[i] == fast[j], slow[i] == slow[j], "case {case}: items {i} and {j} of {it:?}");
                }
            }
            // Numbered in order of first item.
            let mut next = 0;
            for &u in &fast {
                assert!(u <= next);
                next = next.max(u + 1);
            }
        }
    }

    #[test]
    fn splits_keep_units_together_and_check_refuses_any_straddling_unit() {
        use rand::Rng as _;
        for case in 0..200u64 {
            let mut rng = seed::stream(case, "split-test", &[]);
            let it = random_items(&mut rng, 10 + (case as usize % 30));
            let unit = naive_units(&it);
            let count = unit.iter().collect::<std::collections::BTreeSet<_>>().len();
            match split(&it, 3, case) {
                Ok(f) => {
                    for i in 0..it.len() {
                        for j in 0..it.len() {
                            assert!(unit[i] != unit[j] || f.fold[i] == f.fold[j], "case {case}: {i} and {j} are one unit in two folds");
                        }
                    }
                }
                Err(e) => assert_eq!(e, FoldError::TooFewGroups { k: 3, groups: count }),
            }
            // check() on any assignment agrees with "every unit lies in one fold".
            let fold: Vec<usize> = (0..it.len()).map(|_| rng.gen_range(0..3)).collect();
            let whole = (0..it.len()).all(|i| (0..it.len()).all(|j| unit[i] != unit[j] || fold[i] == fold[j]));
            assert_eq!(Folds { k: 3, seed: 0, fold, items: it.clone() }.check().is_ok(), whole, "case {case}");
        }
    }

    #[test]
    fn without_clusters_the_groups_are_the_patient_or_video_groups_of_before() {
        for case in 0..50u64 {
            let mut it = random_items(&mut seed::stream(case, "compat-test", &[]), 30);
            for i in &mut it {
                i.cluster = None;
            }
            let mut before: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (i, x) in it.iter().enumerate() {
                before.entry(x.primary()).or_default().push(i);
            }
            assert_eq!(groups(&it), before, "case {case}");
        }
    }

    #[test]
    fn duplicates_of_two_patients_share_a_fold_and_old_splits_are_not_silently_reused() {
        // v0 (patient p0) and v2 (patient p1) are copies of each other: cluster 0.
        let plain = items();
        let mut grouped = plain.clone();
        grouped[0].cluster = Some(0);
        grouped[3].cluster = Some(0);
        let seeds: Vec<u64> = (0..20).filter(|&s| split(&plain, 5, s).map(|f| f.fold[0] != f.fold[3]).unwrap()).collect();
        assert!(!seeds.is_empty(), "some ungrouped split separates patients p0 and p1");
        for &s in &seeds {
            let f = split(&grouped, 5, s).unwrap();
            assert_eq!(f.fold[0], f.fold[3], "seed {s}");
            assert_eq!(f.fold[0], f.fold[1], "and with them all of p0's and p1's videos");
            assert_eq!(f.fold[0], f.fold[5]);
        }
        // A split made without clusters that separates them is refused once they exist …
        let old = split(&plain, 5, seeds[0]).unwrap();
        let err = old.reuse(&grouped).unwrap_err();
        assert!(err.contains("cluster:0 (v0, v3)") && err.contains("drop --folds-file") && err.contains("--duplicate-groups off"), "{err}");
        // … one that happens to keep them together is reused, and both read from JSON written
        // before clusters existed (no `cluster` key).
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("cluster"));
        let back: Folds = serde_json::from_str(&json).unwrap();
        assert_eq!(back.reuse(&plain).unwrap(), old);
        let kept = split(&grouped, 5, seeds[0]).unwrap();
        let stripped = Folds { items: plain.clone(), ..kept.clone() };
        assert_eq!(stripped.reuse(&grouped).unwrap(), kept);
        // A grouped split names the cluster when it is edited to straddle.
        let mut edited = kept.clone();
        edited.fold[3] = (edited.fold[0] + 1) % 5;
        edited.items[3].patient = None;
        assert!(matches!(edited.check(), Err(FoldError::Leak { group, .. }) if group == "cluster:0"));
    }
}
