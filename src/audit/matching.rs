//! Which videos are copies of each other (docs/AUDIT.md, "Matching rule"). Pure: frames come in as
//! (video, perceptual hash) and digests, links and clusters come out; `corpus.rs` feeds it stores.
//!
//! - Two frames *match* when their pHashes differ in at most `radius` bits, or `still_radius` when
//!   the shorter of the two videos has fewer than 3 frames (a still image has no time order to
//!   agree on, and one image against a long video gets as many chances as the video has frames).
//!   A hash of 0 (a flat frame: black, or one grey level) matches nothing.
//! - Two videos are *near-duplicates* when enough of their frames match **in time order**: for the
//!   best time offset between them, counting each frame of the first that matches a frame of the
//!   second at that offset ±1 sampled frame, at least `share` of the shorter video's frames and at
//!   least min(3, its frame count) match. Sampling is by timestamp, so copies line up at one offset
//!   whatever their frame rates; distinct clips that look alike now and then do not.
//! - Identical source bytes or identical stored frames link two videos whatever the rule says.
//! - Duplicate clusters are the connected components of those links (union-find).

use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Largest Hamming distance (of 63 bits) at which two frames match.
    pub radius: u32,
    /// The same when the shorter video has fewer than 3 frames (still images).
    pub still_radius: u32,
    /// Share of the shorter video's frames that must match in time order.
    pub share: f64,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule { radius: 10, still_radius: 8, share: 0.5 }
    }
}

/// One video as the matcher sees it: its frames' pHashes in time order and its digests.
#[derive(Debug, Clone, Default)]
pub struct Clip {
    pub phashes: Vec<u64>,
    pub source_sha256: Option<String>,
    /// sha256 of each stored frame's pixels, in time order (frames.parquet's `pixels_sha256`).
    pub frame_sha256: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// The same source file bytes.
    SameSource,
    /// Other source bytes, but every stored frame of the shorter video (flat frames aside) is
    /// also, pixel for pixel, a stored frame of the other: a still taken from a video, a trimmed
    /// copy, a re-encode that decodes identically.
    SameFrames,
    /// Frames that match in time order (the rule above).
    Near,
}

/// A link between clips `a < b` (indices into the slice given to `links`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub a: usize,
    pub b: usize,
    pub why: Why,
    /// Frames of the shorter clip matched in time order, and its frame count.
    pub matched: usize,
    pub of: usize,
}

/// Two clips (a < b) and one of their matching frame pairs: (frame of a, frame of b, distance).
type FrameMatch = ((usize, usize), FrameMatchOf);
/// (frame of a, frame of b, Hamming distance).
type FrameMatchOf = (usize, usize, u32);

/// Number of frames of `a` matched at the best offset, given all matching frame pairs (ka, kb).
pub fn aligned_count(matches: &[(usize, usize)]) -> usize {
    let mut per_offset: HashMap<i64, BTreeSet<usize>> = HashMap::new();
    for &(ka, kb) in matches {
        let d = ka as i64 - kb as i64;
        for offset in d - 1..=d + 1 {
            per_offset.entry(offset).or_default().insert(ka);
        }
    }
    per_offset.values().map(BTreeSet::len).max().unwrap_or(0)
}

/// Whether `matched` frames in order make clips of `na` and `nb` frames near-duplicates.
pub fn enough(matched: usize, na: usize, nb: usize, share: f64) -> bool {
    let n = na.min(nb);
    n > 0 && matched as f64 >= (share * n as f64).max(1.0) && matched >= n.min(3)
}

