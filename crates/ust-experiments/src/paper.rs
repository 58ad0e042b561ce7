//! The paper's numbers (METHOD.md §9) and the deviations this machine forces (§10).

use crate::schema::Lambdas;

/// Table 1, students at p = 65, AU-PRO per MVTec AD category (folder names).
pub const TABLE1_STUDENTS: [(&str, f64); 15] = [
    ("carpet", 0.695),
    ("grid", 0.819),
    ("leather", 0.819),
    ("tile", 0.912),
    ("wood", 0.725),
    ("bottle", 0.918),
    ("cable", 0.865),
    ("capsule", 0.916),
    ("hazelnut", 0.937),
    ("metal_nut", 0.895),
    ("pill", 0.935),
    ("screw", 0.928),
    ("toothbrush", 0.863),
    ("transistor", 0.701),
    ("zipper", 0.933),
];

/// Table 1, mean AU-PRO of the students at p = 65.
pub const TABLE1_STUDENTS_MEAN: f64 = 0.857;

/// The paper's AU-PRO for `category` (a real MVTec AD folder name) with students at p = 65.
pub fn table1_students(category: &str) -> Option<f64> {
    TABLE1_STUDENTS
        .iter()
        .find(|(c, _)| *c == category)
        .map(|(_, v)| *v)
}

/// Whether `category` is one of MVTec AD's fifteen.
pub fn is_mvtec_category(category: &str) -> bool {
    table1_students(category).is_some()
}

/// Table 1, mean AU-PRO of a baseline (`pca` has none).
pub fn table1_baseline_mean(method: &str) -> Option<f64> {
    match method {
        "knn" => Some(0.640),
        "ocsvm" => Some(0.479),
        "kmeans" => Some(0.423),
        "ae" => Some(0.790),
        "vae" => Some(0.639),
        _ => None,
    }
}

/// Table 3, mean AU-PRO per row (`p=17`, `p=33`, `p=65`, `multi-scale`).
pub fn table3_mean(row: &str) -> Option<f64> {
    match row {
        "p=17" => Some(0.866),
        "p=33" => Some(0.900),
        "p=65" => Some(0.857),
        "multi-scale" => Some(0.914),
        _ => None,
    }
}

/// Table 2, mean AUROC over the ten classes of `dataset` (`mnist`, `cifar10`) for `method`
/// (students with a teacher of loss weights `lambdas`, or a baseline).
pub fn table2_mean(dataset: &str, method: &str, lambdas: Option<Lambdas>) -> Option<f64> {
    let mnist = dataset == "mnist";
    match method {
        "students" => {
            let l = lambdas?;
            if l.k == 1.0 && l.m == 0.0 && l.c == 1.0 {
                Some(if mnist { 0.9935 } else { 0.8196 })
            } else if l.k == 1.0 && l.m == 0.0 && l.c == 0.0 && mnist {
                Some(0.9917)
            } else {
                None
            }
        }
        "knn" => Some(if mnist { 0.9753 } else { 0.8189 }),
        "ae" => Some(if mnist { 0.9832 } else { 0.7898 }),
        _ => None,
    }
}

/// How a method is called in the paper's tables.
pub fn method_label(method: &str) -> &str {
    match method {
        "students" => "students",
        "knn" => "1-NN",
        "kmeans" => "K-Means",
        "ocsvm" => "OC-SVM",
        "pca" => "PCA",
        "ae" => "ℓ2-AE",
        "vae" => "VAE",
        other => other,
    }
}

/// The deviations from the paper in force for a run (METHOD.md §10).
#[derive(Debug, Clone, Default)]
pub struct DeviationInputs<'a> {
    pub preset: &'a str,
    /// MVTec-layout categories of the run (empty for Table 2).
    pub categories: &'a [String],
    pub uses_cifar: bool,
    /// Whether a teacher distilled from a backbone is involved (all but metric-only ones).
    pub distilled_teacher: bool,
    /// Whether a teacher is trained by this experiment.
    pub trains_teachers: bool,
    /// The students' score terms when not the paper's `e+v` (`[students].score`).
    pub ablated_score: Option<&'a str>,
    /// The students' training settings (key, value), when the run trains students.
    pub student_settings: &'a [(String, String)],
    /// The teacher files of the run that say they were distilled densely.
    pub dense_teachers: &'a [String],
}

