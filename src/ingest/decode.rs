//! Turns one source file into its kept frames: videos through FFmpeg (ffmpeg-next), still images
//! through the `image` crate. Only kept frames are converted (to 8-bit luma, scaled to fit S×S
//! and letterboxed); the others are decoded and dropped, because inter-coded video cannot skip
//! them.

use super::geometry::{fit, letterbox_into};
use super::resample::Rational;
#[cfg(feature = "decode")]
use super::resample::{Decision, Resampler};
use crate::error::SourceError;
use crate::store::writer::FrameMeta;
use std::path::Path;

/// What decoding one file produced. `error` with frames means partial, without means failed.
#[derive(Debug, Default)]
pub struct Decoded {
    pub kind: &'static str,
    pub pixels: Vec<u8>,
    pub frames: Vec<FrameMeta>,
    pub frames_decoded: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_s: Option<f64>,
    pub native_fps: Option<f64>,
    /// Frames dropped because their timestamp did not increase.
    pub out_of_order: u64,
    pub error: Option<SourceError>,
}

impl Decoded {
    pub fn failed(kind: &'static str, error: SourceError) -> Decoded {
        Decoded { kind, error: Some(error), ..Decoded::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Convert and keep the sampled frames.
    Store,
    /// Decode every frame and convert none (measures the decoder's ceiling).
    DecodeOnly,
}

pub fn is_still_image(path: &Path) -> bool {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "bmp")
}

pub fn decode(path: &Path, fps: Rational, size: u32, mode: Mode) -> Decoded {
    if is_still_image(path) {
        decode_image(path, size, mode)
    } else {
        video::decode_video(path, fps, size, mode)
    }
}

fn decode_image(path: &Path, size: u32, mode: Mode) -> Decoded {
    let img = image::ImageReader::open(path)
        .map_err(|e| SourceError::Unreadable(e.to_string()))
        .and_then(|r| r.with_guessed_format().map_err(|e| SourceError::Unreadable(e.to_string())))
        .and_then(|r| r.decode().map_err(|e| SourceError::BadImage(e.to_string())));
    let img = match img {
        Ok(img) => img,
        Err(e) => return Decoded::failed("image", e),
    };
    let mut out = Decoded { kind: "image", frames_decoded: 1, ..Decoded::default() };
    out.width = Some(img.width() as i32);
    out.height = Some(img.height() as i32);
    out.duration_s = Some(0.0);
    if mode == Mode::Store {
        let gray = img.to_luma8();
        let (w, h) = fit(gray.width(), gray.height(), size);
        let scaled = image::imageops::resize(&gray, w, h, image::imageops::FilterType::Triangle);
        letterbox_into(&mut out.pixels, scaled.as_raw(), w as usize, h as usize, w as usize, size as usize);
        out.frames.push(FrameMeta { time_s: 0.0, source_index: 0, pts: 0 });
    }
    out
}

#[cfg(feature = "decode")]
mod video {
    use super::*;
    use ff::format::Pixel;
    use ff::software::scaling;
    use ffmpeg_next as ff;

    static INIT: std::sync::Once = std::sync::Once::new();

    fn init() {
        INIT.call_once(|| {
            let _ = ff::init();
            // Every failure is reported per file by usctl; FFmpeg's own log would repeat it
            // without the file name.
            ff::util::log::set_level(ff::util::log::Level::Quiet);
        });
    }

    fn rational(r: ff::Rational) -> Option<Rational> {
        Rational::new(r.numerator() as i64, r.denominator() as i64)
    }

    /// Converts kept frames; rebuilt when the source frame geometry changes mid-stream.
    struct Converter {
        scaler: scaling::Context,
        out: ff::frame::Video,
        key: (Pixel, u32, u32),
        fit: (u32, u32),
    }

    impl Converter {
        fn convert(conv: &mut Option<Converter>, frame: &ff::frame::Video, size: u32, pixels: &mut Vec<u8>) -> Result<(), ff::Error> {
            let key = (frame.format(), frame.width(), frame.height());
            if conv.as_ref().is_none_or(|c| c.key != key) {
                let (w, h) = fit(frame.width(), frame.height(), size);
                let scaler = scaling::Context::get(key.0, key.1, key.2, Pixel::GRAY8, w, h, scaling::Flags::AREA)?;
                *conv = Some(Converter { scaler, out: ff::frame::Video::empty(), key, fit: (w, h) });
            }
            let Some(c) = conv.as_mut() else { return Ok(()) };
            c.scaler.run(frame, &mut c.out)?;
            let (w, h) = c.fit;
            letterbox_into(pixels, c.out.data(0), w as usize, h as usize, c.out.stride(0), size as usize);
            Ok(())
        }
    }

