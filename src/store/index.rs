//! The store's Parquet index (docs/store-format.md): `frames.parquet` (one row per stored frame),
//! `videos.parquet` (one row per manifest entry, including the ones that were skipped) and, from
//! format 4, `masks.parquet` (one row per mask file of a stored frame).
//! This is the only file that touches the Parquet library. It uses the `parquet` crate's
//! low-level column API and no Arrow, so the build carries a single, small columnar stack.

use crate::error::StoreError;
use parquet::basic::{Compression, Encoding, Repetition};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

pub const FRAMES_SCHEMA: &str = "message frames {
  required int64 frame_row;
  required int32 video_id;
  required double time_s;
  required int64 source_index;
  required int64 pts;
  required binary pixels_sha256 (STRING);
  required int64 phash;
}";

/// frames.parquet of store formats 1 and 2: no frame hashes.
pub const FRAMES_SCHEMA_V2: &str = "message frames {
  required int64 frame_row;
  required int32 video_id;
  required double time_s;
  required int64 source_index;
  required int64 pts;
}";

pub const VIDEOS_SCHEMA: &str = "message videos {
  required int32 video_id;
  required binary subdataset (STRING);
  required binary source_path (STRING);
  required binary kind (STRING);
  optional binary class_name (STRING);
  optional int32 class_index;
  optional binary patient_id (STRING);
  optional int64 source_bytes;
  optional binary source_sha256 (STRING);
  optional int32 width;
  optional int32 height;
  optional double duration_s;
  optional double native_fps;
  required int64 frames_decoded;
  required int64 frames_kept;
  required int64 first_frame_row;
  optional binary payload_sha256 (STRING);
  required binary status (STRING);
  optional binary message (STRING);
}";

/// masks.parquet (format 4): one row per mask file of an annotated frame, in frame order, then
/// mask order.
pub const MASKS_SCHEMA: &str = "message masks {
  required int64 frame_row;
  required int32 video_id;
  required int32 mask_index;
  required binary source_path (STRING);
  required binary source_sha256 (STRING);
  required int64 source_pixels;
  required int64 pixels;
  optional int64 instance;
  optional int32 bbox_x;
  optional int32 bbox_y;
  optional int32 bbox_w;
  optional int32 bbox_h;
}";

