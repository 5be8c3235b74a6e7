//! The daemon's flags for flow records: memory, log file, and the datapath's record rate.

use std::path::PathBuf;

use clap::Args;
use firewall_common::conntrack::Config;
use thiserror::Error;

use super::{
    hub::DEFAULT_CAPACITY,
    logfile::{DEFAULT_FILES, DEFAULT_MAX_BYTES, FlowLogOptions},
};

const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// Records per second and CPU the datapath sends unless told otherwise.
pub const DEFAULT_RATE: u32 = NANOS_PER_SECOND / Config::DEFAULT.event_interval_ns;

/// What the daemon does with flow records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowOptions {
    /// Records kept in memory for `GET /v1/flows`.
    pub buffer: usize,
    /// The flow log, if one is written.
    pub log: Option<FlowLogOptions>,
}

impl Default for FlowOptions {
    fn default() -> Self {
        FlowOptions {
            buffer: DEFAULT_CAPACITY,
            log: None,
        }
    }
}

/// Flow record flags of `firewall daemon`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct FlowArgs {
    /// Flow records kept in memory for `firewall flows` (each takes about 1 KiB).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub flow_buffer: u32,
    /// Write every flow record as a JSON line to this file, rotated by size.
    #[arg(long, value_name = "PATH")]
    pub flow_log: Option<PathBuf>,
    /// Rotate the flow log once it passes this many bytes (at least 4096) [default: 64 MiB].
    #[arg(long, value_name = "N", requires = "flow_log",
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub flow_log_max_bytes: Option<u64>,
    /// Rotated flow logs kept: PATH.1 (newest) to PATH.K (oldest) [default: 5].
    #[arg(long, value_name = "K", requires = "flow_log",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub flow_log_files: Option<u32>,
    /// Flow records each CPU may send per second; beyond that they are counted as
    /// rate-limited, not sent. 0 sends every record.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(NANOS_PER_SECOND)))]
    pub flow_record_rate: u32,
    /// Flow records a CPU may send at once above its rate, after a quiet spell
    /// [default: 256].
    #[arg(long, value_name = "N")]
    pub flow_record_burst: Option<u32>,
}

/// A combination of flow record flags that makes no sense.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FlowOptionError {
    /// A burst was given for an unlimited rate.
    #[error(
        "--flow-record-burst {0} has no effect with --flow-record-rate 0 (every record is \
         sent); leave it out or set a rate"
    )]
    BurstWithoutRate(u32),
}

impl FlowArgs {
    /// What the daemon keeps and logs.
    pub fn options(&self) -> FlowOptions {
        FlowOptions {
            buffer: self.flow_buffer as usize,
            log: self.flow_log.as_ref().map(|path| FlowLogOptions {
                path: path.clone(),
                max_bytes: self.flow_log_max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
                files: self
                    .flow_log_files
                    .map_or(DEFAULT_FILES, |files| files as usize),
            }),
        }
    }

    /// Sets the datapath's record rate in `config`: one record per `1 s / rate` (rounded to
    /// the nearest nanosecond) with `burst` of slack; a rate of 0 turns the limit off.
    ///
    /// # Errors
    /// [`FlowOptionError::BurstWithoutRate`] for a burst with no rate.
    pub fn apply_rate(&self, config: &mut Config) -> Result<(), FlowOptionError> {
        let rate = self.flow_record_rate;
        if rate == 0 {
            if let Some(burst) = self.flow_record_burst {
                return Err(FlowOptionError::BurstWithoutRate(burst));
            }
            config.event_interval_ns = 0;
            return Ok(());
        }
        // The flag's range keeps the rate within 1..=1e9, so the interval is at least 1 ns.
        config.event_interval_ns = (NANOS_PER_SECOND + rate / 2) / rate;
        config.event_burst = self
            .flow_record_burst
            .unwrap_or(Config::DEFAULT.event_burst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flows: FlowArgs,
    }

    fn parse(args: &[&str]) -> Result<FlowArgs, String> {
        Cli::try_parse_from(std::iter::once("daemon").chain(args.iter().copied()))
            .map(|cli| cli.flows)
            .map_err(|e| e.to_string())
    }

    fn config(args: &[&str]) -> Result<Config, String> {
        let mut config = Config::default();
        parse(args)?
            .apply_rate(&mut config)
            .map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults_keep_the_datapaths_rate_and_no_log() {
        let args = parse(&[]).expect("parses");
        assert_eq!(DEFAULT_RATE, 2_000);
        assert_eq!(args.options(), FlowOptions::default());
        let config = config(&[]).expect("valid");
        assert_eq!(config.event_interval_ns, Config::DEFAULT.event_interval_ns);
        assert_eq!(config.event_burst, Config::DEFAULT.event_burst);
    }

    #[test]
    fn the_rate_becomes_an_interval_and_zero_turns_the_limit_off() {
        let config_of = |rate: &str, burst: Option<&str>| {
            let mut args = vec!["--flow-record-rate", rate];
            if let Some(burst) = burst {
                args.extend(["--flow-record-burst", burst]);
            }
            config(&args).expect("valid")
        };
        let hundred = config_of("100", Some("10"));
        assert_eq!(
            (hundred.event_interval_ns, hundred.event_burst),
            (10_000_000, 10)
        );
        assert_eq!(config_of("3", None).event_interval_ns, 333_333_333);
        assert_eq!(config_of("1000000000", None).event_interval_ns, 1);
        assert_eq!(config_of("1", Some("0")).event_burst, 0);
        assert_eq!(config_of("0", None).event_interval_ns, 0);
    }

    #[test]
    fn bad_rates_and_bursts_are_refused_naming_the_flag() {
        for (args, expected) in [
            (
                vec!["--flow-record-rate", "1000000001"],
                "--flow-record-rate",
            ),
            (vec!["--flow-record-rate=-5"], "--flow-record-rate"),
            (vec!["--flow-record-rate", "fast"], "--flow-record-rate"),
            (vec!["--flow-record-burst=-1"], "--flow-record-burst"),
            (vec!["--flow-buffer", "0"], "--flow-buffer"),
            (vec!["--flow-log-max-bytes", "4096"], "--flow-log"),
            (
                vec!["--flow-log", "f", "--flow-log-max-bytes", "10"],
                "--flow-log-max-bytes",
            ),
            (
                vec!["--flow-log", "f", "--flow-log-files", "0"],
                "--flow-log-files",
            ),
        ] {
            let message = parse(&args).expect_err("refused");
            assert!(message.contains(expected), "{args:?}: {message}");
        }
        let message =
            config(&["--flow-record-rate", "0", "--flow-record-burst", "64"]).expect_err("refused");
        assert!(
            message.starts_with("--flow-record-burst 64 has no effect with --flow-record-rate 0"),
            "{message}"
        );
    }

    #[test]
    fn log_flags_fill_the_log_options() {
        let args = parse(&[
            "--flow-log",
            "/var/log/firewall/flows.log",
            "--flow-log-max-bytes",
            "1048576",
            "--flow-log-files",
            "3",
            "--flow-buffer",
            "500",
        ])
        .expect("parses");
        assert_eq!(
            args.options(),
            FlowOptions {
                buffer: 500,
                log: Some(FlowLogOptions {
                    path: "/var/log/firewall/flows.log".into(),
                    max_bytes: 1_048_576,
                    files: 3,
                }),
            }
        );
        let defaults = parse(&["--flow-log", "flows.log"])
            .expect("parses")
            .options();
        let log = defaults.log.expect("a log");
        assert_eq!(
            (log.max_bytes, log.files),
            (DEFAULT_MAX_BYTES, DEFAULT_FILES)
        );
    }
}
