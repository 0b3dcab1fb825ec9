//! `pii-bench`: generate the corpus, run Portcullis on it, score any tool's predictions.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_pii_bench::corpus::{CorpusSpec, Message, generate};
use portcullis_pii_bench::score::{Prediction, render, score};
use portcullis_sanitize::{PiiConfig, Sanitizer, Scope, Vault};

/// Benchmark kit for the Portcullis PII sanitizer.
#[derive(Debug, Parser)]
#[command(name = "pii-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a seeded labelled corpus as JSON lines.
    Gen {
        #[arg(long, default_value_t = 5)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Target size of each message in bytes.
        #[arg(long, default_value_t = 4096)]
        bytes: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run Portcullis (scan, then scan + redact for timing) and write predictions.
    Run {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Timing passes over the corpus.
        #[arg(long, default_value_t = 3)]
        passes: u32,
    },
    /// Score predictions against the corpus.
    Score {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long)]
        predictions: PathBuf,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr().lock(), "pii-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Gen {
            seed,
            messages,
            bytes,
            out,
        } => {
            let corpus = generate(CorpusSpec {
                seed,
                messages,
                message_bytes: bytes,
            });
            write_lines(&out, &corpus)
        }
        Command::Run {
            corpus,
            out,
            passes,
        } => {
            let corpus: Vec<Message> = read_lines(&corpus)?;
            let sanitizer =
                Sanitizer::new(PiiConfig::default(), b"pii-bench-key-0123456789abcdef")?;
            let predictions = portcullis_pii_bench::predict(&sanitizer, &corpus);
            write_lines(&out, &predictions)?;
            let mut micros = Vec::with_capacity(corpus.len() * passes as usize);
            let scope = Scope::new("bench");
            // One untimed pass warms the regex caches: the figures are for a steady state.
            for message in &corpus {
                let mut vault = Vault::new();
                let _ = sanitizer.apply(&message.text, &scope, &mut vault);
            }
            for _ in 0..passes {
                for message in &corpus {
                    let elapsed = time(|| {
                        let mut vault = Vault::new();
                        sanitizer
                            .apply(&message.text, &scope, &mut vault)
                            .map(|s| s.text.len())
                    });
                    micros.push(elapsed);
                }
            }
            let bytes: usize = corpus.iter().map(|m| m.text.len()).sum::<usize>() * passes as usize;
            let line = timing_summary("portcullis", bytes, &mut micros);
            writeln!(std::io::stderr().lock(), "{line}")?;
            Ok(())
        }
        Command::Score {
            corpus,
            predictions,
            json,
        } => {
            let corpus: Vec<Message> = read_lines(&corpus)?;
            let predictions: Vec<Prediction> = read_lines(&predictions)?;
            let report = score(&corpus, &predictions);
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                out.write_all(render(&report).as_bytes())?;
            }
            Ok(())
        }
    }
}

/// Wall time of one call in microseconds.
#[expect(
    clippy::disallowed_methods,
    reason = "the benchmark harness measures wall time; it is not part of the gateway"
)]
fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let start = std::time::Instant::now();
    std::hint::black_box(f());
    start.elapsed().as_secs_f64() * 1e6
}

/// `name: N MB/s, p50 X us, p99 Y us` over per-message times.
fn timing_summary(name: &str, bytes: usize, micros: &mut [f64]) -> String {
    micros.sort_by(f64::total_cmp);
    let total: f64 = micros.iter().sum();
    let at = |q: f64| {
        let idx = ((micros.len() as f64 - 1.0) * q).round() as usize;
        micros.get(idx).copied().unwrap_or(0.0)
    };
    format!(
        "{name}: {:.1} MB/s, p50 {:.1} us, p99 {:.1} us over {} messages",
        bytes as f64 / total,
        at(0.5),
        at(0.99),
        micros.len()
    )
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().is_ok_and(|l| !l.trim().is_empty()) || line.is_err())
        .map(|(idx, line)| {
            let line = line?;
            serde_json::from_str(&line)
                .with_context(|| format!("`{}` line {}", path.display(), idx + 1))
        })
        .collect()
}

fn write_lines<T: serde::Serialize>(path: &Path, items: &[T]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
    let mut out = BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