/// Every link between the clips, sorted by (a, b, why); at most one per pair, the strongest reason.
pub fn links(clips: &[Clip], rule: Rule) -> Vec<Link> {
    // (clip, frame index, hash) of every informative frame.
    let frames: Vec<(usize, usize, u64)> =
        clips.iter().enumerate().flat_map(|(c, clip)| clip.phashes.iter().enumerate().filter(|(_, &h)| h != 0).map(move |(k, &h)| (c, k, h))).collect();
    let widest = rule.radius.max(rule.still_radius);
    let pairs: Vec<FrameMatch> = (0..frames.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let (ca, ka, ha) = frames[i];
            frames[i + 1..]
                .iter()
                .map(move |&(cb, kb, hb)| (cb, kb, (ha ^ hb).count_ones()))
                .filter(move |&(cb, _, d)| cb != ca && d <= widest)
                .map(move |(cb, kb, d)| ((ca, cb), (ka, kb, d)))
        })
        .collect();
    let mut matches: BTreeMap<(usize, usize), Vec<FrameMatchOf>> = BTreeMap::new();
    for ((ca, cb), m) in pairs {
        // Frames are listed clip by clip, so ca < cb here.
        matches.entry((ca, cb)).or_default().push(m);
    }
    let mut out: BTreeMap<(usize, usize), Link> = BTreeMap::new();
    for ((a, b), m) in matches {
        let (na, nb) = (clips[a].phashes.len(), clips[b].phashes.len());
        let radius = if na.min(nb) < 3 { rule.still_radius } else { rule.radius };
        let m: Vec<(usize, usize)> = m.into_iter().filter(|&(_, _, d)| d <= radius).map(|(ka, kb, _)| (ka, kb)).collect();
        // Count on the shorter clip's side.
        let matched = if na <= nb { aligned_count(&m) } else { aligned_count(&m.iter().map(|&(x, y)| (y, x)).collect::<Vec<_>>()) };
        if enough(matched, na, nb, rule.share) {
            out.insert((a, b), Link { a, b, why: Why::Near, matched, of: na.min(nb) });
        }
    }
    for (a, b) in same_frames(clips) {
        let of = clips[a].phashes.len().min(clips[b].phashes.len());
        out.insert((a, b), Link { a, b, why: Why::SameFrames, matched: of, of });
    }
    {
        let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, c) in clips.iter().enumerate() {
            if let Some(k) = &c.source_sha256 {
                by.entry(k).or_default().push(i);
            }
        }
        for group in by.values() {
            for (x, &a) in group.iter().enumerate() {
                for &b in &group[x + 1..] {
                    let of = clips[a].phashes.len().min(clips[b].phashes.len());
                    // The strongest reason replaces the others.
                    out.insert((a, b), Link { a, b, why: Why::SameSource, matched: of, of });
                }
            }
        }
    }
    out.into_values().collect()
}

/// Pairs (a < b) in which every informative frame of the shorter clip (pHash not 0) is, by
/// digest, a frame of the other; a clip with no informative frame pairs with nothing.
fn same_frames(clips: &[Clip]) -> Vec<(usize, usize)> {
    let mut holders: HashMap<&str, BTreeSet<usize>> = HashMap::new();
    for (c, clip) in clips.iter().enumerate() {
        for (d, &h) in clip.frame_sha256.iter().zip(&clip.phashes) {
            if h != 0 {
                holders.entry(d.as_str()).or_default().insert(c);
            }
        }
    }
    let mut out = Vec::new();
    for (a, clip) in clips.iter().enumerate() {
        let frames: Vec<&str> = clip.frame_sha256.iter().zip(&clip.phashes).filter(|(_, &h)| h != 0).map(|(d, _)| d.as_str()).collect();
        let Some(first) = frames.first() else { continue };
        // Candidates hold a's first frame; keep those holding every frame of a, when a is the shorter.
        for &b in holders[first].iter().filter(|&&b| b != a) {
            let shorter = clip.phashes.len() < clips[b].phashes.len() || (clip.phashes.len() == clips[b].phashes.len() && a < b);
            if shorter && frames.iter().all(|d| holders[d].contains(&b)) {
                out.push((a.min(b), a.max(b)));
            }
        }
    }
    out
}

