//! `usctl audit` (docs/AUDIT.md): what is wrong with a corpus, each finding naming its files.
//! Reads stores through `store/`, writes only its own output folder, never edits a version.
//! No libtorch.

// One line per part; each part is its own file.
pub mod distributions;
