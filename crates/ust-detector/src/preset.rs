//! The named starting points (`paper`, `cpu`, `smoke`) shared by every configuration: the
//! teacher's, the students', the one-class students'. Each configuration maps a preset to its
//! own values; this enum is only the name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DetectorError, Result};

/// The named starting points of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's schedule (METHOD.md §4): 50 000 iterations at batch 64, Adam lr 2e-4,
    /// weight decay 1e-5 (L2), distillation targets computed for every batch.
    Paper,
    /// What fits about 30–45 minutes per patch size on the project's 2-core CPU: fewer
    /// iterations and distillation targets served from a bank of cached backbone features
    /// (see [`crate::TeacherTrainingConfig::cpu`]).
    Cpu,
    /// A few iterations on tiny batches: a test that the whole pipeline runs (seconds).
    Smoke,
}

impl Preset {
    /// All presets, for help texts.
    pub const ALL: [Preset; 3] = [Preset::Paper, Preset::Cpu, Preset::Smoke];

    /// The preset's name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Cpu => "cpu",
            Preset::Smoke => "smoke",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = DetectorError;
    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                DetectorError::InvalidConfig(format!(
                    "unknown preset {s:?}; expected one of paper, cpu, smoke"
                ))
            })
    }
}
