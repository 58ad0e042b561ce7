//! Files of a teacher pretraining run: the resolved configuration, checkpoints (parameters,
//! optimiser moments, distillation bank, counters) and the trained teacher, every one written
//! atomically ([`crate::training::checkpoint`]).
//!
//! The teacher file is a patch-network file of `ust-models` (metadata `ust.model = PatchNet`,
//! `ust.config` = the architecture as JSON, tensors `conv{i}.weight|bias`) with, in addition,
//! the distillation decoder's tensors under `decoder.` and two more metadata entries: the
//! training configuration (TOML) and the training summary (JSON).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use ust_data::files::write_bytes_atomically;
use ust_models::patch_net::{METADATA_CONFIG_KEY, METADATA_MODEL_KEY, METADATA_MODEL_VALUE};
use ust_models::{PatchNet, PatchNetConfig};

use super::config::TeacherTrainingConfig;
use super::summary::{LossTerms, TrainingSummary};
use crate::error::{DetectorError, Result};
use crate::training::checkpoint::{read_safetensors, write_safetensors};

/// Metadata value of [`METADATA_MODEL_KEY`] in a checkpoint.
pub const METADATA_CHECKPOINT_VALUE: &str = "TeacherCheckpoint";
/// Metadata key of the training configuration (TOML), in checkpoints and teacher files.
pub const METADATA_TRAINING_CONFIG_KEY: &str = "ust.teacher.training_config";
/// Metadata key of the [`TrainingSummary`] (JSON) in a teacher file.
pub const METADATA_SUMMARY_KEY: &str = "ust.teacher.summary";
/// Metadata key of the [`CheckpointState`] (JSON) in a checkpoint.
pub const METADATA_STATE_KEY: &str = "ust.checkpoint.state";
/// Prefix of the distillation decoder's tensors.
pub const DECODER_PREFIX: &str = "decoder.";

/// Where a run writes: the teacher, its checkpoint and its resolved configuration, side by
/// side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// The trained teacher (`NAME.safetensors`).
    pub output: PathBuf,
    /// The latest checkpoint (`NAME.checkpoint.safetensors`).
    pub checkpoint: PathBuf,
    /// The resolved configuration (`NAME.config.toml`).
    pub config: PathBuf,
}

impl RunPaths {
    /// The checkpoint and configuration beside `output`.
    pub fn beside(output: &Path) -> Self {
        let stem = output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "teacher".into());
        let dir = output.parent().unwrap_or(Path::new(""));
        Self {
            output: output.to_path_buf(),
            checkpoint: dir.join(format!("{stem}.checkpoint.safetensors")),
            config: dir.join(format!("{stem}.config.toml")),
        }
    }
}

/// The counters of a checkpoint (JSON under [`METADATA_STATE_KEY`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Steps done.
    pub iteration: usize,
    /// The optimiser's step count (equal to `iteration`).
    pub adam_step: u64,
    /// Wall-clock seconds of training so far, over all sessions.
    pub elapsed_s: f64,
    /// Sessions so far (1 + resumes).
    pub sessions: usize,
    /// Filled entries and write cursor of the distillation bank (0, 0 without one).
    pub bank_len: usize,
    pub bank_next: usize,
    /// The divergence guard's running mean and count.
    pub guard_mean: Option<f64>,
    pub guard_seen: usize,
    /// The last step's loss terms.
    pub last_terms: Option<LossTerms>,
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: TeacherTrainingConfig,
    pub state: CheckpointState,
    /// Parameters (by their names in the run), `adam.m.*`, `adam.v.*` and `bank.*`.
    pub tensors: HashMap<String, Tensor>,
}

/// Writes a checkpoint atomically.
pub fn save_checkpoint(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    config: &TeacherTrainingConfig,
    state: &CheckpointState,
) -> Result<()> {
    let metadata = HashMap::from([
        (
            METADATA_MODEL_KEY.to_string(),
            METADATA_CHECKPOINT_VALUE.to_string(),
        ),
        (METADATA_TRAINING_CONFIG_KEY.to_string(), config.to_toml()?),
        (METADATA_STATE_KEY.to_string(), to_json(state)),
    ]);
    write_safetensors(path, tensors, metadata)
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising plain structs of numbers and strings cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn metadata_entry<'a>(
    path: &Path,
    meta: &'a HashMap<String, String>,
    key: &str,
) -> Result<&'a str> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| DetectorError::bad_file(path, format!("metadata has no {key:?}")))
}