/// One mask file of a stored frame (format 4). A file whose stored mask has lesion pixels is an
/// instance (`instance`: its position in masks.u8, `bbox` its bounding box); an empty one is
/// recorded with neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRow {
    pub frame_row: i64,
    pub video_id: i32,
    /// 0-based position among the frame's mask files (file-name order).
    pub mask_index: i32,
    /// Path of the mask file relative to --raw.
    pub source_path: String,
    pub source_sha256: String,
    /// Lesion (nonzero) pixels in the source mask.
    pub source_pixels: i64,
    /// Lesion pixels in the stored S×S mask.
    pub pixels: i64,
    pub instance: Option<i64>,
    /// x, y, w, h in stored coordinates (w, h count pixels: max − min + 1).
    pub bbox: Option<[i32; 4]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrameRow {
    pub frame_row: i64,
    pub video_id: i32,
    /// Seconds since the video's first frame.
    pub time_s: f64,
    /// Index of the frame among all decoded frames of its video.
    pub source_index: i64,
    /// Presentation timestamp in the stream's time base.
    pub pts: i64,
    /// Format 3: sha256 of the frame's stored pixels and its perceptual hash (`crate::phash`);
    /// None when read from a format 1 or 2 version, which has neither.
    pub hashes: Option<FrameHashes>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrameHashes {
    pub pixels_sha256: String,
    pub phash: u64,
}

impl FrameHashes {
    pub fn of(pixels: &[u8], size: usize) -> FrameHashes {
        FrameHashes { pixels_sha256: crate::hash::sha256_hex(pixels), phash: crate::phash::phash(pixels, size) }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoRow {
    pub video_id: i32,
    pub subdataset: String,
    pub source_path: String,
    /// "video" or "image".
    pub kind: String,
    pub class_name: Option<String>,
    pub class_index: Option<i32>,
    pub patient_id: Option<String>,
    pub source_bytes: Option<i64>,
    pub source_sha256: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_s: Option<f64>,
    pub native_fps: Option<f64>,
    pub frames_decoded: i64,
    pub frames_kept: i64,
    pub first_frame_row: i64,
    pub payload_sha256: Option<String>,
    /// ok | partial | failed | missing
    pub status: String,
    pub message: Option<String>,
}

enum Column {
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { path: path.to_path_buf(), message: e.to_string() }
}

/// A failure while writing a table is the disk's or the folder's (full, read-only, gone), never a
/// damaged store: an I/O error naming the file, with the operating system's reason when there is one.
fn write_error(path: &Path, e: impl Into<ParquetError>) -> StoreError {
    let source = match e.into() {
        ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => *io,
            Err(other) => std::io::Error::other(other),
        },
        other => std::io::Error::other(other),
    };
    StoreError::Io { path: path.to_path_buf(), source }
}

/// Non-null values plus definition levels (1 = present) for an optional column.
fn split<T: Clone>(v: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
    (v.iter().flatten().cloned().collect(), v.iter().map(|x| x.is_some() as i16).collect())
}

fn write_table(path: &Path, schema: &str, columns: Vec<Column>) -> Result<(), StoreError> {
    let schema = Arc::new(parse_message_type(schema).map_err(|e| write_error(path, e))?);
    let optional: Vec<bool> = schema.get_fields().iter().map(|f| f.get_basic_info().repetition() == Repetition::OPTIONAL).collect();
    if optional.len() != columns.len() {
        return Err(write_error(path, ParquetError::General("schema and data disagree on the number of columns".into())));
    }
    // Fixed writer identity and plain settings: the bytes depend on the data alone, which the
    // golden-bytes test pins.
    let props = WriterProperties::builder()
        .set_created_by(format!("usctl store format {}", super::FORMAT_VERSION))
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_encoding(Encoding::PLAIN)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build();
    let file = std::fs::File::create(path).map_err(StoreError::io(path))?;
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props)).map_err(|e| write_error(path, e))?;
    let mut group = writer.next_row_group().map_err(|e| write_error(path, e))?;
    for (data, optional) in columns.iter().zip(optional) {
        let mut col = group
            .next_column()
            .map_err(|e| write_error(path, e))?
            .ok_or_else(|| write_error(path, ParquetError::General("schema has fewer columns than data".into())))?;
        let r = match data {
            Column::I32(v) => {
                let (vals, defs) = split(v);
                col.typed::<Int32Type>().write_batch(&vals, optional.then_some(&defs[..]), None)
            }
            Column::I64(v) => {
                let (vals, defs) = split(v);
                col.typed::<Int64Type>().write_batch(&vals, optional.then_some(&defs[..]), None)
            }
            Column::F64(v) => {
                let (vals, defs) = split(v);
                col.typed::<DoubleType>().write_batch(&vals, optional.then_some(&defs[..]), None)
            }
            Column::Str(v) => {
                let (vals, defs) = split(v);
                let vals: Vec<ByteArray> = vals.into_iter().map(|s| ByteArray::from(s.into_bytes())).collect();
                col.typed::<ByteArrayType>().write_batch(&vals, optional.then_some(&defs[..]), None)
            }
        };
        r.map_err(|e| write_error(path, e))?;
        col.close().map_err(|e| write_error(path, e))?;
    }
    group.close().map_err(|e| write_error(path, e))?;
    let file = writer.into_inner().map_err(|e| write_error(path, e))?;
    file.sync_all().map_err(StoreError::io(path))
}

