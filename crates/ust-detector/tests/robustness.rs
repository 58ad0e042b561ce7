//! Inputs that cannot break it (issue 20): the detector's file readers are fed a valid file,
//! its truncations, random mutations of its bytes and of its metadata values, and seeded random
//! bytes. Each call must return `Ok` or `Err`: never panic, never hang, never allocate what a
//! header claims before checking it against the bytes that are there (a safetensors header
//! announcing a 10^6 × 10^6 tensor must be an error, quickly).
//!
//! Readers: `run.toml` ([`RunSpec::read`], [`Detector::load`]), `validation-scores.json`
//! ([`ScoreQuantiles::read`]), teacher configuration TOML
//! ([`TeacherTrainingConfig::from_toml_str`]), and safetensors files with their metadata:
//! teacher files ([`TeacherFileInfo::read`], [`load_teacher`], [`export_teacher`],
//! `PatchNet::read_config`/`load`), teacher checkpoints ([`load_checkpoint`]) and the scale files
//! of a run ([`ScaleModel::load`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ust_detector::pipeline::{RUN_FILE, ScoreQuantiles, VALIDATION_SCORES_FILE};
use ust_detector::student::ScalePaths;
use ust_detector::teacher::files::{load_checkpoint, save_teacher_file};
use ust_detector::{
    Detector, RunSpec, ScaleModel, ScaleSpec, StudentTrainingConfig, TeacherFileInfo,
    TeacherTrainingConfig, export_teacher, load_teacher, train_detector,
};
use ust_models::{PatchNet, PatchNetConfig};

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;
use fuzz::{Rng, mutate_one_in};

/// Seeded random cases per reader and mutation kind (small files).
const CASES: usize = 1000;

/// What a reader given a huge header must stay within (no giant allocation, no loop over the
/// announced elements).
const QUICK: Duration = Duration::from_secs(10);

/// `valid` with a few bytes of `range` overwritten, a chunk of it cut out, or random bytes
/// inserted into it.
fn mutate_more(rng: &mut Rng, valid: &[u8], range: std::ops::Range<usize>) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    let at = range.start + rng.below(range.len());
    match rng.below(3) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = range.start + rng.below(range.len());
                bytes[i] = rng.next_u64() as u8;
            }
        }
        1 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(at..end);
        }
        _ => {
            let extra = 1 + rng.below(32);
            let inserted = rng.bytes(extra);
            bytes.splice(at..at, inserted);
        }
    }
    bytes
}

/// Prefix lengths to try: every one up to `dense`, then a stride of about 64 cases, and the
/// last bytes.
fn prefix_lengths(len: usize, dense: usize) -> Vec<usize> {
    let stride = (len / 64).max(1);
    (0..len)
        .filter(|&n| n <= dense || n % stride == 0 || n + 8 >= len)
        .collect()
}

/// Writes `bytes` to a fresh `path` (replacing a file by truncating it in place is very slow
/// on ext4, which flushes such files).
fn put(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

/// Every maximal run of ASCII digits in `text`, as byte ranges.
fn digit_runs(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            runs.push(start..i);
        } else {
            i += 1;
        }
    }
    runs
}

/// Numbers a value can be replaced by: zero, huge, past 64 bits, negative.
const NUMBERS: [&str; 5] = [
    "0",
    "1000000000000",
    "18446744073709551615",
    "340282366920938463463374607431768211456",
    "-1",
];

/// Variants of a metadata or configuration value: empty, truncated, malformed, deeply nested,
/// and with one number (chosen by `rng`) replaced by each of [`NUMBERS`].
fn value_variants(rng: &mut Rng, value: &str) -> Vec<String> {
    let mut out = vec![
        String::new(),
        "{".into(),
        "null".into(),
        "[]".into(),
        value[..(0..=value.len() / 2)
            .rev()
            .find(|&i| value.is_char_boundary(i))
            .unwrap_or(0)]
            .to_string(),
        "[".repeat(10_000),
        format!("x = {}", "[".repeat(10_000)),
        format!("x = {}", "{a = ".repeat(10_000)),
    ];
    let runs = digit_runs(value);
    if !runs.is_empty() {
        let run = runs[rng.below(runs.len())].clone();
        for n in NUMBERS {
            out.push(format!("{}{n}{}", &value[..run.start], &value[run.end..]));
        }
    }
    out
}