fn training_config_from(path: &Path, toml_text: &str) -> Result<TeacherTrainingConfig> {
    toml::from_str(toml_text).map_err(|e| {
        DetectorError::bad_file(path, format!("unreadable training configuration: {e}"))
    })
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let (tensors, meta) = read_safetensors(path)?;
    match meta.get(METADATA_MODEL_KEY) {
        Some(v) if v == METADATA_CHECKPOINT_VALUE => {}
        other => {
            return Err(DetectorError::bad_file(
                path,
                format!("not a teacher checkpoint ({METADATA_MODEL_KEY} is {other:?})"),
            ));
        }
    }
    let config = training_config_from(
        path,
        metadata_entry(path, &meta, METADATA_TRAINING_CONFIG_KEY)?,
    )?;
    let state: CheckpointState =
        serde_json::from_str(metadata_entry(path, &meta, METADATA_STATE_KEY)?)
            .map_err(|e| DetectorError::bad_file(path, format!("unreadable state: {e}")))?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        config,
        state,
        tensors,
    })
}

/// Writes the trained teacher atomically: `params` (the teacher's `conv*` tensors and the
/// decoder's `decoder.*` ones), the architecture, the training configuration and the summary.
pub fn save_teacher_file(
    path: &Path,
    params: Vec<(String, Tensor)>,
    architecture: &PatchNetConfig,
    config: &TeacherTrainingConfig,
    summary: &TrainingSummary,
) -> Result<()> {
    let metadata = HashMap::from([
        (
            METADATA_MODEL_KEY.to_string(),
            METADATA_MODEL_VALUE.to_string(),
        ),
        (METADATA_CONFIG_KEY.to_string(), architecture.to_json()),
        (METADATA_TRAINING_CONFIG_KEY.to_string(), config.to_toml()?),
        (METADATA_SUMMARY_KEY.to_string(), to_json(summary)),
    ]);
    write_safetensors(path, params, metadata)
}

/// Loads the teacher of a teacher file, ignoring the decoder's `decoder.*` tensors (which
/// `ust_models::PatchNet::load` does not expect), with the architecture its metadata names.
/// The parameters are plain tensors (inference).
pub fn load_teacher(path: &Path, device: &Device) -> Result<PatchNet> {
    let (tensors, meta) = read_safetensors(path)?;
    if meta.get(METADATA_MODEL_KEY).map(String::as_str) != Some(METADATA_MODEL_VALUE) {
        return Err(DetectorError::bad_file(path, "not a patch-network file"));
    }
    let architecture: PatchNetConfig =
        serde_json::from_str(metadata_entry(path, &meta, METADATA_CONFIG_KEY)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad architecture: {e}")))?;
    let mut teacher: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(k, _)| !k.starts_with(DECODER_PREFIX))
        .collect();
    let mut have: Vec<&String> = teacher.keys().collect();
    have.sort();
    let mut want = architecture.parameter_names();
    want.sort();
    if have != want.iter().collect::<Vec<_>>() {
        return Err(DetectorError::bad_file(
            path,
            format!("tensors {have:?} do not match the architecture's {want:?}"),
        ));
    }
    for t in teacher.values_mut() {
        *t = t.to_device(device)?.to_dtype(DType::F32)?;
    }
    let vb = candle_nn::VarBuilder::from_tensors(teacher, DType::F32, device);
    PatchNet::new(architecture, vb).map_err(|e| DetectorError::bad_file(path, e.to_string()))
}

