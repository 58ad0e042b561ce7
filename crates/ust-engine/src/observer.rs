//! Progress of an evaluation, for front ends: the `ust` binary draws its progress bars from
//! these calls; a library user may log them or ignore them ([`NoProgress`]).

use ust_data::TestSample;

/// Told what an evaluation of a test split is doing. Every method has an empty default.
pub trait EvaluationObserver {
    /// The loop over the test images starts: `images` of them.
    fn started(&mut self, images: usize) {
        let _ = images;
    }

    /// Test image `index` of the loop is evaluated; `resumed`: its scores were kept by an
    /// interrupted evaluation, not computed now.
    fn image_done(&mut self, index: usize, sample: &TestSample, resumed: bool) {
        let _ = (index, sample, resumed);
    }

    /// The loop is over (the metrics are computed next).
    fn finished(&mut self) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl EvaluationObserver for NoProgress {}