/// A p = 65 architecture with small layers (d = 8, one channel in the third convolution): a
/// network file of 1.7 MB instead of 5.6 MB.
fn small_architecture() -> PatchNetConfig {
    PatchNetConfig {
        descriptor_dim: 8,
        p65_conv3_channels: 1,
        ..PatchNetConfig::new(65)
    }
}

fn small_network() -> PatchNet {
    let varmap = VarMap::new();
    PatchNet::new(
        small_architecture(),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap()
}

fn shipped_teacher() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/teacher-p65.safetensors")
}

/// The metadata of a safetensors file.
fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

/// `bytes` (a safetensors file) with `metadata` instead of its own; the tensors are kept.
fn with_metadata(bytes: &[u8], metadata: HashMap<String, String>) -> Vec<u8> {
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).unwrap();
    let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    safetensors::serialize(tensors, Some(metadata)).unwrap()
}

/// The length of a safetensors file's header (the 8-byte length and the JSON).
fn header_len(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// Every safetensors reader of the detector on `path`; whatever they return, they return.
/// With `export_to`, [`export_teacher`] too (it syncs what it writes: slow, so not every case).
fn all_safetensors_readers(path: &Path, export_to: Option<&Path>) {
    let _ = TeacherFileInfo::read(path);
    let _ = PatchNet::read_config(path);
    let _ = load_checkpoint(path);
    if let Ok(teacher) = load_teacher(path, &Device::Cpu) {
        teacher.config().check().unwrap();
    }
    let _ = PatchNet::load(path, &Device::Cpu);
    if let Some(out) = export_to {
        let _ = std::fs::remove_file(out);
        let _ = export_teacher(path, out, DType::F16);
    }
    if let Ok(model) = ScaleModel::load(path, &Device::Cpu) {
        assert!(!model.students.is_empty());
    }
}

/// A teacher file with the metadata of the shipped p = 65 teacher (training configuration and
/// summary) but tiny tensors: what [`TeacherFileInfo::read`] reads, in a few kB.
fn tiny_teacher_file(dir: &Path) -> (Vec<u8>, TeacherFileInfo) {
    let info = TeacherFileInfo::read(&shipped_teacher()).unwrap();
    let path = dir.join("tiny.safetensors");
    let tensor = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
    save_teacher_file(
        &path,
        vec![
            ("conv1.bias".into(), tensor(&[1.0, 2.0])),
            ("decoder.out.bias".into(), tensor(&[3.0])),
        ],
        &small_architecture(),
        &info.training_config,
        &info.summary,
    )
    .unwrap();
    (std::fs::read(&path).unwrap(), info)
}

#[test]
fn teacher_file_metadata_valid_truncated_mutated_and_random() {
    let dir = tempfile::tempdir().unwrap();
    let (valid, shipped) = tiny_teacher_file(dir.path());
    let path = dir.path().join("t.safetensors");
    let out = dir.path().join("exported.safetensors");
    put(&path, &valid);
    let info = TeacherFileInfo::read(&path).unwrap();
    assert_eq!(info.architecture, small_architecture());
    assert_eq!(info.training_config, shipped.training_config);
    assert_eq!(info.summary, shipped.summary);
    assert_eq!(info.decoder_tensors, vec!["decoder.out.bias".to_string()]);
    assert_eq!(PatchNet::read_config(&path).unwrap(), small_architecture());
    // The tensors do not make the architecture's network.
    assert!(load_teacher(&path, &Device::Cpu).is_err());

    for n in 0..valid.len() {
        put(&path, &valid[..n]);
        assert!(TeacherFileInfo::read(&path).is_err(), "prefix {n}");
        assert!(PatchNet::read_config(&path).is_err(), "prefix {n}");
    }
    let mut rng = Rng::new(11);
    for case in 0..CASES {
        let export = (case % 25 == 0).then_some(out.as_path());
        for bytes in [
            mutate_one_in(&mut rng, &valid, 0..valid.len()),
            mutate_more(&mut rng, &valid, 0..valid.len()),
        ] {
            put(&path, &bytes);
            all_safetensors_readers(&path, export);
        }
        // Random bytes, alone and behind a plausible header length.
        let len = rng.below(256);
        let noise = rng.bytes(len);
        let mut framed = (len as u64).to_le_bytes().to_vec();
        framed.extend(rng.syntax(len));
        for bytes in [noise, framed] {
            put(&path, &bytes);
            all_safetensors_readers(&path, export);
        }
    }
    // Metadata values replaced: truncated, malformed, nested, numbers zero or huge.
    let meta = metadata(&valid);
    for round in 0..20 {
        let export = (round == 0).then_some(out.as_path());
        for (key, value) in &meta {
            for variant in value_variants(&mut rng, value) {
                let mut changed = meta.clone();
                changed.insert(key.clone(), variant.clone());
                put(&path, &with_metadata(&valid, changed));
                all_safetensors_readers(&path, export);
                if let Ok(info) = TeacherFileInfo::read(&path) {
                    info.architecture.check().unwrap();
                }
            }
        }
    }
}

/// A safetensors file with one F32 tensor described by `tensor_json`, followed by `data`.
fn raw_safetensors(tensor_json: &str, data: &[u8]) -> Vec<u8> {
    let header =
        format!("{{\"__metadata__\":{{\"ust.model\":\"PatchNet\"}},\"conv1.bias\":{tensor_json}}}");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn safetensors_headers_announcing_huge_tensors_are_errors_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    let out = dir.path().join("exported.safetensors");
    let data = [0u8; 16];
    // The hand-made header is right: four floats parse.
    put(
        &path,
        &raw_safetensors(
            r#"{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}"#,
            &data,
        ),
    );
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    assert_eq!(tensors["conv1.bias"].dims(), &[2, 2]);

    let mut cases: Vec<Vec<u8>> = [
        r#"{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}"#,
        r#"{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,16]}"#,
        r#"{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,16]}"#,
        r#"{"dtype":"F32","shape":[18446744073709551615,18446744073709551615],"data_offsets":[0,16]}"#,
        r#"{"dtype":"F32","shape":[0,18446744073709551615,18446744073709551615],"data_offsets":[0,0]}"#,
        r#"{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551615,3]}"#,
        r#"{"dtype":"F32","shape":[4],"data_offsets":[0,18446744073709551615]}"#,
        r#"{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,16]}"#,
    ]
    .iter()
    .map(|t| raw_safetensors(t, &data))
    .collect();
    // Header lengths past the file: u64::MAX, just under the format's 100 MB cap, one too many.
    for len in [u64::MAX, 99_999_999, 60] {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
        cases.push(bytes);
    }
    // Deep nesting in the header's JSON.
    let nested = format!(
        "{{\"__metadata__\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut bytes = (nested.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(nested.as_bytes());
    cases.push(bytes);
    for bytes in cases {
        put(&path, &bytes);
        let start = Instant::now();
        assert!(candle_core::safetensors::load(&path, &Device::Cpu).is_err());
        assert!(load_teacher(&path, &Device::Cpu).is_err());
        all_safetensors_readers(&path, Some(&out));
        assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    }
}

#[test]
fn teacher_weights_valid_truncated_and_mutated() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("small.safetensors");
    small_network().save(&source).unwrap();
    let valid = std::fs::read(&source).unwrap();
    let path = dir.path().join("t.safetensors");
    let out = dir.path().join("exported.safetensors");
    put(&path, &valid);
    let teacher = load_teacher(&path, &Device::Cpu).unwrap();
    assert_eq!(teacher.config(), &small_architecture());
    export_teacher(&path, &out, DType::F16).unwrap();
    assert_eq!(
        load_teacher(&out, &Device::Cpu).unwrap().config(),
        &small_architecture()
    );
    let header = header_len(&valid);

    for n in prefix_lengths(valid.len(), header + 8) {
        put(&path, &valid[..n]);
        assert!(load_teacher(&path, &Device::Cpu).is_err(), "prefix {n}");
        assert!(PatchNet::load(&path, &Device::Cpu).is_err(), "prefix {n}");
    }
    // Mutations of the header (those of the weights only change the weights).
    let mut rng = Rng::new(12);
    for _ in 0..60 {
        for bytes in [
            mutate_one_in(&mut rng, &valid, 0..header),
            mutate_more(&mut rng, &valid, 0..header),
        ] {
            put(&path, &bytes);
            all_safetensors_readers(&path, None);
        }
    }
    let meta = metadata(&valid);
    for (key, value) in &meta {
        for variant in value_variants(&mut rng, value) {
            let mut changed = meta.clone();
            changed.insert(key.clone(), variant);
            put(&path, &with_metadata(&valid, changed));
            all_safetensors_readers(&path, Some(&out));
        }
    }
}

/// A run directory trained on four 8×8 noise images with the small p = 65 teacher: `run.toml`,
/// `p65.safetensors`, `validation-scores.json`.
fn tiny_run(dir: &Path) -> PathBuf {
    let good = dir.join("category/train/good");
    std::fs::create_dir_all(&good).unwrap();
    let mut rng = Rng::new(13);
    for i in 0..4 {
        let bytes = rng.bytes(8 * 8 * 3);
        image::RgbImage::from_raw(8, 8, bytes)
            .unwrap()
            .save(good.join(format!("{i:03}.png")))
            .unwrap();
    }
    let teacher = dir.join("teacher-p65.safetensors");
    small_network().save(&teacher).unwrap();
    let spec = RunSpec {
        data: dir.join("category"),
        scales: vec![ScaleSpec {
            patch_size: 65,
            teacher,
        }],
        training: StudentTrainingConfig {
            image_size: 8,
            crop: 4,
            epochs: 1,
            max_train_images: 0,
            max_validation_images: 0,
            validation_fraction: 0.25,
            checkpoint_every: 1000,
            ..StudentTrainingConfig::smoke()
        },
    };
    let run = dir.join("run");
    train_detector(&spec, &run, false, &[], &Device::Cpu, &mut ())
        .unwrap()
        .unwrap();
    run
}

#[test]
fn run_directories_valid_truncated_mutated_and_random() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let spec = RunSpec::read(&run).unwrap();
    assert_eq!(spec.scales.len(), 1);
    let detector = Detector::load(&run, None, &Device::Cpu).unwrap();
    assert_eq!(detector.patch_sizes(), vec![65]);
    let quantiles = ScoreQuantiles::read(&run).unwrap();
    assert_eq!(quantiles.scales, vec![65]);

    // run.toml: every prefix, mutations, random text. What parses is a RunSpec; Detector::load
    // must not panic on it either.
    let run_file = run.join(RUN_FILE);
    let valid = std::fs::read(&run_file).unwrap();
    let mut rng = Rng::new(14);
    let mut inputs: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    for _ in 0..CASES {
        inputs.push(mutate_one_in(&mut rng, &valid, 0..valid.len()));
        inputs.push(mutate_more(&mut rng, &valid, 0..valid.len()));
        let len = rng.below(128);
        inputs.push(rng.syntax(len));
        inputs.push(rng.bytes(len));
    }
    let text = String::from_utf8(valid.clone()).unwrap();
    for _ in 0..20 {
        inputs.extend(
            value_variants(&mut rng, &text)
                .into_iter()
                .map(String::into_bytes),
        );
    }
    let mut parsed = 0;
    for bytes in &inputs {
        put(&run_file, bytes);
        if RunSpec::read(&run).is_ok() {
            parsed += 1;
            let _ = Detector::load(&run, None, &Device::Cpu);
        }
    }
    assert!(parsed > 0, "no mutation of run.toml parsed");
    put(&run_file, &valid);

    // validation-scores.json.
    let scores_file = run.join(VALIDATION_SCORES_FILE);
    let valid_scores = std::fs::read(&scores_file).unwrap();
    for n in 0..valid_scores.len() {
        put(&scores_file, &valid_scores[..n]);
        assert!(ScoreQuantiles::read(&run).is_err(), "prefix {n}");
    }
    let scores_text = String::from_utf8(valid_scores.clone()).unwrap();
    for _ in 0..CASES {
        for bytes in [
            mutate_one_in(&mut rng, &valid_scores, 0..valid_scores.len()),
            mutate_more(&mut rng, &valid_scores, 0..valid_scores.len()),
        ] {
            put(&scores_file, &bytes);
            if let Ok(q) = ScoreQuantiles::read(&run) {
                // The thresholds of whatever parsed answer without panicking.
                let _ = q.threshold_at(0.05);
                let _ = q.image_threshold_at(0.05);
            }
        }
    }
    for variant in value_variants(&mut rng, &scores_text) {
        put(&scores_file, variant.as_bytes());
        let _ = ScoreQuantiles::read(&run);
    }
    put(&scores_file, &valid_scores);

    // The scale file.
    let scale_file = ScalePaths::in_run_dir(&run, 65).model;
    let valid_scale = std::fs::read(&scale_file).unwrap();
    let header = header_len(&valid_scale);
    let model = ScaleModel::load(&scale_file, &Device::Cpu).unwrap();
    assert_eq!(model.patch_size(), 65);
    assert_eq!(model.students.len(), 2);
    for n in prefix_lengths(valid_scale.len(), header + 8) {
        put(&scale_file, &valid_scale[..n]);
        assert!(
            ScaleModel::load(&scale_file, &Device::Cpu).is_err(),
            "prefix {n}"
        );
    }
    for _ in 0..60 {
        for bytes in [
            mutate_one_in(&mut rng, &valid_scale, 0..header),
            mutate_more(&mut rng, &valid_scale, 0..header),
        ] {
            put(&scale_file, &bytes);
            all_safetensors_readers(&scale_file, None);
        }
    }
    let meta = metadata(&valid_scale);
    for (key, value) in &meta {
        for variant in value_variants(&mut rng, value) {
            let mut changed = meta.clone();
            changed.insert(key.clone(), variant);
            put(&scale_file, &with_metadata(&valid_scale, changed));
            all_safetensors_readers(&scale_file, None);
            let _ = Detector::load(&run, None, &Device::Cpu);
        }
    }
}

