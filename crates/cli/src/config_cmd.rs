//! `portcullis config check|schema|example`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use portcullis_gateway::config;

use crate::{environment, print_line};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration; prints each error with its key path and line.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
    /// Print a fully commented example configuration.
    Example,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check { config: path } => {
            let env = environment();
            let source = config::resolve_source(path.as_deref(), &env);
            match config::load(&source, &env) {
                Ok(loaded) => match portcullis_gateway::policy::build_from_config(&loaded) {
                    Ok(_) => {
                        print_line(&format!("{source}: ok"))?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(issues) => {
                        #[expect(clippy::print_stderr, reason = "errors go to stderr")]
                        {
                            eprintln!("invalid policy in {source}:");
                            for issue in issues {
                                eprintln!("  {issue}");
                            }
                        }
                        Ok(ExitCode::FAILURE)
                    }
                },
                Err(err) => {
                    #[expect(clippy::print_stderr, reason = "errors go to stderr")]
                    {
                        eprintln!("{err}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        ConfigCommand::Schema => {
            print_line(&serde_json::to_string_pretty(&config::json_schema())?)?;
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Example => {
            print_line(config::EXAMPLE.trim_end())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
