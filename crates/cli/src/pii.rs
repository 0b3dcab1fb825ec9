//! `portcullis pii scan|redact`: offline PII and secret detection on stdin.
//!
//! Without `--jsonl` the whole of stdin is one text; with it, each line is a JSON object with a
//! `text` field. Keys for `hash` and `synthetic` come from `PORTCULLIS_PII_KEY` (at least 16
//! bytes); without it a per-process random key is used, so values differ between runs.

use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use portcullis_sanitize::{
    Counts, PiiConfig, SanitizeError, Sanitizer, Scope, Strategy, StrategyTable, Vault,
};

/// Exit code when `block` found something.
const EXIT_BLOCKED: u8 = 3;
/// Environment variable holding the HMAC key for `hash` and `synthetic`.
const KEY_ENV: &str = "PORTCULLIS_PII_KEY";

#[derive(Debug, Subcommand)]
pub enum PiiCommand {
    /// Print the detected spans of each input as JSON: {"spans":[{"start":S,"end":E,"type":T}]}.
    Scan {
        /// Read JSON lines with a `text` field and write one result per line.
        #[arg(long)]
        jsonl: bool,
    },
    /// Print the sanitized text (with --jsonl, {"text":...,"stats":{...}} per line).
    Redact {
        /// What to do with every finding.
        #[arg(long, value_enum, default_value_t = StrategyArg::Redact)]
        strategy: StrategyArg,
        /// Read JSON lines with a `text` field and write one result per line.
        #[arg(long)]
        jsonl: bool,
    },
}

/// The strategies offered on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyArg {
    Redact,
    Synthetic,
    Hash,
    Block,
}

pub fn run(cmd: PiiCommand) -> anyhow::Result<ExitCode> {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut stderr = std::io::stderr().lock();
    let code = process(cmd, &mut stdin, &mut stdout, &mut stderr)?;
    stdout.flush()?;
    Ok(code)
}