/// Writes frames.parquet: the current layout when every row carries its hashes, the layout of
/// formats 1 and 2 when none does (how tests make old versions); a mix is refused.
pub fn write_frames(path: &Path, rows: &[FrameRow]) -> Result<(), StoreError> {
    let col = |f: fn(&FrameRow) -> i64| Column::I64(rows.iter().map(|r| Some(f(r))).collect());
    let mut columns = vec![
        col(|r| r.frame_row),
        Column::I32(rows.iter().map(|r| Some(r.video_id)).collect()),
        Column::F64(rows.iter().map(|r| Some(r.time_s)).collect()),
        col(|r| r.source_index),
        col(|r| r.pts),
    ];
    let hashes: Vec<&FrameHashes> = rows.iter().filter_map(|r| r.hashes.as_ref()).collect();
    if hashes.is_empty() && !rows.is_empty() {
        return write_table(path, FRAMES_SCHEMA_V2, columns);
    }
    if hashes.len() != rows.len() {
        return Err(write_error(path, ParquetError::General("some frame rows have hashes and some do not".into())));
    }
    columns.push(Column::Str(hashes.iter().map(|h| Some(h.pixels_sha256.clone())).collect()));
    // The 63-bit hash fits an int64 unchanged (bit 63 is always 0).
    columns.push(Column::I64(hashes.iter().map(|h| Some(h.phash as i64)).collect()));
    write_table(path, FRAMES_SCHEMA, columns)
}

pub fn write_videos(path: &Path, rows: &[VideoRow]) -> Result<(), StoreError> {
    let s = |f: fn(&VideoRow) -> Option<String>| Column::Str(rows.iter().map(f).collect());
    let i32s = |f: fn(&VideoRow) -> Option<i32>| Column::I32(rows.iter().map(f).collect());
    let i64s = |f: fn(&VideoRow) -> Option<i64>| Column::I64(rows.iter().map(f).collect());
    let f64s = |f: fn(&VideoRow) -> Option<f64>| Column::F64(rows.iter().map(f).collect());
    write_table(
        path,
        VIDEOS_SCHEMA,
        vec![
            i32s(|r| Some(r.video_id)),
            s(|r| Some(r.subdataset.clone())),
            s(|r| Some(r.source_path.clone())),
            s(|r| Some(r.kind.clone())),
            s(|r| r.class_name.clone()),
            i32s(|r| r.class_index),
            s(|r| r.patient_id.clone()),
            i64s(|r| r.source_bytes),
            s(|r| r.source_sha256.clone()),
            i32s(|r| r.width),
            i32s(|r| r.height),
            f64s(|r| r.duration_s),
            f64s(|r| r.native_fps),
            i64s(|r| Some(r.frames_decoded)),
            i64s(|r| Some(r.frames_kept)),
            i64s(|r| Some(r.first_frame_row)),
            s(|r| r.payload_sha256.clone()),
            s(|r| Some(r.status.clone())),
            s(|r| r.message.clone()),
        ],
    )
}

pub fn write_masks(path: &Path, rows: &[MaskRow]) -> Result<(), StoreError> {
    let bbox = |k: usize| Column::I32(rows.iter().map(|r| r.bbox.map(|b| b[k])).collect());
    write_table(
        path,
        MASKS_SCHEMA,
        vec![
            Column::I64(rows.iter().map(|r| Some(r.frame_row)).collect()),
            Column::I32(rows.iter().map(|r| Some(r.video_id)).collect()),
            Column::I32(rows.iter().map(|r| Some(r.mask_index)).collect()),
            Column::Str(rows.iter().map(|r| Some(r.source_path.clone())).collect()),
            Column::Str(rows.iter().map(|r| Some(r.source_sha256.clone())).collect()),
            Column::I64(rows.iter().map(|r| Some(r.source_pixels)).collect()),
            Column::I64(rows.iter().map(|r| Some(r.pixels)).collect()),
            Column::I64(rows.iter().map(|r| r.instance).collect()),
            bbox(0),
            bbox(1),
            bbox(2),
            bbox(3),
        ],
    )
}

pub fn read_masks(path: &Path) -> Result<Vec<MaskRow>, StoreError> {
    read_table(path, MASKS_SCHEMA, |f| {
        let b = [int(&f[8])?, int(&f[9])?, int(&f[10])?, int(&f[11])?];
        let bbox = match b {
            [Some(x), Some(y), Some(w), Some(h)] => Some([x, y, w, h]),
            [None, None, None, None] => None,
            _ => return None,
        };
        Some(MaskRow {
            frame_row: long(&f[0])??,
            video_id: int(&f[1])??,
            mask_index: int(&f[2])??,
            source_path: string(&f[3])??,
            source_sha256: string(&f[4])??,
            source_pixels: long(&f[5])??,
            pixels: long(&f[6])??,
            instance: long(&f[7])?,
            bbox,
        })
    })
}

