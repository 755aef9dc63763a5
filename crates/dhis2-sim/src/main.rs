//! The `dhis2-sim` command line: parses flags and runs the server (see README.md).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use dhis2_sim::{Config, SeedMode, ServeOptions, ServerVersion};

/// A native stand-in for the DHIS2 Web API subset tracker-offline depends on.
#[derive(Debug, Parser)]
#[command(name = "dhis2-sim", version = env!("CARGO_PKG_VERSION"), disable_version_flag = true)]
struct Args {
    /// Port to listen on; 0 picks a free port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Interface to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Directory for the SQLite database (created if missing); a temporary one if omitted.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Data to seed into an empty database: `demo` or `none`.
    #[arg(long, default_value = "none")]
    seed: SeedMode,
    /// Directory served as static files at `/`.
    #[arg(long)]
    www: Option<PathBuf>,
    /// DHIS2 version to answer as: 2.39, 2.40, 2.41 or 2.42 (a patch like 2.40.3 is allowed).
    #[arg(long, default_value = "2.40")]
    version: ServerVersion,
    /// With `--seed demo`: generate this many realistic tracked entities (once per database).
    #[arg(long, default_value_t = 0)]
    tracked_entities: usize,
    /// Enable fault injection and the `/__sim` admin API (request log, counters).
    #[arg(long)]
    faults: bool,
    /// JSON fault rules active from the start (a list, or `{"seed":N,"rules":[…]}`); implies --faults.
    #[arg(long, value_name = "FILE")]
    faults_file: Option<PathBuf>,
    /// Overload mode: at most N `/api` requests in flight, the next ones get 503 at once; implies --faults.
    #[arg(long, value_name = "N")]
    max_inflight: Option<usize>,
    /// `Retry-After` (seconds) of the overload 503.
    #[arg(long, value_name = "S", default_value_t = 1)]
    retry_after_secs: u64,
    /// Serve the static folder DIR at `/NAME/` (e.g. `tracker-capture=/work/tc-build`); repeatable.
    #[arg(long = "app", value_name = "NAME=DIR", value_parser = dhis2_sim::parse_app)]
    apps: Vec<(String, PathBuf)>,
    /// Store this file as the instance's custom script (`/api/files/script`) at start.
    #[arg(long, value_name = "FILE")]
    files_script: Option<PathBuf>,
    /// Store this file as the instance's custom style (`/api/files/style`) at start.
    #[arg(long, value_name = "FILE")]
    files_style: Option<PathBuf>,
}

fn read_text(flag: &str, file: Option<&PathBuf>) -> Result<Option<String>, String> {
    file.map(|f| std::fs::read_to_string(f).map_err(|e| format!("cannot read {flag} {}: {e}", f.display()))).transpose()
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    // Kept alive until the server stops; deleted on drop.
    let mut _temp_dir = None;
    let data_dir = match args.data {
        Some(dir) => dir,
        None => match tempfile::Builder::new().prefix("dhis2-sim-").tempdir() {
            Ok(dir) => {
                let path = dir.path().to_owned();
                _temp_dir = Some(dir);
                path
            }
            Err(e) => {
                eprintln!("dhis2-sim: cannot create a temporary data directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut faults = dhis2_sim::faults::FaultsConfig {
        enabled: args.faults || args.faults_file.is_some() || args.max_inflight.is_some(),
        max_inflight: args.max_inflight,
        retry_after_secs: args.retry_after_secs,
        ..Default::default()
    };
    if let Some(file) = &args.faults_file {
        match std::fs::read(file).map_err(|e| e.to_string()).and_then(|b| dhis2_sim::faults::RuleSet::parse(&b)) {
            Ok(rules) => faults.rules = rules,
            Err(e) => {
                eprintln!("dhis2-sim: cannot read fault rules from {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    for (name, dir) in &args.apps {
        if !dir.is_dir() {
            // Served anyway (404s until it exists): the app may still be building.
            eprintln!("dhis2-sim: warning: --app {name}={}: not a directory (yet)", dir.display());
        }
    }
    let (files_script, files_style) = match (
        read_text("--files-script", args.files_script.as_ref()),
        read_text("--files-style", args.files_style.as_ref()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("dhis2-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = ServeOptions {
        host: args.host,
        port: args.port,
        config: Config {
            data_dir,
            seed: args.seed,
            www: args.www,
            version: args.version,
            faults,
            tracked_entities: args.tracked_entities,
        },
        extras: dhis2_sim::Extras { apps: args.apps, files_script, files_style },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dhis2-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dhis2_sim::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhis2-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
