//! Manifests: lists of inputs (and per-input targets) for batch commands, as CSV with a header
//! (`input,target` — `target` empty for the command's default goal, `mute`/`untargeted` given
//! as `goal`, the true transcript optionally as `transcript`) or as JSON lines (`{"input": "...",
//! "target": "...", "goal": "...", "transcript": "..."}`). Relative paths are resolved against
//! the manifest's directory.

use crate::objective::Goal;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// One line of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    /// Audio file.
    pub input: PathBuf,
    /// Target transcript, if the line sets one.
    pub target: Option<String>,
    /// `targeted`, `untargeted` or `mute`, if the line sets it.
    pub goal: Option<String>,
    /// The reference (true) transcript, if the line gives one (`transcript`), for clean
    /// WER/CER.
    pub transcript: Option<String>,
}

impl ManifestEntry {
    /// The goal of this line: `mute` or `untargeted` (WER ≥ `min_wer`) as its `goal` says,
    /// targeted where it has a `target`, else the command's goal `default`.
    pub fn goal(&self, default: Option<&Goal>, min_wer: f64) -> Result<Goal> {
        match (self.goal.as_deref(), &self.target) {
            (Some("mute"), _) => Ok(Goal::Mute),
            (Some("untargeted"), _) => Ok(Goal::Untargeted { min_wer }),
            (_, Some(t)) => Ok(Goal::Targeted(t.clone())),
            (Some(_), None) => Err(Error::bad_file(
                &self.input,
                "goal `targeted` needs a target",
            )),
            (None, None) => default.cloned().ok_or_else(|| {
                Error::bad_file(&self.input, "no target in the manifest and no goal flag")
            }),
        }
    }
}

fn bad(path: &Path, line: usize, reason: impl std::fmt::Display) -> Error {
    // `FILE:LINE`, as compilers name a place in a file.
    Error::bad_file(format!("{}:{line}", path.display()), reason.to_string())
}

/// Read a manifest (`.jsonl`/`.json` as JSON lines, anything else as CSV).
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "json")
    );
    let entries = if jsonl {
        parse_jsonl(&text, path)?
    } else {
        parse_csv(&text, path)?
    };
    if entries.is_empty() {
        return Err(Error::bad_file(path, "the manifest lists no inputs"));
    }
    Ok(entries
        .into_iter()
        .map(|mut e| {
            if e.input.is_relative() {
                e.input = base.join(&e.input);
            }
            e
        })
        .collect())
}

fn check_goal(goal: Option<String>, path: &Path, line: usize) -> Result<Option<String>> {
    match goal.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(g @ ("targeted" | "untargeted" | "mute")) => Ok(Some(g.to_string())),
        Some(other) => Err(bad(
            path,
            line,
            format!("unknown goal {other:?} (targeted, untargeted or mute)"),
        )),
    }
}

fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<ManifestEntry>> {
    #[derive(serde::Deserialize)]
    struct Line {
        input: String,
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        goal: Option<String>,
        #[serde(default)]
        transcript: Option<String>,
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line)
            .map_err(|e| bad(path, i + 1, format!("not a manifest line: {e}")))?;
        if l.input.trim().is_empty() {
            return Err(bad(path, i + 1, "empty input path"));
        }
        out.push(ManifestEntry {
            input: PathBuf::from(l.input.trim()),
            target: l.target.filter(|t| !t.trim().is_empty()),
            goal: check_goal(l.goal, path, i + 1)?,
            transcript: l.transcript.filter(|t| !t.trim().is_empty()),
        });
    }
    Ok(out)
}

/// Split one CSV line (double quotes may enclose commas; `""` is a quote).
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut()?.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut()?.push(c),
        }
    }
    (!quoted).then_some(fields)
}

fn parse_csv(text: &str, path: &Path) -> Result<Vec<ManifestEntry>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| bad(path, 1, "empty manifest"))?;
    let header = csv_fields(header).ok_or_else(|| bad(path, 1, "unbalanced quotes"))?;
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let input_col =
        column("input").ok_or_else(|| bad(path, 1, "the header has no `input` column"))?;
    let (target_col, goal_col) = (column("target"), column("goal"));
    let transcript_col = column("transcript");
    let mut out = Vec::new();
    for (i, line) in lines {
        let fields = csv_fields(line).ok_or_else(|| bad(path, i + 1, "unbalanced quotes"))?;
        let get = |c: Option<usize>| c.and_then(|c| fields.get(c)).map(|f| f.trim().to_string());
        let input = get(Some(input_col))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(path, i + 1, "empty input path"))?;
        out.push(ManifestEntry {
            input: PathBuf::from(input),
            target: get(target_col).filter(|t| !t.is_empty()),
            goal: check_goal(get(goal_col), path, i + 1)?,
            transcript: get(transcript_col).filter(|t| !t.is_empty()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_csv_and_jsonl_with_clear_errors() {
        let dir = std::env::temp_dir().join(format!("advox-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("m.csv");
        std::fs::write(
            &csv,
            "input,target,goal,transcript\na.wav,\"turn off, now\",,hello\nb.wav,,mute,\n",
        )
        .unwrap();
        let e = read_manifest(&csv).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].input, dir.join("a.wav"));
        assert_eq!(e[0].target.as_deref(), Some("turn off, now"));
        assert_eq!(e[1].goal.as_deref(), Some("mute"));
        assert_eq!(e[0].transcript.as_deref(), Some("hello"));
        assert_eq!(e[1].transcript, None);
        let jsonl = dir.join("m.jsonl");
        std::fs::write(
            &jsonl,
            "{\"input\": \"/abs/c.wav\", \"target\": \"hi\"}\n\n",
        )
        .unwrap();
        assert_eq!(
            read_manifest(&jsonl).unwrap()[0].input,
            PathBuf::from("/abs/c.wav")
        );
        std::fs::write(&jsonl, "{\"input\": \"c.wav\"}\nnot json\n").unwrap();
        assert!(read_manifest(&jsonl)
            .unwrap_err()
            .to_string()
            .contains("m.jsonl:2"));
        std::fs::write(&csv, "file,target\na.wav,x\n").unwrap();
        assert!(read_manifest(&csv)
            .unwrap_err()
            .to_string()
            .contains("no `input` column"));
        std::fs::write(&csv, "input,goal\na.wav,loud\n").unwrap();
        assert!(read_manifest(&csv)
            .unwrap_err()
            .to_string()
            .contains("unknown goal"));
        std::fs::write(&csv, "input\n").unwrap();
        assert!(read_manifest(&csv)
            .unwrap_err()
            .to_string()
            .contains("no inputs"));
    }
}
