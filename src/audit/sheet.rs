//! Contact sheets: one gray PNG per finding (a duplicate cluster, a label conflict) with each
//! video's file name and class next to a few of its frames, so a curator can confirm it by eye.
//!
//! Layout (all sizes in pixels, fixed so sheets of different stores look alike):
//!
//! ```text
//! ┌──────────────────────────────────────────────────────────────────────────┐
//! │ title (one line, elided in the middle)                       TITLE_H     │
//! ├───────────────┬──────┬──────┬──────┬──────┬──────┬──────┬────────────────┤
//! │ caption lines │ tile │ tile │ tile │ tile │ tile │ tile │  ROW_H = GAP + │
//! │ (CAPTION_W)   │      │      │      │      │      │      │  TILE          │
//! ├───────────────┼──────┴──────┴──────┴──────┴──────┴──────┤                │
//! │ …             │ …                                       │                │
//! └──────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Width is always `sheet_size(n).0` = CAPTION_W + MAX_FRAMES × (TILE + GAP) + GAP, whatever
//! the videos; height is TITLE_H + n × ROW_H + GAP for n shown rows. Row r's tile j has its top
//! left corner at `tile_origin(r, j)`. Tiles are TILE × TILE whatever the stored frame size:
//! larger frames are shrunk with a triangle (bilinear) filter, smaller ones enlarged with
//! nearest-neighbour so that single stored pixels stay visible. The PNG is 8-bit gray.

use crate::files::write_atomic;
use image::imageops::{self, FilterType};
use image::{GrayImage, ImageEncoder};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Frames shown per row at most.
pub const MAX_FRAMES: usize = 6;
/// Rows (videos) shown per sheet at most; the title says how many more there were.
pub const MAX_ROWS: usize = 12;
/// Side of one frame tile.
pub const TILE: u32 = 160;
/// Space between tiles, between rows, and around the edges.
pub const GAP: u32 = 4;
/// Width of the caption block left of each row's tiles.
pub const CAPTION_W: u32 = 420;
/// Height of the title band.
pub const TITLE_H: u32 = 36;
/// Height of one row: a tile and the gap above it.
pub const ROW_H: u32 = TILE + GAP;

const TITLE_PX: u32 = 20;
const TEXT_PX: u32 = 15;
const LINE_H: u32 = 19;
const TEXT_PAD: u32 = 8;
/// Caption lines that fit beside one tile; the last becomes "(+N more lines)" when there are more.
const MAX_LINES: usize = ((TILE - TEXT_PAD) / LINE_H) as usize;
const BACKGROUND: u8 = 255;
const CAPTION_BG: u8 = 236;
const EMPTY_TILE: u8 = 200;

/// One video's row of a sheet.
pub struct Row<'a> {
    /// Stored frames of one video (each size×size gray8, row-major, as in the store's payload, docs/store-format.md).
    pub frames: Vec<&'a [u8]>,
    pub size: u32,
    /// Caption lines, e.g. ["pocus/pocus_videos/convex/Cov-Atlas+(44).gif", "class covid-19 · patient -", "12 of 14 frames matched"].
    pub caption: Vec<String>,
}

#[derive(Debug, Error)]
pub enum SheetError {
    #[error("contact sheet {path}: no rows to draw; a sheet needs at least one video")]
    NoRows { path: PathBuf },
    #[error(
        "contact sheet {path}: row {row} frame {frame} has {len} bytes, a {size}×{size} frame has {expected}; pass the store's frames with its frame size"
    )]
    FrameSize { path: PathBuf, row: usize, frame: usize, len: usize, size: u32, expected: usize },
    #[error("contact sheet {path}: cannot draw text: {message}; check that a sans-serif font is installed (scripts/setup.sh installs fonts-dejavu-core)")]
    Draw { path: PathBuf, message: String },
    #[error("contact sheet {path}: cannot encode the PNG: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("cannot write contact sheet {path}: {source}; check that its folder exists and is writable")]
    Write { path: PathBuf, source: std::io::Error },
}

