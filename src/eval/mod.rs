//! Downstream evaluation, the parts that need no libtorch: the config, which videos are used,
//! cross-validation folds, classification metrics, COCO-style AP (coco.rs) and reports. Fine-tuning itself runs in
//! `usctl-torch` (src/torch/finetune.rs).

pub mod coco;
pub mod config;
pub mod data;
pub mod dense;
pub mod folds;
pub mod mask;
pub mod metrics;
pub mod overlay;
pub mod paired;
pub mod report;
pub mod seg;
