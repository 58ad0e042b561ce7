//! Losses of Uninformed Students (Bergmann et al., CVPR 2020), as differentiable candle
//! tensor operations: the teacher's pretraining losses (knowledge distillation through a learned
//! linear decoder, triplet loss with anchor swap, compactness of the descriptor correlations, and
//! their weighted combination), the students' regression loss, and the per-pixel ensemble scores
//! (regression error, predictive variance) that share their definitions. See METHOD.md §4–§6.

pub mod compactness;
pub mod distillation;
pub mod error;
pub mod scores;
pub mod student;
pub mod teacher;
pub mod triplet;

#[cfg(test)]
mod test_util;

pub use compactness::{CORRELATION_EPS, CompactnessKind, compactness_loss, correlation_matrix};
pub use distillation::{DistillationDecoder, DistillationDecoderConfig, distillation_loss};
pub use error::{LossError, Result};
pub use scores::{
    EnsembleScores, ensemble_mean, ensemble_scores, predictive_variance, regression_error,
};
pub use student::student_regression_loss;
pub use teacher::{
    CheckedTeacherLossWeights, TeacherBatch, TeacherLoss, TeacherLossTerms, TeacherLossWeights,
    teacher_loss,
};
pub use triplet::triplet_loss;