/// One line per deviation.
pub fn deviations(d: &DeviationInputs<'_>) -> Vec<String> {
    let mut out = Vec::new();
    match d.preset {
        "paper" => out.push(
            "preset `paper`: the paper's schedules (student training: 256×256 images, whole \
             images, 100 epochs)."
                .to_string(),
        ),
        "cpu" => out.push(
            "preset `cpu`: schedules sized for a 2-core CPU machine instead of the paper's \
             (students: 128×128 images, 32×32 crops of the dense output, at most 600 steps and \
             200 training images; see crates/ust-detector/README.md). The paper's numbers come \
             from full-size training."
                .to_string(),
        ),
        other => out.push(format!(
            "preset `{other}`: a test-sized schedule; its numbers only show that the pipeline \
             runs and say nothing about the method."
        )),
    }
    out.push(
        "Teachers are pretrained on 1 000 ImageNet photos (one per class, \
         `$UST_SHARED/data/natural-images`) instead of ImageNet, with far fewer iterations than \
         the paper's 50 000 (the shipped teachers: `cpu` preset, see models/README.md)."
            .to_string(),
    );
    if d.distilled_teacher {
        out.push(
            "Knowledge distillation targets EfficientNet-Lite0's pooled 1280-d features instead \
             of ResNet-18's 512-d ones; compactness is the sum of squared off-diagonal \
             correlations."
                .to_string(),
        );
    }
    if !d.dense_teachers.is_empty() {
        out.push(format!(
            "Dense distillation (not the paper's patch-wise one): {} {} trained as a strided \
             network over windows of natural images, each output regressing the backbone's last \
             feature map at the same place (models/README.md).",
            d.dense_teachers
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if d.dense_teachers.len() == 1 {
                "was"
            } else {
                "were"
            }
        ));
    }
    if !d.categories.is_empty() {
        let stand_ins: Vec<&String> = d
            .categories
            .iter()
            .filter(|c| !is_mvtec_category(c))
            .collect();
        if !stand_ins.is_empty() {
            out.push(format!(
                "Data: {} {} not MVTec AD (stand-ins such as `$UST_SHARED/data/mvtec-layout`); \
                 the paper's per-category numbers do not apply and its means are for scale only.",
                stand_ins
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if stand_ins.len() == 1 { "is" } else { "are" }
            ));
        }
    }
    if d.uses_cifar {
        out.push(
            "CIFAR-10 is read from JPEG re-encodings (quality 75) of the 60 000 images, not the \
             original lossless files."
                .to_string(),
        );
    }
    if d.trains_teachers {
        out.push(
            "Teacher variants trained here use the same preset as the rest of the run.".to_string(),
        );
    }
    if !d.student_settings.is_empty() {
        let value = |key: &str| {
            d.student_settings
                .iter()
                .find(|(k, _)| k == key)
                .map_or("?", |(_, v)| v.as_str())
        };
        out.push(format!(
            "Image border (the paper does not say): students train and score with `{}` padding \
             of the image (teacher targets included), `{}` crop coverage and `{}` image order \
             and crops (`[students].padding`, `crop_coverage`, `student_sampling`; \
             crates/ust-detector/README.md measures them).",
            value("padding"),
            value("crop_coverage"),
            value("student_sampling")
        ));
        if value("standardize_inputs") == "true" {
            out.push(
                "Student inputs (the paper does not say): each channel standardised by the \
                 training images' mean and standard deviation, folded into the students' first \
                 convolution when the scale is saved (`[students].standardize_inputs`; a \
                 reparametrisation that lets the p = 65 students learn at all, \
                 crates/ust-detector/README.md)."
                    .to_string(),
            );
        }
    }
    if let Some(t) = d.ablated_score {
        let term = match t {
            "e" => "the regression error e",
            "v" => "the predictive variance v",
            other => other,
        };
        out.push(format!(
            "Anomaly score: {term} alone (`[students].score = \"{t}\"`, an ablation); the \
             paper's score and numbers sum both normalised terms."
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table1_mean_is_the_mean_of_the_categories() {
        let mean: f64 =
            TABLE1_STUDENTS.iter().map(|(_, v)| v).sum::<f64>() / TABLE1_STUDENTS.len() as f64;
        // The paper rounds to three digits: 0.85740 → .857.
        assert!((mean - TABLE1_STUDENTS_MEAN).abs() < 5e-4, "{mean}");
    }

    #[test]
    fn table2_lookup() {
        let kc = Lambdas {
            k: 1.0,
            m: 0.0,
            c: 1.0,
        };
        let k = Lambdas {
            k: 1.0,
            m: 0.0,
            c: 0.0,
        };
        let m = Lambdas {
            k: 0.0,
            m: 1.0,
            c: 0.0,
        };
        assert_eq!(table2_mean("mnist", "students", Some(kc)), Some(0.9935));
        assert_eq!(table2_mean("cifar10", "students", Some(kc)), Some(0.8196));
        assert_eq!(table2_mean("mnist", "students", Some(k)), Some(0.9917));
        assert_eq!(table2_mean("cifar10", "students", Some(k)), None);
        assert_eq!(table2_mean("mnist", "students", Some(m)), None);
        assert_eq!(table2_mean("cifar10", "knn", None), Some(0.8189));
        assert_eq!(table2_mean("mnist", "ocsvm", None), None);
    }

    #[test]
    fn dense_teachers_are_named_as_a_deviation() {
        let names = |d: &DeviationInputs<'_>| deviations(d).join("\n");
        let none = names(&DeviationInputs {
            preset: "cpu",
            ..Default::default()
        });
        assert!(!none.contains("Dense distillation"), "{none}");
        let two = [
            "models/teacher-p33.safetensors".to_string(),
            "x.safetensors".to_string(),
        ];
        let text = names(&DeviationInputs {
            preset: "cpu",
            dense_teachers: &two,
            ..Default::default()
        });
        assert!(
            text.contains(
                "Dense distillation (not the paper's patch-wise one): \
                 `models/teacher-p33.safetensors`, `x.safetensors` were trained"
            ),
            "{text}"
        );
    }
}
