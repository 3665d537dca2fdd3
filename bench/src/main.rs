//! dualca-bench: the load generator's command line (the library, `lib.rs`, does the work).

use std::process::ExitCode;

use clap::Parser;
use dualca_bench::{render_text, run, runtime, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match runtime(&args) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dualca-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("dualca-bench: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", render_text(&report));
            }
            if report.succeeded == report.flows {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("dualca-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
