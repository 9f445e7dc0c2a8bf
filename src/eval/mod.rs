//! Downstream evaluation, the parts that need no libtorch: cross-validation folds and
//! classification metrics. (The fine-tuning protocols and reports come with the evaluation
//! command.)

pub mod folds;
pub mod metrics;
