//! `--device`: where the networks run. The CPU is the default and what this project measures;
//! `cuda` and `metal` need a build with the matching cargo feature, which forwards to candle's.

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::Args;

/// The `--device` option of every command that runs networks.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where the networks run: cpu, cuda or cuda:N (a build with `--features cuda`), metal or
    /// metal:N (`--features metal`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
}

impl Default for DeviceArgs {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
        }
    }
}

impl DeviceArgs {
    /// The device, opened.
    pub fn open(&self) -> Result<Device> {
        parse_device(&self.device)
    }
}

/// `cpu`, `cuda[:N]` or `metal[:N]` as a candle device.
pub fn parse_device(spec: &str) -> Result<Device> {
    let (kind, ordinal) = match spec.split_once(':') {
        Some((kind, n)) => (
            kind,
            n.parse::<usize>()
                .with_context(|| format!("--device {spec}: {n:?} is not a device number"))?,
        ),
        None => (spec, 0),
    };
    match kind {
        "cpu" if ordinal == 0 && !spec.contains(':') => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(ordinal).with_context(|| {
            format!(
                "--device {spec}: cannot open CUDA device {ordinal} (is this `ust` built with \
                 `--features cuda`, and is the device there?)"
            )
        }),
        "metal" => Device::new_metal(ordinal).with_context(|| {
            format!(
                "--device {spec}: cannot open Metal device {ordinal} (is this `ust` built \
                 with `--features metal`?)"
            )
        }),
        _ => bail!("--device {spec}: expected cpu, cuda, cuda:N, metal or metal:N"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_bad_ones_are_named() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cpu:1", "cuda:x", ""] {
            let msg = format!("{:#}", parse_device(bad).unwrap_err());
            assert!(msg.contains("--device"), "{bad}: {msg}");
        }
        // This build has no CUDA: the error says how to get it, it does not panic.
        #[cfg(not(feature = "cuda"))]
        {
            let msg = format!("{:#}", parse_device("cuda:0").unwrap_err());
            assert!(msg.contains("--features cuda"), "{msg}");
        }
    }
}
