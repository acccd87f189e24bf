//! Prompt files: one JSON object per line, either `{"prompt": "..."}` (raw text, or a
//! user turn when the chat template is applied) or `{"messages": [{"role", "content"}]}`,
//! optionally with `"answer"` for evaluation and `"source"` for the record. Errors name the
//! file and line.

use std::path::Path;

use opdlm_model::ChatMessage;
use serde::Deserialize;

/// One line of a prompt file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptRecord {
    /// Raw prompt text.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A conversation, rendered by the chat template (`--chat`).
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// Reference answer (evaluation, and the bd3lm objective's responses).
    #[serde(default)]
    pub answer: Option<String>,
    /// Where the prompt comes from (a generator's template family, a dataset): kept for
    /// the record, never read.
    #[serde(default)]
    pub source: Option<String>,
}

impl PromptRecord {
    /// The conversation this record stands for (a bare prompt is one user turn).
    pub fn messages(&self) -> Vec<ChatMessage> {
        match (&self.messages, &self.prompt) {
            (Some(m), _) => m.clone(),
            (None, Some(p)) => vec![ChatMessage::user(p.clone())],
            (None, None) => vec![],
        }
    }
}

/// A prompt file that cannot be read, naming the file and line.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are named by the messages
pub enum PromptFileError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A line is not a prompt record.
    #[error("{path}:{line}: {message}")]
    Line { path: String, line: usize, message: String },
    /// No prompt at all.
    #[error("{path}: no prompts (the file is empty)")]
    Empty { path: String },
}

/// Reads every record of a JSONL prompt file; blank lines are skipped.
pub fn read_prompt_file(path: &Path) -> Result<Vec<PromptRecord>, PromptFileError> {
    Ok(read_prompt_lines(path)?.into_iter().map(|(_, record)| record).collect())
}

/// [`read_prompt_file`], with each record's 1-based line number (for later errors).
pub fn read_prompt_lines(path: &Path) -> Result<Vec<(usize, PromptRecord)>, PromptFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| PromptFileError::Io { path: shown.clone(), source })?;
    parse_prompt_lines(&text, &shown)
}

/// Parses JSONL text; `origin` names it in errors.
pub fn parse_prompts(text: &str, origin: &str) -> Result<Vec<PromptRecord>, PromptFileError> {
    Ok(parse_prompt_lines(text, origin)?.into_iter().map(|(_, record)| record).collect())
}

/// [`parse_prompts`], with each record's 1-based line number.
pub fn parse_prompt_lines(
    text: &str,
    origin: &str,
) -> Result<Vec<(usize, PromptRecord)>, PromptFileError> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| PromptFileError::Line {
            path: origin.to_string(),
            line: index + 1,
            message,
        };
        let record: PromptRecord = serde_json::from_str(line)
            .map_err(|e| bad(format!("not a valid prompt record: {e}")))?;
        match (&record.prompt, &record.messages) {
            (None, None) => {
                return Err(bad("expected a `prompt` string or a `messages` list".into()))
            }
            (Some(_), Some(_)) => {
                return Err(bad("give either `prompt` or `messages`, not both".into()))
            }
            (Some(p), None) if p.trim().is_empty() => return Err(bad("`prompt` is empty".into())),
            (None, Some(m)) if m.is_empty() => return Err(bad("`messages` is empty".into())),
            _ => {}
        }
        records.push((index + 1, record));
    }
    if records.is_empty() {
        return Err(PromptFileError::Empty { path: origin.to_string() });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prompts_and_chats_and_skips_blank_lines() {
        let text = "{\"prompt\": \"hi\", \"answer\": \"4\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}]}\n";
        let records = parse_prompts(text, "p.jsonl").unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].answer.as_deref(), Some("4"));
        assert_eq!(records[1].messages(), vec![ChatMessage::user("yo")]);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let cases = [
            ("{\"prompt\": \"a\"}\n{oops\n", "p.jsonl:2: not a valid prompt record"),
            ("{\"prompt\": \"a\"}\n{\"answer\": \"1\"}\n", "p.jsonl:2: expected a `prompt`"),
            ("{\"prompt\": \"  \"}\n", "p.jsonl:1: `prompt` is empty"),
            ("{\"prompt\": \"a\", \"promt\": 1}\n", "p.jsonl:1: not a valid prompt record: unknown field `promt`"),
            ("\n{\"messages\": [{\"content\": \"hi\"}]}\n", "p.jsonl:2: not a valid prompt record: missing field `role`"),
            ("{\"messages\": []}\n", "p.jsonl:1: `messages` is empty"),
            ("{\"prompt\": 7}\n", "p.jsonl:1: not a valid prompt record: invalid type: integer `7`, expected a string"),
            ("\n\n", "p.jsonl: no prompts"),
        ];
        for (text, expected) in cases {
            let err = parse_prompts(text, "p.jsonl").unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
