//! What every checkpoint is made of, whoever trains: a network's variables and Adam moments
//! under a name prefix, and safetensors files written atomically (a temporary file in the same
//! folder, synced, then renamed over the target), so that a run killed at any moment leaves
//! either the previous file or the new one, never half of one. The teacher's, the students' and
//! the one-class students' checkpoints differ only in their metadata.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use ust_data::files::write_bytes_atomically;

use super::adam::Adam;
use crate::error::{DetectorError, Result};

/// The variables of a VarMap sorted by name: the order initialisers, optimisers and files use.
pub(crate) fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// What a checkpoint keeps of one trained network: its variables and its Adam moments, every
/// name behind `prefix` (`student3.` for the fourth student, empty for a teacher).
pub(crate) fn trainee_tensors(
    prefix: &str,
    varmap: &VarMap,
    optimizer: &Adam,
) -> Result<Vec<(String, Tensor)>> {
    let mut tensors: Vec<(String, Tensor)> = named_vars(varmap)
        .into_iter()
        .map(|(name, var)| (format!("{prefix}{name}"), var.as_tensor().clone()))
        .collect();
    for (name, t) in optimizer.state_tensors()? {
        tensors.push((format!("{prefix}{name}"), t));
    }
    Ok(tensors)
}

/// Sets a network's variables and its Adam moments (at optimiser step `step`) from `tensors`,
/// named as [`trainee_tensors`] writes them; a missing tensor or a wrong shape is an error
/// naming the checkpoint `path`.
pub(crate) fn restore_trainee(
    prefix: &str,
    varmap: &VarMap,
    optimizer: &mut Adam,
    step: u64,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    for (name, var) in named_vars(varmap) {
        let key = format!("{prefix}{name}");
        let value = tensors
            .get(&key)
            .ok_or_else(|| DetectorError::bad_file(path, format!("missing tensor {key}")))?;
        if value.dims() != var.dims() {
            return Err(DetectorError::bad_file(
                path,
                format!(
                    "tensor {key} has shape {:?}, the network {:?}",
                    value.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&value.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    optimizer.restore(
        step,
        |name| tensors.get(&format!("{prefix}{name}")).cloned(),
        path,
    )
}

/// Writes safetensors atomically (tensors converted to contiguous f32).
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let tensors = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<candle_core::Result<Vec<_>>>()?;
    // Serialised in memory and written by `write_bytes_atomically` (safetensors' own file writer
    // would leave the file with a temporary file's 0600 permissions).
    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| DetectorError::bad_file(path, format!("cannot serialise safetensors: {e}")))?;
    Ok(write_bytes_atomically(path, &bytes)?)
}

/// Reads a safetensors file: its tensors and metadata.
pub(crate) fn read_safetensors(
    path: &Path,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| DetectorError::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| DetectorError::bad_file(path, format!("not a safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| DetectorError::bad_file(path, format!("cannot read tensors: {e}")))?;
    Ok((tensors, metadata))
}
