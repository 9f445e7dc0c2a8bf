//! The networks: ResNet-18 backbone f with torchvision's parameter names (so its weights load in
//! torchvision and ImageNet weights load here), projection head g and linear classifier h. Each
//! lives in its own VarStore: the backbone's names are exactly torchvision's, and f is what is kept.

pub mod heads;
pub mod init;
pub mod resnet;
pub mod unet;

pub use heads::Heads;
pub use resnet::ResNet18;