/// Connected components of the links over `n` clips: `cluster[i]` numbers clip i's component,
/// in order of each component's first clip; clips without links are components of one.
pub fn components(n: usize, links: &[Link]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for l in links {
        let (ra, rb) = (root(&mut parent, l.a), root(&mut parent, l.b));
        // The smaller index stays the root, so a component is named by its first clip.
        parent[ra.max(rb)] = ra.min(rb);
    }
    let mut number: HashMap<usize, usize> = HashMap::new();
    (0..n)
        .map(|i| {
            let r = root(&mut parent, i);
            let next = number.len();
            *number.entry(r).or_insert(next)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(phashes: &[u64]) -> Clip {
        Clip { phashes: phashes.to_vec(), ..Default::default() }
    }

    /// The rule written out directly: every offset, every frame, every candidate.
    fn naive_aligned(a: &[u64], b: &[u64], radius: u32) -> usize {
        let m = |x: u64, y: u64| x != 0 && y != 0 && (x ^ y).count_ones() <= radius;
        let mut best = 0;
        for d in -(b.len() as i64) - 1..=a.len() as i64 + 1 {
            let count = (0..a.len())
                .filter(|&k| {
                    (-1..=1).any(|j| {
                        let kb = k as i64 - d + j;
                        kb >= 0 && (kb as usize) < b.len() && m(a[k], b[kb as usize])
                    })
                })
                .count();
            best = best.max(count);
        }
        best
    }

    #[test]
    fn links_equal_the_naive_rule_on_random_clips() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for round in 0..30 {
            // A few base sequences; clips copy pieces of them with bit noise, so matches are common.
            let bases: Vec<Vec<u64>> = (0..3).map(|_| (0..12).map(|_| rng.gen::<u64>() >> 1).collect()).collect();
            let clips: Vec<Clip> = (0..8)
                .map(|_| {
                    let base = &bases[rng.gen_range(0..3)];
                    let start = rng.gen_range(0..6);
                    let len = rng.gen_range(1..7);
                    clip(
                        &base[start..start + len]
                            .iter()
                            .map(|&h| if rng.gen_bool(0.7) { h ^ (1 << rng.gen_range(0..63)) } else { rng.gen::<u64>() >> 1 })
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            let rule = Rule { radius: 3, still_radius: 2, share: 0.5 };
            let got: BTreeSet<(usize, usize)> = links(&clips, rule).iter().map(|l| (l.a, l.b)).collect();
            let mut want = BTreeSet::new();
            for a in 0..clips.len() {
                for b in a + 1..clips.len() {
                    let (pa, pb) = (&clips[a].phashes, &clips[b].phashes);
                    let r = if pa.len().min(pb.len()) < 3 { 2 } else { 3 };
                    let matched = if pa.len() <= pb.len() { naive_aligned(pa, pb, r) } else { naive_aligned(pb, pa, r) };
                    if enough(matched, pa.len(), pb.len(), 0.5) {
                        want.insert((a, b));
                    }
                }
            }
            assert_eq!(got, want, "round {round}");
        }
    }

    #[test]
    fn time_order_matters_and_flat_frames_match_nothing() {
        let (x, y, z, w) = (0b1011u64 << 20, 0b1101u64 << 30, 0b111u64 << 40, 0b11u64 << 50);
        // Same frames in the same order: a copy.
        assert_eq!(links(&[clip(&[x, y, z, w]), clip(&[x, y, z, w])], Rule::default()).len(), 1);
        // Same frames, scrambled order: each matches somewhere, but never 2 at one offset.
        let scrambled = [clip(&[x, y, z, w, 1 << 5, 1 << 6]), clip(&[w, 1 << 7, 1 << 8, z, 1 << 9, 1 << 10, y, 1 << 11, 1 << 12, x])];
        assert!(links(&scrambled, Rule { radius: 0, still_radius: 0, share: 0.5 }).is_empty());
        // Black frames (hash 0) everywhere link nothing.
        assert!(links(&[clip(&[0, 0, 0]), clip(&[0, 0, 0])], Rule::default()).is_empty());
        // A still image matches a frame of a video, within the still radius only.
        let rule = Rule { radius: 10, still_radius: 1, share: 0.5 };
        assert_eq!(links(&[clip(&[y]), clip(&[x, y ^ 1, z])], rule)[0].matched, 1);
        assert!(links(&[clip(&[y]), clip(&[x, y ^ 3, z])], rule).is_empty());
        assert_eq!(links(&[clip(&[x, y, z]), clip(&[x ^ 3, y ^ 3, z ^ 3])], rule).len(), 1);
    }

    #[test]
    fn digests_link_whatever_the_frames_and_the_strongest_reason_wins() {
        let d = |s: &str| Some(s.to_string());
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Hashes far apart, so only digests can link.
        let clip = |p: &[u64], s: &str, frames: &[&str]| Clip { phashes: p.to_vec(), source_sha256: d(s), frame_sha256: f(frames) };
        let clips = [
            clip(&[1 << 3, 1 << 4], "s1", &["x", "y"]),
            clip(&[1 << 9, 1 << 10], "s1", &["x", "y"]),
            clip(&[1 << 20, 1 << 21, 1 << 22], "s2", &["w", "x", "y"]),
            // A still that is one of those frames, pixel for pixel.
            clip(&[1 << 30], "s3", &["y"]),
            // Shares one frame of two: not the same frames.
            clip(&[1 << 40, 1 << 41], "s4", &["x", "z"]),
            // A flat frame (hash 0) shared by everything links nothing.
            clip(&[0], "s5", &["x"]),
        ];
        let got: Vec<(usize, usize, Why)> = links(&clips, Rule { radius: 0, still_radius: 0, share: 0.5 }).iter().map(|l| (l.a, l.b, l.why)).collect();
        assert_eq!(
            got,
            vec![
                (0, 1, Why::SameSource),
                (0, 2, Why::SameFrames),
                (0, 3, Why::SameFrames),
                (1, 2, Why::SameFrames),
                (1, 3, Why::SameFrames),
                (2, 3, Why::SameFrames)
            ]
        );
    }

    #[test]
    fn components_are_numbered_by_their_first_member() {
        let l = |a, b| Link { a, b, why: Why::Near, matched: 1, of: 1 };
        assert_eq!(components(6, &[l(3, 5), l(1, 5), l(0, 2)]), vec![0, 1, 0, 1, 2, 1]);
        assert_eq!(components(3, &[]), vec![0, 1, 2]);
    }

    #[test]
    fn enough_needs_half_of_the_shorter_and_three_frames() {
        assert!(enough(1, 1, 40, 0.5));
        assert!(enough(3, 6, 6, 0.5));
        assert!(!enough(2, 4, 9, 0.5), "2 of 4 is half, but fewer than 3 frames");
        assert!(enough(2, 2, 9, 0.5));
        assert!(!enough(4, 10, 10, 0.5));
        assert!(!enough(0, 0, 5, 0.5));
    }
}
