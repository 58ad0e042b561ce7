//! Progress of a training run (teacher pretraining, a scale's students, one-class students),
//! for progress displays and for tests that stop a run part-way, as a kill would. One trait for
//! every trainer, generic over the trainer's own start and step reports: every trainer reports
//! the same events (start, long phases, steps, checkpoints) the same way.

use std::ops::ControlFlow;
use std::path::Path;

/// Receives the progress of a run: `Start` says where it starts, `Step` reports each step
/// ([`crate::RunStart`] and [`crate::IterationReport`] for teachers,
/// [`crate::StudentRunStart`] and [`crate::StudentStepReport`] for students,
/// [`crate::OneClassRunStart`] and [`crate::OneClassStep`] for one-class students). Every method
/// has a default that does nothing.
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

/// A closure over the step report is an observer that watches only the steps, for callers that
/// want no more (`FnMut` being a fundamental trait, this does not overlap the impl for `()` or
/// any observer type of another crate).
impl<Start, Step, F> TrainingObserver<Start, Step> for F
where
    F: FnMut(&Step) -> ControlFlow<()>,
{
    fn step(&mut self, report: &Step) -> ControlFlow<()> {
        self(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closure_observes_the_steps_and_can_stop_the_run() {
        let mut seen = Vec::new();
        let mut stop_at_two = |step: &usize| {
            seen.push(*step);
            if *step == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let observer: &mut dyn TrainingObserver<(), usize> = &mut stop_at_two;
        observer.started(&());
        observer.checkpoint(1, Path::new("c.safetensors"));
        assert!(observer.step(&1).is_continue());
        assert!(observer.step(&2).is_break());
        assert_eq!(seen, [1, 2]);
    }
}
