//! dataset_manifests/us4.toml against the USCL paper's Table 1, its folder layout, and the open
//! stand-in us4-open.toml (no evaluation corpus, COVID-BLUES with the rules of covid-blues.toml).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use usctl::manifest::{Expect, Manifest, WhenAbsent};

fn shipped(name: &str) -> (Manifest, PathBuf) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataset_manifests").join(name);
    (Manifest::load(&path).unwrap_or_else(|e| panic!("{e}")).0, path)
}

/// The classes a source's rules can give, in rule order.
fn classes_of(m: &Manifest, subdataset: &str) -> Vec<String> {
    let s = m.sources.iter().find(|s| s.subdataset == subdataset).unwrap_or_else(|| panic!("no source {subdataset}"));
    s.class_rule.iter().map(|r| r.class.clone()).collect()
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"not decoded: resolving lists files only").unwrap();
}

#[test]
fn us4_expectations_are_table_1() {
    let (m, _) = shipped("us4.toml");
    assert_eq!(m.name, "us4");
    assert_eq!(m.schema, 3);
    // Table 1 of Chen et al., MICCAI 2021 (arXiv 2011.13066): videos and images per sub-dataset.
    let row = |sub: &str, videos, frames| Expect { subdataset: sub.into(), class: None, videos: Some(videos), frames: Some(frames) };
    assert_eq!(m.expectations, vec![row("butterfly", 22, 1533), row("clust", 63, 3150), row("liver-fibrosis", 296, 11714), row("covid19-lusms", 670, 6834)]);
    // The paper's totals: 1,051 videos, 23,231 images.
    assert_eq!(m.expectations.iter().map(|e| e.videos.unwrap()).sum::<u64>(), 1051);
    assert_eq!(m.expectations.iter().map(|e| e.frames.unwrap()).sum::<u64>(), 23231);
    // The table has no per-class counts, and none is invented.
    assert!(m.expectations.iter().all(|e| e.class.is_none()));
}

#[test]
fn us4_has_four_subdatasets_with_2_5_5_4_classes_in_their_folders() {
    let (m, _) = shipped("us4.toml");
    let subs: Vec<(&str, Option<&str>)> = m.sources.iter().map(|s| (s.subdataset.as_str(), s.dir.as_deref())).collect();
    assert_eq!(
        subs,
        vec![("butterfly", Some("butterfly")), ("clust", Some("clust")), ("liver-fibrosis", Some("liver-fibrosis")), ("covid19-lusms", Some("covid19-lusms"))]
    );
    let counts: Vec<usize> = m.sources.iter().map(|s| classes_of(&m, &s.subdataset).len()).collect();
    assert_eq!(counts, vec![2, 5, 5, 4]);
    assert_eq!(classes_of(&m, "butterfly"), ["regular", "covid-19"]);
    assert_eq!(classes_of(&m, "liver-fibrosis"), ["F0", "F1", "F2", "F3", "F4"]);
    assert_eq!(classes_of(&m, "covid19-lusms"), ["a-line", "b-line", "pleural-lesion", "pleural-effusion"]);
    assert_eq!(m.classes.len(), 16);
    for s in &m.sources {
        assert!(s.citation.is_some() && s.homepage.is_some() && s.licence.is_some(), "{}: provenance", s.subdataset);
    }
    for s in ["liver-fibrosis", "covid19-lusms"] {
        assert_eq!(m.sources.iter().find(|x| x.subdataset == s).unwrap().licence.as_deref(), Some("not released"));
    }
}

#[test]
fn us4_layout_labels_each_file_by_its_class_folder() {
    let (m, path) = shipped("us4.toml");
    let raw = tempfile::tempdir().unwrap();
    let mut want = BTreeSet::new();
    for s in &m.sources {
        for class in classes_of(&m, &s.subdataset) {
            let rel = format!("{}/{class}/v.mp4", s.subdataset);
            touch(&raw.path().join(&rel));
            want.insert((s.subdataset.clone(), rel, class));
        }
    }
    // Not taken: another extension, a file outside the class folders, an unknown class folder.
    for stray in ["butterfly/regular/v_frame0.jpg", "clust/v.mp4", "clust/clust-6/v.mp4", "liver-fibrosis/F5/v.mp4", "butterfly/Regular/v.mp4"] {
        touch(&raw.path().join(stray));
    }
    let r = m.resolve(raw.path(), &path).unwrap();
    let got: BTreeSet<(String, String, String)> =
        r.entries.iter().map(|e| (e.subdataset.clone(), e.rel_path.clone(), e.class.clone().expect("every file has a class").0)).collect();
    assert_eq!(got, want);
    assert_eq!(r.entries.len(), 16);
    assert!(r.problems.is_empty() && r.notes.is_empty(), "{:?} {:?}", r.problems, r.notes);
}

#[test]
fn us4_open_has_covid_blues_and_butterfly_and_no_evaluation_corpus() {
    let (m, path) = shipped("us4-open.toml");
    assert_eq!(m.name, "us4-open");
    let subs: Vec<(&str, Option<&str>)> = m.sources.iter().map(|s| (s.subdataset.as_str(), s.dir.as_deref())).collect();
    assert_eq!(subs, vec![("covid-blues", Some("covid-blues")), ("butterfly", Some("butterfly"))]);
    for s in &m.sources {
        let named = format!("{} {:?} {:?} {:?}", s.subdataset, s.dir, s.include, s.files).to_lowercase();
        assert!(!named.contains("pocus") && !named.contains("busi"), "evaluation corpus in us4-open: {named}");
        assert!(s.licence.is_some() && s.citation.is_some(), "{}: licence and citation", s.subdataset);
    }
    // COVID-BLUES: the rules of covid-blues.toml, inside its folder.
    let (cb, _) = shipped("covid-blues.toml");
    let (a, b) = (&m.sources[0], &cb.sources[0]);
    assert_eq!(a.include, b.include);
    let (ca, cbc) = (a.class_csv.as_ref().unwrap(), b.class_csv.as_ref().unwrap());
    assert_eq!((&ca.file, &ca.key_column, ca.key, &ca.column, &ca.values), (&cbc.file, &cbc.key_column, cbc.key, &cbc.column, &cbc.values));
    assert_eq!(a.patient.as_ref().unwrap().regex, b.patient.as_ref().unwrap().regex);
    for class in cb.classes.iter() {
        assert!(m.classes.contains(class), "{class}");
    }
    // The butterfly source is us4.toml's.
    let (us4, _) = shipped("us4.toml");
    let (ba, bb) = (&m.sources[1], &us4.sources[0]);
    assert_eq!((&ba.include, classes_of(&m, "butterfly")), (&bb.include, classes_of(&us4, "butterfly")));

    // A COVID-BLUES-shaped folder resolves with class and patient; Butterfly absent is listed.
    let raw = tempfile::tempdir().unwrap();
    touch(&raw.path().join("covid-blues/lus_videos/patient_7_L2.mp4"));
    std::fs::write(raw.path().join("covid-blues/severity.csv"), "video_file,Severity Score\npatient_7_L2,2.0\n").unwrap();
    let r = m.resolve_with(raw.path(), &path, WhenAbsent::Skip).unwrap();
    let e = &r.entries[..];
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].rel_path.as_str(), e[0].class.clone(), e[0].patient.as_deref()),
        ("covid-blues/lus_videos/patient_7_L2.mp4", Some(("severity-2".into(), 2)), Some("7"))
    );
    assert_eq!(r.absent.iter().map(|a| a.subdataset.as_str()).collect::<Vec<_>>(), ["butterfly"]);
}