    pub fn decode_video(path: &Path, fps: Rational, size: u32, mode: Mode) -> Decoded {
        init();
        let mut input = match ff::format::input(&path) {
            Ok(i) => i,
            Err(e) => return Decoded::failed("video", SourceError::NotMedia(e.to_string())),
        };
        let Some(stream) = input.streams().best(ff::media::Type::Video) else {
            return Decoded::failed("video", SourceError::NoVideoStream);
        };
        let index = stream.index();
        let time_base = rational(stream.time_base()).unwrap_or(Rational { num: 1, den: 90_000 });
        let native = rational(stream.avg_frame_rate()).or_else(|| rational(stream.rate()));
        let listed_frames = stream.frames();
        let duration_s = if input.duration() > 0 {
            Some(input.duration() as f64 / ff::ffi::AV_TIME_BASE as f64)
        } else if stream.duration() > 0 {
            Some(stream.duration() as f64 * time_base.to_f64())
        } else {
            None
        };
        let decoder = ff::codec::context::Context::from_parameters(stream.parameters()).and_then(|c| c.decoder().video());
        let mut decoder = match decoder {
            Ok(d) => d,
            Err(e) => return Decoded::failed("video", SourceError::Decode(format!("no decoder for its codec ({e})"))),
        };
        let mut out = Decoded {
            kind: "video",
            width: Some(decoder.width() as i32),
            height: Some(decoder.height() as i32),
            duration_s,
            native_fps: native.map(Rational::to_f64),
            ..Decoded::default()
        };
        let mut sampler = Resampler::new(fps, time_base);
        let mut conv: Option<Converter> = None;
        let mut frame = ff::frame::Video::empty();
        // Used when a frame carries no timestamp at all (rare, broken muxers): one frame period.
        let step = native.map(|r| ((time_base.den as i128 * r.den as i128) / (time_base.num as i128 * r.num as i128)).max(1) as i64).unwrap_or(1);
        let mut last_pts: Option<i64> = None;
        let mut failure: Option<String> = None;

        let mut receive = |decoder: &mut ff::decoder::Video, out: &mut Decoded| -> Result<(), String> {
            while decoder.receive_frame(&mut frame).is_ok() {
                let pts = frame.timestamp().or_else(|| last_pts.map(|p| p + step)).unwrap_or(0);
                last_pts = Some(pts);
                let source_index = out.frames_decoded;
                out.frames_decoded += 1;
                match sampler.offer(pts) {
                    Decision::Keep { time_s } => {
                        if mode == Mode::Store {
                            Converter::convert(&mut conv, &frame, size, &mut out.pixels).map_err(|e| format!("cannot convert frame {source_index}: {e}"))?;
                            out.frames.push(FrameMeta { time_s, source_index, pts });
                        }
                    }
                    Decision::Drop => {}
                    Decision::OutOfOrder => out.out_of_order += 1,
                }
            }
            Ok(())
        };

        let mut packet = ff::Packet::empty();
        loop {
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(e) => {
                    failure = Some(format!("reading stopped after {} frames: {e}", out.frames_decoded));
                    break;
                }
            }
            if packet.stream() != index {
                continue;
            }
            // A damaged packet is skipped as FFmpeg's own tools do; the stream goes on.
            if decoder.send_packet(&packet).is_err() {
                failure.get_or_insert_with(|| format!("a damaged packet near frame {} was skipped", out.frames_decoded));
            }
            if let Err(e) = receive(&mut decoder, &mut out) {
                failure = Some(e);
                break;
            }
        }
        if decoder.send_eof().is_ok() {
            if let Err(e) = receive(&mut decoder, &mut out) {
                failure = Some(e);
            }
        }
        if out.frames_decoded == 0 {
            out.error = Some(failure.map_or(SourceError::NoFrames, SourceError::Decode));
        } else if let Some(f) = failure {
            out.error = Some(SourceError::Decode(f));
        } else if listed_frames > 0 && out.frames_decoded < listed_frames * 9 / 10 {
            out.error = Some(SourceError::Decode(format!(
                "decoded {} of the {} frames the container lists; the file may be truncated",
                out.frames_decoded, listed_frames
            )));
        }
        out
    }

    /// Runtime FFmpeg library versions (they may differ from the build's headers).
    pub fn runtime_versions() -> String {
        let v = |x: u32| format!("{}.{}.{}", x >> 16, (x >> 8) & 0xff, x & 0xff);
        format!(
            "libavcodec {}, libavformat {}, libavutil {}, libswscale {}",
            v(ff::codec::version()),
            v(ff::format::version()),
            v(ff::util::version()),
            v(ff::software::scaling::version())
        )
    }
}

#[cfg(not(feature = "decode"))]
mod video {
    use super::*;

    pub fn decode_video(_: &Path, _: Rational, _: u32, _: Mode) -> Decoded {
        Decoded::failed("video", SourceError::NoDecoder)
    }

    pub fn runtime_versions() -> String {
        "none (built without feature `decode`)".into()
    }
}

pub use video::runtime_versions;
