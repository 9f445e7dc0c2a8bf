//! Projection head g (512 → 512 → 256, ReLU between) and linear classifier h, both dropped after
//! pretraining. h reads either the backbone features (paper, Algorithm 1) or g's output (the
//! reference code).

use super::resnet::FEATURES;
use tch::nn::{self, Module};
use tch::Tensor;
use usctl::config::ClassifierOn;

pub const PROJECTION: i64 = 256;

#[derive(Debug)]
pub struct Heads {
    g1: nn::Linear,
    g2: nn::Linear,
    h: nn::Linear,
    pub classifier_on: ClassifierOn,
}

impl Heads {
    pub fn new(p: &nn::Path, classes: i64, classifier_on: ClassifierOn) -> Heads {
        let input = match classifier_on {
            ClassifierOn::Backbone => FEATURES,
            ClassifierOn::Projection => PROJECTION,
        };
        Heads {
            g1: nn::linear(p / "projection" / 0, FEATURES, FEATURES, Default::default()),
            g2: nn::linear(p / "projection" / 2, FEATURES, PROJECTION, Default::default()),
            h: nn::linear(p / "classifier", input, classes.max(1), Default::default()),
            classifier_on,
        }
    }

    /// Backbone features → projections z.
    pub fn project(&self, features: &Tensor) -> Tensor {
        features.apply(&self.g1).relu().apply(&self.g2)
    }

    /// Class logits from the features and projections of the same images.
    pub fn classify(&self, features: &Tensor, projections: &Tensor) -> Tensor {
        match self.classifier_on {
            ClassifierOn::Backbone => self.h.forward(features),
            ClassifierOn::Projection => self.h.forward(projections),
        }
    }
}
