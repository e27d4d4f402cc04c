use clap::Parser;
use secgroup_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds(args) => secgroup_operator::cli::crds(&args),
        Command::Run(args) => secgroup_operator::cli::run(*args).await,
    }
}