/// Runs one command over `input`, writing results to `out` and block reports to `err`.
fn process(
    cmd: PiiCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        PiiCommand::Scan { jsonl } => {
            let sanitizer = build(Strategy::Redact)?;
            let io = Io { input, out, err };
            for_each_input(&sanitizer, jsonl, io, |text, out| {
                let spans: Vec<String> = sanitizer
                    .scan(text)?
                    .iter()
                    .map(|span| {
                        format!(
                            r#"{{"start":{},"end":{},"type":"{}"}}"#,
                            span.start,
                            span.end,
                            span.entity.label()
                        )
                    })
                    .collect();
                writeln!(out, r#"{{"spans":[{}]}}"#, spans.join(","))?;
                Ok(None)
            })
        }
        PiiCommand::Redact { strategy, jsonl } => {
            let strategy = match strategy {
                StrategyArg::Redact => Strategy::Redact,
                StrategyArg::Synthetic => Strategy::Synthetic,
                StrategyArg::Hash => Strategy::Hash,
                StrategyArg::Block => Strategy::Block,
            };
            let sanitizer = build(strategy)?;
            let scope = Scope::new("cli");
            let io = Io { input, out, err };
            for_each_input(&sanitizer, jsonl, io, |text, out| {
                let mut vault = Vault::new();
                let sanitized = match sanitizer.apply(text, &scope, &mut vault) {
                    Ok(sanitized) => sanitized,
                    Err(SanitizeError::Blocked { counts }) => return Ok(Some(counts)),
                    Err(err) => return Err(err.into()),
                };
                if jsonl {
                    let stats: Vec<String> = sanitized
                        .stats
                        .iter()
                        .map(|(ty, n)| format!(r#""{}":{n}"#, ty.label()))
                        .collect();
                    let text = serde_json::to_string(&sanitized.text)?;
                    writeln!(out, r#"{{"text":{text},"stats":{{{}}}}}"#, stats.join(","))?;
                } else {
                    out.write_all(sanitized.text.as_bytes())?;
                }
                Ok(None)
            })
        }
    }
}

fn build(strategy: Strategy) -> anyhow::Result<Sanitizer> {
    let config = PiiConfig {
        strategies: StrategyTable::uniform(strategy),
        ..PiiConfig::default()
    };
    let key = match std::env::var(KEY_ENV) {
        Ok(key) => key.into_bytes(),
        Err(_) => random_key(),
    };
    Sanitizer::new(config, &key).with_context(|| format!("cannot build the sanitizer ({KEY_ENV})"))
}

/// 32 bytes from the standard library's per-process random hasher keys.
fn random_key() -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    for round in 0u64..4 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(round);
        key.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    key
}

/// The streams one command reads and writes.
struct Io<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

/// Runs `handle` on every input; an input that `handle` reports as blocked is written to
/// stderr with its counts, and the exit code becomes [`EXIT_BLOCKED`].
fn for_each_input(
    sanitizer: &Sanitizer,
    jsonl: bool,
    io: Io<'_>,
    mut handle: impl FnMut(&str, &mut dyn Write) -> anyhow::Result<Option<Counts>>,
) -> anyhow::Result<ExitCode> {
    let limit = sanitizer.config().max_input_bytes;
    let Io { input, out, err } = io;
    let mut n_blocked = 0usize;
    let mut report = |line_no: Option<usize>, counts: Counts| -> anyhow::Result<()> {
        n_blocked += 1;
        match line_no {
            Some(n) => writeln!(err, "portcullis: line {n}: blocked: {counts}")?,
            None => writeln!(err, "portcullis: blocked: {counts}")?,
        }
        Ok(())
    };
    if jsonl {
        for (idx, line) in input.lines().enumerate() {
            let line = line.context("cannot read stdin")?;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("line {}: not JSON", idx + 1))?;
            let text = value
                .get("text")
                .and_then(serde_json::Value::as_str)
                .with_context(|| format!("line {}: no string field `text`", idx + 1))?;
            if let Some(counts) = handle(text, out)? {
                report(Some(idx + 1), counts)?;
            }
        }
    } else {
        // Read one byte past the limit so that an oversized input is refused, not truncated.
        let mut buf = Vec::new();
        input
            .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
        let text = String::from_utf8(buf).context("stdin is not UTF-8")?;
        if let Some(counts) = handle(&text, out)? {
            report(None, counts)?;
        }
    }
    Ok(if n_blocked > 0 {
        ExitCode::from(EXIT_BLOCKED)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(cmd: PiiCommand, input: &str, expected_out: &str, expected_err: &str, code: u8) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let exit = process(cmd, &mut input.as_bytes(), &mut out, &mut err).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected_out);
        assert_eq!(String::from_utf8(err).unwrap(), expected_err);
        assert_eq!(exit, ExitCode::from(code));
    }

    fn redact(strategy: StrategyArg, jsonl: bool) -> PiiCommand {
        PiiCommand::Redact { strategy, jsonl }
    }

    #[test]
    fn scan_prints_spans() {
        let expected = r#"{"spans":[{"start":5,"end":20,"type":"EMAIL"}]}"#;
        check(
            PiiCommand::Scan { jsonl: false },
            "mail bob@example.com",
            &format!("{expected}\n"),
            "",
            0,
        );
        let input = "{\"text\":\"mail bob@example.com\"}\n{\"text\":\"none\"}\n";
        check(
            PiiCommand::Scan { jsonl: true },
            input,
            &format!("{expected}\n{{\"spans\":[]}}\n"),
            "",
            0,
        );
    }

    #[test]
    fn redact_prints_text_and_stats() {
        check(
            redact(StrategyArg::Redact, false),
            "ip 10.0.0.1",
            "ip [REDACTED_IP]",
            "",
            0,
        );
        check(
            redact(StrategyArg::Redact, true),
            "{\"text\":\"ip 10.0.0.1\"}\n",
            "{\"text\":\"ip [REDACTED_IP]\",\"stats\":{\"IP\":1}}\n",
            "",
            0,
        );
    }

    #[test]
    fn block_exits_non_zero_with_counts_on_stderr() {
        check(
            redact(StrategyArg::Block, false),
            "a@b.com c@d.org 10.0.0.1",
            "",
            "portcullis: blocked: EMAIL=2, IP=1\n",
            EXIT_BLOCKED,
        );
        check(redact(StrategyArg::Block, false), "clean", "clean", "", 0);
    }

    #[test]
    fn bad_json_lines_are_errors() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let res = process(
            PiiCommand::Scan { jsonl: true },
            &mut "{\"x\":1}\n".as_bytes(),
            &mut out,
            &mut err,
        );
        assert!(res.is_err());
    }
}