/// (width, height) of a sheet showing `rows` rows (already capped at MAX_ROWS).
pub fn sheet_size(rows: usize) -> (u32, u32) {
    (CAPTION_W + MAX_FRAMES as u32 * (TILE + GAP) + GAP, TITLE_H + rows as u32 * ROW_H + GAP)
}

/// Top-left pixel of tile `j` in shown row `r`.
pub fn tile_origin(r: usize, j: usize) -> (u32, u32) {
    (CAPTION_W + GAP + j as u32 * (TILE + GAP), TITLE_H + GAP + r as u32 * ROW_H)
}

/// Which frames of a video with `n` frames are shown: all when n ≤ MAX_FRAMES, else MAX_FRAMES
/// indices spread evenly from the first frame to the last (both included), rounded down.
pub fn shown_frames(n: usize) -> Vec<usize> {
    if n <= MAX_FRAMES {
        return (0..n).collect();
    }
    (0..MAX_FRAMES).map(|i| i * (n - 1) / (MAX_FRAMES - 1)).collect()
}

/// Writes a contact sheet to `path` (atomically: a temporary file renamed over it).
///
/// One row per video, in the given order: its caption lines on the left (each elided in the
/// middle with "…" when too wide; of more lines than fit (7 at TILE = 160), the last shown says
/// how many more there were), then the frames `shown_frames` picks, left to right. A last caption
/// line, always shown, says which frames these are: "frames a, b, … of n", "all n frames", "its
/// only frame" or "no frames stored". At most MAX_ROWS
/// rows are drawn; when there are more the title ends with "(and N more)". Zero rows is an
/// error (`SheetError::NoRows`): there is nothing for a curator to check.
pub fn contact_sheet(path: &Path, title: &str, rows: &[Row]) -> Result<(), SheetError> {
    if rows.is_empty() {
        return Err(SheetError::NoRows { path: path.to_path_buf() });
    }
    for (r, row) in rows.iter().enumerate() {
        let expected = row.size as usize * row.size as usize;
        if let Some((frame, f)) = row.frames.iter().enumerate().find(|(_, f)| f.len() != expected || expected == 0) {
            return Err(SheetError::FrameSize { path: path.to_path_buf(), row: r, frame, len: f.len(), size: row.size, expected });
        }
    }
    let shown = &rows[..rows.len().min(MAX_ROWS)];
    let more = match rows.len() - shown.len() {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    let (w, h) = sheet_size(shown.len());
    let mut gray = vec![BACKGROUND; w as usize * h as usize];
    let fill = |gray: &mut [u8], x0: u32, y0: u32, ww: u32, hh: u32, v: u8| {
        for y in y0..y0 + hh {
            gray[(y * w + x0) as usize..(y * w + x0 + ww) as usize].fill(v);
        }
    };
    let mut captions = Vec::with_capacity(shown.len());
    for (r, row) in shown.iter().enumerate() {
        let (_, y0) = tile_origin(r, 0);
        fill(&mut gray, GAP, y0, CAPTION_W - GAP, TILE, CAPTION_BG);
        let picks = shown_frames(row.frames.len());
        for (j, &k) in picks.iter().enumerate() {
            let (x, y) = tile_origin(r, j);
            let tile = scale(row.frames[k], row.size);
            for (ty, line) in tile.as_raw().chunks_exact(TILE as usize).enumerate() {
                let at = ((y + ty as u32) * w + x) as usize;
                gray[at..at + TILE as usize].copy_from_slice(line);
            }
        }
        if picks.is_empty() {
            let (x, y) = tile_origin(r, 0);
            fill(&mut gray, x, y, TILE, TILE, EMPTY_TILE);
        }
        let mut lines = row.caption.clone();
        if lines.len() > MAX_LINES - 1 {
            let more = lines.len() - (MAX_LINES - 2);
            lines.truncate(MAX_LINES - 2);
            lines.push(format!("(+{more} more lines)"));
        }
        lines.push(match picks.len() {
            0 => "no frames stored".to_string(),
            1 if row.frames.len() == 1 => "its only frame".to_string(),
            _ if picks.len() == row.frames.len() => format!("all {} frames", row.frames.len()),
            _ => format!("frames {} of {}", picks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "), row.frames.len()),
        });
        captions.push(lines);
    }
    // Text is drawn black on gray with plotters into an RGB copy, which stays gray throughout.
    let mut rgb: Vec<u8> = gray.iter().flat_map(|&v| [v, v, v]).collect();
    draw_text(&mut rgb, (w, h), (title, &more), &captions).map_err(|message| SheetError::Draw { path: path.to_path_buf(), message })?;
    let gray: Vec<u8> = rgb.chunks_exact(3).map(|p| p[0]).collect();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(&mut png, image::codecs::png::CompressionType::Best, image::codecs::png::FilterType::Adaptive)
        .write_image(&gray, w, h, image::ExtendedColorType::L8)
        .map_err(|e| SheetError::Encode { path: path.to_path_buf(), message: e.to_string() })?;
    write_atomic(path, &png).map_err(|source| SheetError::Write { path: path.to_path_buf(), source })
}

/// One frame as a TILE × TILE gray image.
fn scale(frame: &[u8], size: u32) -> GrayImage {
    let img = GrayImage::from_raw(size, size, frame.to_vec()).expect("frame length checked by contact_sheet");
    if size == TILE {
        return img;
    }
    let filter = if size > TILE { FilterType::Triangle } else { FilterType::Nearest };
    imageops::resize(&img, TILE, TILE, filter)
}

/// The title (elided so that `more` always shows) and each row's caption lines.
fn draw_text(rgb: &mut [u8], (w, h): (u32, u32), (title, more): (&str, &str), captions: &[Vec<String>]) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(rgb, (w, h)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let top_left = Pos::new(HPos::Left, VPos::Top);
    let title_style = ("sans-serif", TITLE_PX).into_font().color(&BLACK).pos(top_left);
    let text_style = ("sans-serif", TEXT_PX).into_font().color(&BLACK).pos(top_left);
    let title_width = |s: &str| root.estimate_text_size(s, &title_style).map(|d| d.0).map_err(|e| err(&e));
    let room = (w - 2 * TEXT_PAD).saturating_sub(if more.is_empty() { 0 } else { title_width(more)? });
    let title = elide(title, room, title_width)? + more;
    root.draw_text(&title, &title_style, (TEXT_PAD as i32, ((TITLE_H - TITLE_PX) / 2) as i32)).map_err(|e| err(&e))?;
    for (r, lines) in captions.iter().enumerate() {
        let (_, y0) = tile_origin(r, 0);
        for (i, line) in lines.iter().enumerate() {
            let line = elide(line, CAPTION_W - GAP - 2 * TEXT_PAD, |s| root.estimate_text_size(s, &text_style).map(|d| d.0).map_err(|e| err(&e)))?;
            let y = y0 + TEXT_PAD / 2 + i as u32 * LINE_H;
            root.draw_text(&line, &text_style, ((GAP + TEXT_PAD) as i32, y as i32)).map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

/// `text` if `width` says it fits in `max` pixels, else its start and end around "…", as many
/// characters as fit (the start gets the extra one).
fn elide(text: &str, max: u32, width: impl Fn(&str) -> Result<u32, String>) -> Result<String, String> {
    if width(text)? <= max {
        return Ok(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    let cut = |keep: usize| {
        let head = keep.div_ceil(2);
        let mut s: String = chars[..head].iter().collect();
        s.push('…');
        s.extend(&chars[chars.len() - (keep - head)..]);
        s
    };
    // Largest `keep` in 0..len whose cut fits (cut(0) is "…" alone, kept even if it does not).
    let (mut lo, mut hi) = (0, chars.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if width(&cut(mid))? <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(cut(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A size×size black frame with a white square over [a, b) in both directions.
    fn square(size: u32, a: u32, b: u32) -> Vec<u8> {
        let mut f = vec![0u8; (size * size) as usize];
        for y in a..b {
            for x in a..b {
                f[(y * size + x) as usize] = 255;
            }
        }
        f
    }

    fn read(path: &Path) -> GrayImage {
        image::open(path).unwrap().into_luma8()
    }

    #[test]
    fn three_rows_have_the_documented_layout_and_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sheet.png");
        // Row 0: 16 px frames, square at [4, 12) → tile [40, 120); 3 frames, all shown.
        let small = square(16, 4, 12);
        // Row 1: 320 px frames (shrunk by 2), 10 frames; frame k is black with value k*20 at
        // its top-left 4×4 (the triangle filter reads 3 source pixels for one tile pixel), so which frame landed in which tile can be read off.
        let big: Vec<Vec<u8>> = (0..10)
            .map(|k| {
                let mut f = square(320, 80, 240);
                for y in 0..4 {
                    f[y * 320..y * 320 + 4].fill(k as u8 * 20);
                }
                f
            })
            .collect();
        // Row 2: 160 px (copied as is), no caption, one frame.
        let same = square(160, 10, 20);
        let rows = vec![
            Row { frames: vec![&small; 3], size: 16, caption: vec!["a/b.gif".into(), "class covid-19".into()] },
            Row { frames: big.iter().map(|f| f.as_slice()).collect(), size: 320, caption: vec!["c.mp4".into()] },
            Row { frames: vec![&same], size: 160, caption: vec![] },
        ];
        contact_sheet(&path, "cluster 1", &rows).unwrap();
        let img = read(&path);
        assert_eq!((img.width(), img.height()), sheet_size(3));
        assert_eq!(sheet_size(3), (420 + 6 * 164 + 4, 36 + 3 * 164 + 4));
        let px = |r: usize, j: usize, x: u32, y: u32| {
            let (x0, y0) = tile_origin(r, j);
            img.get_pixel(x0 + x, y0 + y).0[0]
        };
        for j in 0..3 {
            assert_eq!([px(0, j, 39, 39), px(0, j, 40, 40), px(0, j, 119, 119), px(0, j, 120, 80)], [0, 255, 255, 0], "row 0 tile {j}");
        }
        // Only 3 frames: tiles 3..6 of row 0 stay background.
        assert_eq!(px(0, 3, 80, 80), BACKGROUND);
        // Row 1 shows frames 0, 1, 3, 5, 7, 9 (shown_frames(10)); 320 → 160 halves: square at [40, 120).
        assert_eq!(shown_frames(10), vec![0, 1, 3, 5, 7, 9]);
        for (j, k) in shown_frames(10).into_iter().enumerate() {
            assert!(px(1, j, 0, 0).abs_diff(k as u8 * 20) <= 1, "row 1 tile {j} shows frame {k}: {}", px(1, j, 0, 0));
            assert_eq!([px(1, j, 30, 30), px(1, j, 50, 50), px(1, j, 110, 110), px(1, j, 130, 130)], [0, 255, 255, 0]);
        }
        for (x, y) in [(9, 9), (10, 10), (19, 19), (20, 20)] {
            assert_eq!(px(2, 0, x, y), same[(y * 160 + x) as usize]);
        }
        // Caption blocks hold dark text pixels (the caption background is CAPTION_BG); every row
        // has at least the "frames" line, row 2 only that one.
        let dark = |r: usize, lines: std::ops::Range<u32>| {
            let (_, y0) = tile_origin(r, 0);
            let ys = y0 + TEXT_PAD / 2 + lines.start * LINE_H..y0 + TEXT_PAD / 2 + lines.end * LINE_H;
            ys.flat_map(|y| (GAP..CAPTION_W).map(move |x| (x, y))).filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100).count()
        };
        assert!(dark(0, 0..1) > 20 && dark(0, 1..2) > 20 && dark(0, 2..3) > 20, "row 0 caption lines");
        assert!(dark(2, 0..1) > 20, "row 2 frames line");
        assert_eq!(dark(2, 1..MAX_LINES as u32), 0, "row 2 has one line");
        assert!(dark(0, 3..MAX_LINES as u32) == 0);
        // The title band has text.
        let title_dark = (0..TITLE_H).flat_map(|y| (0..400).map(move |x| (x, y))).filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100).count();
        assert!(title_dark > 20);
    }

    #[test]
    fn rows_beyond_the_cap_are_counted_not_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many.png");
        let f = square(8, 2, 6);
        let rows: Vec<Row> = (0..MAX_ROWS + 3).map(|i| Row { frames: vec![&f], size: 8, caption: vec![format!("v{i}")] }).collect();
        contact_sheet(&path, "many", &rows).unwrap();
        let img = read(&path);
        assert_eq!((img.width(), img.height()), sheet_size(MAX_ROWS));
    }

    #[test]
    fn long_captions_keep_the_frames_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.png");
        let f = square(8, 2, 6);
        let caption: Vec<String> = (0..20).map(|i| format!("line {i} {}", "x".repeat(200))).collect();
        contact_sheet(&path, &"title ".repeat(100), &[Row { frames: vec![&f; 2], size: 8, caption }]).unwrap();
        let img = read(&path);
        let (_, y0) = tile_origin(0, 0);
        // Every one of the MAX_LINES slots holds text (6 caption lines, "(+14 more lines)", "all 2
        // frames"), and no line runs into the tiles: elided lines end before CAPTION_W.
        for i in 0..MAX_LINES as u32 {
            let ys = y0 + TEXT_PAD / 2 + i * LINE_H..y0 + TEXT_PAD / 2 + (i + 1) * LINE_H;
            let n = ys.flat_map(|y| (GAP..CAPTION_W).map(move |x| (x, y))).filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100).count();
            assert!(n > 20, "caption line {i} has {n} dark pixels");
        }
        let (x0, _) = tile_origin(0, 0);
        assert!((CAPTION_W - TEXT_PAD..x0).all(|x| (y0..y0 + TILE).all(|y| img.get_pixel(x, y).0[0] >= CAPTION_BG)));
    }

    #[test]
    fn bad_input_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let e = contact_sheet(&path, "none", &[]).unwrap_err();
        assert!(matches!(e, SheetError::NoRows { .. }) && e.to_string().contains("bad.png"));
        let f = vec![0u8; 15];
        let e = contact_sheet(&path, "short", &[Row { frames: vec![&f], size: 4, caption: vec![] }]).unwrap_err();
        assert!(matches!(e, SheetError::FrameSize { row: 0, frame: 0, len: 15, expected: 16, .. }), "{e}");
        assert!(!path.exists());
        let e = contact_sheet(&dir.path().join("no/such/dir.png"), "t", &[Row { frames: vec![], size: 4, caption: vec![] }]).unwrap_err();
        assert!(matches!(e, SheetError::Write { .. }) && e.to_string().contains("no/such/dir.png"));
    }

    #[test]
    fn shown_frames_spread_from_first_to_last() {
        assert_eq!(shown_frames(0), Vec::<usize>::new());
        assert_eq!(shown_frames(4), vec![0, 1, 2, 3]);
        assert_eq!(shown_frames(6), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(shown_frames(7), vec![0, 1, 2, 3, 4, 6]);
        assert_eq!(shown_frames(101), vec![0, 20, 40, 60, 80, 100]);
    }

    #[test]
    fn elide_keeps_both_ends() {
        // One pixel per character.
        let w = |s: &str| Ok(s.chars().count() as u32);
        assert_eq!(elide("abcdefgh", 8, w).unwrap(), "abcdefgh");
        assert_eq!(elide("abcdefgh", 7, w).unwrap(), "abc…fgh");
        assert_eq!(elide("abcdefgh", 6, w).unwrap(), "abc…gh");
        assert_eq!(elide("abcdefgh", 1, w).unwrap(), "…");
        assert_eq!(elide("abcdefgh", 0, w).unwrap(), "…");
    }
}
