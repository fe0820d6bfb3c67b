//! Losses (OML 4.0 §1.4), all [`Criterion`](oml_interfaces::Criterion)s on Burn autodiff.

mod arcface;
mod smoothing;
mod surrogate;
mod triplet;

pub use arcface::{ArcFaceLoss, ArcFaceLossWithMLP, ArcFaceOptions, ArcFaceSettings};
pub use smoothing::{Category, Label2Category, label_smoothing};
pub use surrogate::SurrogatePrecision;
pub use triplet::{TripletLoss, TripletLossPlain, TripletLossWithMiner, triplet_values};
