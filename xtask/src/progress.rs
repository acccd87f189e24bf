//! Progress bars shared by the commands (indicatif, one style).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` units with a message slot for live figures.
pub fn bar(len: usize, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let template = format!("{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ({{eta}} left) {{msg}}");
    bar.set_style(
        ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "),
    );
    bar
}

/// Prints a line above the bar, or to stderr when the bar is hidden (not a terminal), so
/// logs of unattended runs still show progress.
pub fn log(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
