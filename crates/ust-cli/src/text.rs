//! What the commands share in printing: `--json FILE`, `--quiet` and the progress bars.

/// Writes `value` as pretty JSON to `path`, or on stdout when `path` is `-`: what every
/// command's `--json FILE` does.
pub fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(value)? + "\n";
    if path == std::path::Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    std::fs::write(path, text)
        .with_context(|| format!("{}: cannot write the JSON report", path.display()))?;
    tracing::info!("wrote {}", path.display());
    Ok(())
}

/// `--quiet`: no progress bars.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Hides every later progress bar (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// The progress bar of a loop over `len` items named `unit` (`evaluate`, `predict` and
/// `baseline` over images, one-class training over steps): drawn only when stderr is a
/// terminal (indicatif's own check), so logs in files stay clean, and never with `--quiet`.
pub fn progress_bar(what: &str, len: usize, unit: &str) -> indicatif::ProgressBar {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} (eta {{eta}}) {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// The engine's progress over a test split drawn as a progress bar labelled `what` (`ust
/// evaluate`, `ust baseline dense`).
pub struct EvaluationBar {
    what: &'static str,
    bar: Option<indicatif::ProgressBar>,
}

impl EvaluationBar {
    pub fn new(what: &'static str) -> Self {
        Self { what, bar: None }
    }
}

impl ust_engine::EvaluationObserver for EvaluationBar {
    fn started(&mut self, images: usize) {
        self.bar = Some(progress_bar(self.what, images, "images"));
    }

    fn image_done(&mut self, _: usize, _: &ust_data::TestSample, _: bool) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finished(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
