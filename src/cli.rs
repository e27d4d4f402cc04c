//! Command line of the `secgroup-operator` binary.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "secgroup-operator",
    version,
    about = "Keeps cloud security group rules in the state that SecurityGroupRule objects declare"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crds(CrdsArgs),
}

#[derive(Args, Debug)]
pub struct CrdsArgs {
    /// Write one file per CRD into this directory instead of printing a YAML stream.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch SecurityGroupRules in this namespace only (default: all namespaces).
    #[arg(long, env = "SECGROUP_NAMESPACE")]
    pub namespace: Option<String>,

    /// Watch only SecurityGroupRules matching this label selector, to split
    /// rules between several operator instances.
    #[arg(long, env = "SECGROUP_LABEL_SELECTOR")]
    pub label_selector: Option<String>,

    /// Namespaces whose Secrets may hold provider credentials (repeatable).
    /// The operator needs get/list/watch on Secrets there, and nowhere else.
    #[arg(
        long = "secret-namespace",
        env = "SECGROUP_SECRET_NAMESPACES",
        value_delimiter = ',',
        required = true
    )]
    pub secret_namespaces: Vec<String>,

    /// How many rules are reconciled at once. Reconciles mostly wait on the
    /// API server and the provider's rate limit, so this bounds throughput.
    #[arg(long, env = "SECGROUP_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,

    /// How often each security group is described to notice drift.
    #[arg(long, env = "SECGROUP_RESYNC_INTERVAL", value_parser = humantime_secs, default_value = "600")]
    pub resync_interval: Duration,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "SECGROUP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "SECGROUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Parses a duration given in seconds.
fn humantime_secs(s: &str) -> Result<Duration, String> {
    let secs: u64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if secs == 0 {
        return Err("must be at least 1 second".into());
    }
    Ok(Duration::from_secs(secs))
}

/// `secgroup-operator crds`.
pub fn crds(args: &CrdsArgs) -> anyhow::Result<()> {
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (name, doc) in crate::crds::documents()? {
                std::fs::write(dir.join(name), doc)?;
            }
        }
        None => print!("{}", crate::crds::yaml_stream()?),
    }
    Ok(())
}

/// `secgroup-operator run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_format);
    crate::controller::run(
        args,
        std::sync::Arc::new(crate::controller::connector::Clients),
    )
    .await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
