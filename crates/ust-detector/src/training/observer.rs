//! Progress of a training run (teacher pretraining or a scale's students), for progress
//! displays and for tests that stop a run part-way, as a kill would.

use std::ops::ControlFlow;
use std::path::Path;

/// Receives the progress of a run: `Start` says where it starts, `Step` reports each step
/// ([`crate::RunStart`] and [`crate::IterationReport`] for teachers,
/// [`crate::StudentRunStart`] and [`crate::StudentStepReport`] for students). Every method has
/// a default that does nothing.
pub trait TrainingObserver<Start, Step> {
    /// Before the first step.
    fn started(&mut self, _start: &Start) {}
    /// A long preparation began (`message`): filling the distillation bank, the teacher's
    /// targets, the calibration.
    fn phase(&mut self, _message: &str) {}
    /// After every step. `Break` stops the run at once, without a checkpoint, like a kill
    /// (what was done since the last checkpoint is lost).
    fn step(&mut self, _report: &Step) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// A checkpoint holding `step` steps was written to `path`.
    fn checkpoint(&mut self, _step: usize, _path: &Path) {}
}

/// An observer that does nothing.
impl<Start, Step> TrainingObserver<Start, Step> for () {}
