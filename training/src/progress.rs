//! Progress of long work (training, rollouts, evaluation, benchmarks), for people and for
//! logs. On a terminal it is an indicatif bar. When stderr is not a terminal (`nohup`, CI
//! logs, `| tee`) a bar would print nothing until the end, so a plain line goes to stderr
//! at every tenth of the work and at least every 30 seconds.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is printed at the least.
const PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// A progress display over `len` units of work.
pub struct Progress {
    bar: ProgressBar,
    plain: Option<PlainLines>,
}

/// Plain-text progress: where lines go, and when the last one was printed.
struct PlainLines {
    sink: Box<dyn Write + Send + Sync>,
    label: String,
    unit: String,
    len: u64,
    position: u64,
    message: String,
    started: Instant,
    last_time: Instant,
    last_tenth: u64,
}

impl Progress {
    /// A bar on a terminal, plain lines on stderr otherwise. `label` names the work in
    /// plain lines ("training"); `unit` names what is counted ("steps").
    pub fn new(len: usize, label: &str, unit: &str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(len as u64);
            let template = format!(
                "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ({{eta}} left) {{msg}}"
            );
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            Self { bar, plain: None }
        } else {
            Self::plain(len, label, unit, Box::new(std::io::stderr()))
        }
    }

    /// Plain lines into `sink` (what [`Progress::new`] does off a terminal; tests use it
    /// to read the lines).
    pub fn plain(len: usize, label: &str, unit: &str, sink: Box<dyn Write + Send + Sync>) -> Self {
        let now = Instant::now();
        let plain = PlainLines {
            sink,
            label: label.into(),
            unit: unit.into(),
            len: len as u64,
            position: 0,
            message: String::new(),
            started: now,
            last_time: now,
            last_tenth: 0,
        };
        Self { bar: ProgressBar::hidden(), plain: Some(plain) }
    }

    /// Starts counting at `position` (a resumed run), without printing.
    pub fn set_position(&mut self, position: usize) {
        self.bar.set_position(position as u64);
        if let Some(plain) = &mut self.plain {
            plain.position = position as u64;
            plain.last_tenth = plain.tenth();
        }
    }

    /// Live figures shown after the count.
    pub fn set_message(&mut self, message: String) {
        if let Some(plain) = &mut self.plain {
            plain.message.clone_from(&message);
        }
        self.bar.set_message(message);
    }

    /// Counts `n` more units done.
    pub fn inc(&mut self, n: usize) {
        self.bar.inc(n as u64);
        if let Some(plain) = &mut self.plain {
            plain.position += n as u64;
            if plain.tenth() > plain.last_tenth || plain.last_time.elapsed() >= PLAIN_INTERVAL {
                plain.print();
            }
        }
    }

    /// A line of its own, above the bar (or between plain lines).
    pub fn println(&mut self, line: &str) {
        match &mut self.plain {
            Some(plain) => {
                let _ = writeln!(plain.sink, "{line}");
            }
            None => self.bar.println(line),
        }
    }

    /// Ends the display: the bar stays on screen; plain output ends with a final line
    /// unless the last one already said "done".
    pub fn finish(&mut self) {
        match &mut self.plain {
            Some(plain) if plain.last_tenth < 10 || plain.position < plain.len => plain.print(),
            Some(_) => {}
            None => self.bar.finish(),
        }
    }

    /// Ends the display and removes the bar from the terminal.
    pub fn finish_and_clear(&mut self) {
        if self.plain.is_none() {
            self.bar.finish_and_clear();
        } else {
            self.finish();
        }
    }
}

impl PlainLines {
    /// Tenths of the work done (0..=10).
    fn tenth(&self) -> u64 {
        (self.position * 10).checked_div(self.len).unwrap_or(10).min(10)
    }

    fn print(&mut self) {
        let elapsed = self.started.elapsed();
        let percent = (self.position * 100).checked_div(self.len).unwrap_or(100);
        let mut line = format!(
            "{}: {}/{} {} ({percent}%), {} elapsed",
            self.label,
            self.position,
            self.len,
            self.unit,
            clock(elapsed)
        );
        if self.position > 0 && self.position < self.len {
            let left = elapsed.mul_f64((self.len - self.position) as f64 / self.position as f64);
            line.push_str(&format!(", ~{} left", clock(left)));
        }
        if !self.message.is_empty() {
            line.push_str(&format!(" | {}", self.message));
        }
        let _ = writeln!(self.sink, "{line}");
        let _ = self.sink.flush();
        self.last_time = Instant::now();
        self.last_tenth = self.tenth();
    }
}

/// `1h02m03s`, `4m05s`, `6s`.
fn clock(duration: Duration) -> String {
    let s = duration.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn off_a_terminal_a_line_is_printed_at_every_tenth_and_at_the_end() {
        let captured = Captured::default();
        let mut progress = Progress::plain(40, "training", "steps", Box::new(captured.clone()));
        progress.set_message("loss 1.0".into());
        for _ in 0..40 {
            progress.inc(1);
        }
        progress.finish();
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "{text}");
        assert!(lines[0].starts_with("training: 4/40 steps (10%)"), "{}", lines[0]);
        assert!(lines[0].ends_with("| loss 1.0"), "{}", lines[0]);
        assert!(lines[9].starts_with("training: 40/40 steps (100%)"), "{}", lines[9]);
    }

    #[test]
    fn a_resumed_count_starts_where_it_left_off() {
        let captured = Captured::default();
        let mut progress = Progress::plain(10, "training", "steps", Box::new(captured.clone()));
        progress.set_position(5);
        progress.inc(1);
        progress.finish();
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("training: 6/10 steps (60%)"), "{text}");
        assert!(text.lines().last().unwrap().starts_with("training: 6/10 steps"), "{text}");
    }
}