/// Writes the teacher of a teacher file to `output` for shipping: the network's tensors only
/// (the distillation decoder is dropped: students never need it), stored as `dtype` (f16
/// halves the size), with the input's metadata (architecture, training configuration,
/// summary) unchanged. [`load_teacher`] reads either dtype back as f32.
pub fn export_teacher(input: &Path, output: &Path, dtype: DType) -> Result<()> {
    let (tensors, metadata) = read_safetensors(input)?;
    if metadata.get(METADATA_MODEL_KEY).map(String::as_str) != Some(METADATA_MODEL_VALUE) {
        return Err(DetectorError::bad_file(input, "not a patch-network file"));
    }
    let mut kept: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(k, _)| !k.starts_with(DECODER_PREFIX))
        .map(|(k, t)| Ok((k, t.to_dtype(dtype)?.contiguous()?)))
        .collect::<Result<_>>()?;
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some((name, _)) = kept.iter().find(|(_, t)| {
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map(|v| v.iter().any(|x| !x.is_finite()))
            .unwrap_or(true)
    }) {
        return Err(DetectorError::bad_file(
            input,
            format!("tensor {name} is not finite as {dtype:?}"),
        ));
    }
    let bytes = safetensors::serialize(kept, Some(metadata))
        .map_err(|e| DetectorError::bad_file(output, format!("cannot serialise: {e}")))?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DetectorError::io(dir, e))?;
    }
    Ok(write_bytes_atomically(output, &bytes)?)
}

/// What a teacher file says about its training.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherFileInfo {
    pub architecture: PatchNetConfig,
    pub training_config: TeacherTrainingConfig,
    pub summary: TrainingSummary,
    /// Names of the decoder's tensors (empty for a run without distillation).
    pub decoder_tensors: Vec<String>,
}

impl TeacherFileInfo {
    /// Reads the metadata of a teacher file written by [`save_teacher_file`].
    pub fn read(path: &Path) -> Result<Self> {
        let (tensors, meta) = read_safetensors(path)?;
        if meta.get(METADATA_MODEL_KEY).map(String::as_str) != Some(METADATA_MODEL_VALUE) {
            return Err(DetectorError::bad_file(path, "not a patch-network file"));
        }
        let architecture: PatchNetConfig =
            serde_json::from_str(metadata_entry(path, &meta, METADATA_CONFIG_KEY)?)
                .map_err(|e| DetectorError::bad_file(path, format!("bad architecture: {e}")))?;
        architecture
            .check()
            .map_err(|e| DetectorError::bad_file(path, format!("bad architecture: {e}")))?;
        let training_config = training_config_from(
            path,
            metadata_entry(path, &meta, METADATA_TRAINING_CONFIG_KEY)?,
        )?;
        let summary: TrainingSummary =
            serde_json::from_str(metadata_entry(path, &meta, METADATA_SUMMARY_KEY)?)
                .map_err(|e| DetectorError::bad_file(path, format!("bad summary: {e}")))?;
        let mut decoder_tensors: Vec<String> = tensors
            .keys()
            .filter(|k| k.starts_with(DECODER_PREFIX))
            .cloned()
            .collect();
        decoder_tensors.sort();
        Ok(Self {
            architecture,
            training_config,
            summary,
            decoder_tensors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sit_beside_the_output() {
        let p = RunPaths::beside(Path::new("runs/teacher/p33.safetensors"));
        assert_eq!(
            p.checkpoint,
            Path::new("runs/teacher/p33.checkpoint.safetensors")
        );
        assert_eq!(p.config, Path::new("runs/teacher/p33.config.toml"));
    }

    #[test]
    fn checkpoint_round_trip_and_wrong_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let config = TeacherTrainingConfig::smoke(17);
        let state = CheckpointState {
            iteration: 12,
            adam_step: 12,
            elapsed_s: 3.5,
            sessions: 2,
            bank_len: 16,
            bank_next: 4,
            guard_mean: Some(1.25),
            guard_seen: 12,
            last_terms: Some(LossTerms {
                total: 1.0,
                distillation: Some(0.5),
                triplet: None,
                compactness: Some(0.5),
            }),
        };
        let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        save_checkpoint(&path, vec![("conv1.bias".into(), t)], &config, &state).unwrap();
        let c = load_checkpoint(&path).unwrap();
        assert_eq!(c.config, config);
        assert_eq!(c.state, state);
        assert_eq!(
            c.tensors["conv1.bias"].to_vec1::<f32>().unwrap(),
            [1.0, 2.0, 3.0]
        );
        // A teacher file is not a checkpoint, and vice versa.
        let err = TeacherFileInfo::read(&path).unwrap_err();
        assert!(err.to_string().contains("c.safetensors"), "{err}");
        std::fs::write(&path, b"garbage").unwrap();
        let err = load_checkpoint(&path).unwrap_err();
        assert!(matches!(err, DetectorError::BadFile { .. }), "{err}");
        let err = load_checkpoint(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, DetectorError::Io { .. }), "{err}");
    }
}
