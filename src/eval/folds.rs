//! k-fold cross-validation split by group (a patient where the metadata names one, else the
//! video itself) and stratified by class: no patient or video is ever on both sides of a fold.
//! Deterministic for a seed; saved as JSON so that a split can be reused and audited.

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
}

impl Item {
    /// The unit that must stay on one side.
    pub fn group(&self) -> String {
        match &self.patient {
            Some(p) => format!("patient:{p}"),
            None => format!("video:{}", self.video),
        }
    }
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
    #[error("{k}-fold cross-validation needs at least {k} groups (patients or videos), found {groups}; lower --folds")]
    TooFewGroups { k: usize, groups: usize },
    #[error("fold {fold} mixes train and test: {group} is on both sides; the split file was edited or built wrongly, rebuild it")]
    Leak { fold: usize, group: String },
}

/// Splits `items` into k folds. Groups are taken largest first (ties in a seeded order) and each
/// goes to the fold that holds the fewest items of its majority class so far, then the fewest
/// items, then the lowest index: folds come out balanced in size and class.
pub fn split(items: &[Item], k: usize, seed: u64) -> Result<Folds, FoldError> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        groups.entry(it.group()).or_default().push(i);
    }
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
/// `fraction` of them by group and stratified by class: one fold of a grouped k-fold split with
/// k = round(1 / fraction), or k = the number of groups when there are fewer.
pub fn hold_out(items: &[Item], of: &[usize], fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>), FoldError> {
    let sub: Vec<Item> = of.iter().map(|&i| items[i].clone()).collect();
    let groups = sub.iter().map(Item::group).collect::<std::collections::BTreeSet<_>>().len();
    // Few groups: hold out one of them rather than fail (at least one group stays for training).
    let k = ((1.0 / fraction).round() as usize).clamp(2, groups.max(2));
    let f = split(&sub, k, seed)?;
    let (keep, held) = f.train_test(0);
    Ok((keep.into_iter().map(|i| of[i]).collect(), held.into_iter().map(|i| of[i]).collect()))
}

impl Folds {
    /// A saved split applied to `items` (in their order): the same videos with the same classes
    /// must be in both, and the split must pass the leak check.
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
                Some((f, s)) if *s == it => fold.push(*f),
                Some(_) => return Err(format!("{} has another class or patient there; it was made for other data: drop --folds-file", it.video)),
                None => return Err(format!("it does not list {}; it was made for other data: drop --folds-file", it.video)),
            }
        }
        Ok(Folds { k: self.k, seed: self.seed, fold, items: items.to_vec() })
    }

    /// Indices of the (train, test) items of fold `f`.
    pub fn train_test(&self, f: usize) -> (Vec<usize>, Vec<usize>) {
        (0..self.items.len()).partition(|&i| self.fold[i] != f)
    }

    /// Refuses a split where any group has items in two folds (so on both sides of some fold).
    pub fn check(&self) -> Result<(), FoldError> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (it, &f) in self.items.iter().zip(&self.fold) {
            let g = it.group();
            match seen.get(&g) {
                Some(&other) if other != f => return Err(FoldError::Leak { fold: f.min(other), group: g }),
                _ => {
                    seen.insert(g, f);
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
        (0..40).map(|i| Item { video: format!("v{i}"), patient: (i < 24).then(|| format!("p{}", i / 3)), class: i % 3 }).collect()
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
                assert!(train.iter().all(|&r| it[r].group() != it[t].group()));
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
            assert!(train.contains(h) && keep.iter().all(|k| it[*k].group() != it[*h].group()));
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
}