/// Reads every row of a table whose column names must equal those of `schema`, in order.
fn read_table<T>(path: &Path, schema: &str, mut row: impl FnMut(&[Field]) -> Option<T>) -> Result<Vec<T>, StoreError> {
    let expected = parse_message_type(schema).map_err(|e| corrupt(path, e))?;
    let file = std::fs::File::open(path).map_err(StoreError::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(|e| corrupt(path, e))?;
    let names = |t: &parquet::schema::types::Type| t.get_fields().iter().map(|f| f.name().to_string()).collect::<Vec<_>>();
    let found = names(reader.metadata().file_metadata().schema());
    if found != names(&expected) {
        return Err(corrupt(path, format!("columns {found:?} differ from the store format's {:?}", names(&expected))));
    }
    let mut out = Vec::with_capacity(reader.metadata().file_metadata().num_rows().max(0) as usize);
    for (i, r) in reader.get_row_iter(None).map_err(|e| corrupt(path, e))?.enumerate() {
        let r = r.map_err(|e| corrupt(path, e))?;
        let fields: Vec<Field> = r.into_columns().into_iter().map(|(_, f)| f).collect();
        out.push(row(&fields).ok_or_else(|| corrupt(path, format!("row {i} has a value of the wrong type")))?);
    }
    Ok(out)
}

fn int(f: &Field) -> Option<Option<i32>> {
    match f {
        Field::Int(v) => Some(Some(*v)),
        Field::Null => Some(None),
        _ => None,
    }
}

fn long(f: &Field) -> Option<Option<i64>> {
    match f {
        Field::Long(v) => Some(Some(*v)),
        Field::Null => Some(None),
        _ => None,
    }
}

fn double(f: &Field) -> Option<Option<f64>> {
    match f {
        Field::Double(v) => Some(Some(*v)),
        Field::Null => Some(None),
        _ => None,
    }
}

fn string(f: &Field) -> Option<Option<String>> {
    match f {
        Field::Str(v) => Some(Some(v.clone())),
        Field::Null => Some(None),
        _ => None,
    }
}

/// Reads frames.parquet of a version of `format_version`: formats 1 and 2 have no hash columns.
pub fn read_frames(path: &Path, format_version: u32) -> Result<Vec<FrameRow>, StoreError> {
    let hashed = format_version >= 3;
    read_table(path, if hashed { FRAMES_SCHEMA } else { FRAMES_SCHEMA_V2 }, |f| {
        let hashes = match hashed {
            true => Some(FrameHashes { pixels_sha256: string(&f[5])??, phash: long(&f[6])?? as u64 }),
            false => None,
        };
        Some(FrameRow { frame_row: long(&f[0])??, video_id: int(&f[1])??, time_s: double(&f[2])??, source_index: long(&f[3])??, pts: long(&f[4])??, hashes })
    })
}

pub fn read_videos(path: &Path) -> Result<Vec<VideoRow>, StoreError> {
    read_table(path, VIDEOS_SCHEMA, |f| {
        Some(VideoRow {
            video_id: int(&f[0])??,
            subdataset: string(&f[1])??,
            source_path: string(&f[2])??,
            kind: string(&f[3])??,
            class_name: string(&f[4])?,
            class_index: int(&f[5])?,
            patient_id: string(&f[6])?,
            source_bytes: long(&f[7])?,
            source_sha256: string(&f[8])?,
            width: int(&f[9])?,
            height: int(&f[10])?,
            duration_s: double(&f[11])?,
            native_fps: double(&f[12])?,
            frames_decoded: long(&f[13])??,
            frames_kept: long(&f[14])??,
            first_frame_row: long(&f[15])??,
            payload_sha256: string(&f[16])?,
            status: string(&f[17])??,
            message: string(&f[18])?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample_video(id: i32, ok: bool) -> VideoRow {
        VideoRow {
            video_id: id,
            subdataset: "s".into(),
            source_path: format!("v/{id}.mp4"),
            kind: "video".into(),
            class_name: ok.then(|| "covid".into()),
            class_index: ok.then_some(0),
            patient_id: None,
            source_bytes: Some(1234),
            source_sha256: ok.then(|| "ab".repeat(32)),
            width: Some(640),
            height: ok.then_some(480),
            duration_s: Some(1.5),
            native_fps: None,
            frames_decoded: 40,
            frames_kept: 5,
            first_frame_row: 0,
            payload_sha256: None,
            status: if ok { "ok" } else { "failed" }.into(),
            message: (!ok).then(|| "file is empty".into()),
        }
    }

    fn sample_mask() -> MaskRow {
        MaskRow {
            frame_row: 3,
            video_id: 1,
            mask_index: 0,
            source_path: "m/a_mask.png".into(),
            source_sha256: "cd".repeat(32),
            source_pixels: 40,
            pixels: 10,
            instance: Some(0),
            bbox: Some([1, 2, 5, 2]),
        }
    }

    #[test]
    fn round_trips_both_tables() {
        let dir = tempfile::tempdir().unwrap();
        let hashes = |i: i64| Some(FrameHashes { pixels_sha256: format!("{i:064x}"), phash: (1u64 << 62) | i as u64 });
        let frames: Vec<FrameRow> = (0..7)
            .map(|i| FrameRow { frame_row: i, video_id: (i / 3) as i32, time_s: i as f64 / 3.0, source_index: i * 8, pts: i * 512 - 3, hashes: hashes(i) })
            .collect();
        let videos = vec![sample_video(0, true), sample_video(1, false)];
        write_frames(&dir.path().join("f.parquet"), &frames).unwrap();
        write_videos(&dir.path().join("v.parquet"), &videos).unwrap();
        assert_eq!(read_frames(&dir.path().join("f.parquet"), 3).unwrap(), frames);
        // A format-2 reader of a format-3 table finds columns it does not know, and the reverse.
        let err = read_frames(&dir.path().join("f.parquet"), 2).unwrap_err().to_string();
        assert!(err.contains("columns"), "{err}");
        assert_eq!(read_videos(&dir.path().join("v.parquet")).unwrap(), videos);
        let masks = vec![
            sample_mask(),
            MaskRow { mask_index: 1, source_path: "m/a_mask_1.png".into(), source_pixels: 0, pixels: 0, instance: None, bbox: None, ..sample_mask() },
        ];
        write_masks(&dir.path().join("m.parquet"), &masks).unwrap();
        assert_eq!(read_masks(&dir.path().join("m.parquet")).unwrap(), masks);
        write_masks(&dir.path().join("me.parquet"), &[]).unwrap();
        assert!(read_masks(&dir.path().join("me.parquet")).unwrap().is_empty());
        // Empty tables are valid too (an ingest where every file failed).
        write_frames(&dir.path().join("e.parquet"), &[]).unwrap();
        assert!(read_frames(&dir.path().join("e.parquet"), 3).unwrap().is_empty());
    }

    #[test]
    fn rejects_a_table_of_the_other_kind() {
        let dir = tempfile::tempdir().unwrap();
        write_videos(&dir.path().join("v.parquet"), &[sample_video(0, true)]).unwrap();
        let err = read_frames(&dir.path().join("v.parquet"), 3).unwrap_err().to_string();
        assert!(err.contains("v.parquet") && err.contains("columns"), "{err}");
    }

    #[test]
    fn a_full_disk_is_an_io_error_naming_the_file_not_a_damaged_store() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let full = Path::new("/dev/full");
        let videos: Vec<VideoRow> = (0..200).map(|i| sample_video(i, true)).collect();
        for err in [write_videos(full, &videos).unwrap_err(), write_frames(full, &[]).unwrap_err()] {
            assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("/dev/full") && text.contains("No space left on device"), "{text}");
        }
    }
}