#[test]
fn teacher_configuration_toml_valid_truncated_mutated_and_random() {
    let valid = TeacherTrainingConfig::smoke(33).to_toml().unwrap();
    assert_eq!(
        TeacherTrainingConfig::from_toml_str(&valid, None).unwrap(),
        TeacherTrainingConfig::smoke(33)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("teacher.toml");
    let bytes = valid.as_bytes();
    let mut rng = Rng::new(15);
    let mut inputs: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
    for _ in 0..CASES {
        inputs.push(mutate_one_in(&mut rng, bytes, 0..bytes.len()));
        inputs.push(mutate_more(&mut rng, bytes, 0..bytes.len()));
        let len = rng.below(128);
        inputs.push(rng.syntax(len));
        inputs.push(rng.bytes(len));
    }
    for _ in 0..20 {
        inputs.extend(
            value_variants(&mut rng, &valid)
                .into_iter()
                .map(String::into_bytes),
        );
    }
    // A patch size, a preset table and nesting that the merge has to cope with.
    inputs.push(b"[teacher]\npatch_size = 18446744073709551615\n".to_vec());
    inputs.push(b"[teacher]\npatch_size = -1\n".to_vec());
    inputs.push(b"preset = 3\n[teacher]\npatch_size = 17\n".to_vec());
    inputs.push(b"smoke = 1\n[teacher]\npatch_size = 17\n".to_vec());
    inputs.push(format!("[teacher]\npatch_size = 17\n{}", "[a.".repeat(5_000)).into_bytes());
    let mut parsed = 0;
    for input in &inputs {
        if let Ok(text) = std::str::from_utf8(input) {
            parsed += usize::from(TeacherTrainingConfig::from_toml_str(text, None).is_ok());
        }
        put(&path, input);
        let _ = TeacherTrainingConfig::from_toml_file(&path, None);
    }
    assert!(parsed > 0);
}
