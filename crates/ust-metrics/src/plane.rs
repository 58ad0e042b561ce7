use crate::{MetricsError, Result};

/// A borrowed, row-major 2-D array: an anomaly map (`Plane<f32>`) or a mask (`Plane<u8>`,
/// nonzero = anomalous).
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a, T> {
    data: &'a [T],
    width: usize,
    height: usize,
}

impl<'a, T> Plane<'a, T> {
    /// Checks that `data` holds exactly `width * height` values.
    pub fn new(data: &'a [T], width: usize, height: usize) -> Result<Self> {
        let expected = width * height;
        if data.len() != expected {
            return Err(MetricsError::BadPlaneLength {
                width,
                height,
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            data,
            width,
            height,
        })
    }

    pub fn data(&self) -> &'a [T] {
        self.data
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }
}
