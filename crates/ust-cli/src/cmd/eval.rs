//! `ust eval`: the official MVTec AD evaluation of anyone's anomaly maps
//! ([`ust_engine::maps`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ust_engine::maps::{MapsEvalConfig, evaluate_maps};
use ust_metrics::ImageReducer;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Dataset root in the MVTec AD layout (a folder of categories, or one category).
    /// (`--dataset` is accepted as an older spelling.)
    #[arg(long, alias = "dataset")]
    pub data: PathBuf,
    /// Root of the anomaly maps: MAPS/CATEGORY/test/DEFECT/NAME.tiff (32-bit float) or .npy.
    #[arg(long)]
    pub maps: PathBuf,
    /// Evaluate only these categories (repeatable); default: every category found.
    #[arg(long = "category")]
    pub categories: Vec<String>,
    /// Upper limit of the false-positive rate for AU-PRO.
    #[arg(long, default_value_t = 0.3)]
    pub fpr_limit: f64,
    /// Image score from the map: max, top1 (mean of the top 1 %), or top:FRACTION.
    #[arg(long, default_value = "max")]
    pub image_score: ImageReducer,
    /// Resample maps of another size than their image (bilinear) instead of failing.
    #[arg(long)]
    pub resize: bool,
    /// Also write the numbers as JSON to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let report = evaluate_maps(&MapsEvalConfig {
        data: args.data,
        maps: args.maps,
        categories: args.categories,
        fpr_limit: args.fpr_limit,
        image_score: args.image_score,
        resize: args.resize,
    })?;
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}
