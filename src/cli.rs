//! Command line of the `secgroup-operator` binary.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    controller, leader, metrics::Metrics, review::Reviewer, server, server::Health,
    telemetry::LogFormat,
};

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

    /// Read only the Secrets matching this label selector in those
    /// namespaces, so no other Secret (Helm's release Secrets, say) is
    /// ever held in memory. Empty: every Secret there.
    #[arg(long, env = "SECGROUP_SECRET_LABEL_SELECTOR")]
    pub secret_label_selector: Option<String>,

    /// How many rules are reconciled at once. Reconciles mostly wait on the
    /// API server and the provider's rate limit, so this bounds throughput.
    #[arg(long, env = "SECGROUP_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,

    /// How often each security group is described to notice drift.
    #[arg(long, env = "SECGROUP_RESYNC_INTERVAL", value_parser = humantime_secs, default_value = "600")]
    pub resync_interval: Duration,

    /// Address of the /metrics endpoint, and of /healthz and /readyz
    /// unless --health-addr is set.
    #[arg(long, env = "SECGROUP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Address of the /healthz and /readyz endpoints, which are never
    /// authenticated: probes keep working while /metrics is busy or locked.
    #[arg(long, env = "SECGROUP_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,

    /// Serve /metrics only to bearer tokens that the API server
    /// authenticates (TokenReview) and allows `get` on the non-resource URL
    /// /metrics (SubjectAccessReview).
    #[arg(long, env = "SECGROUP_METRICS_AUTH")]
    pub metrics_auth: bool,

    /// Log format.
    #[arg(long, env = "SECGROUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Run several replicas: only the holder of a coordination.k8s.io Lease
    /// runs the controller and calls the providers; the others stand by.
    #[arg(long, env = "SECGROUP_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the lease (default: the namespace of the kubeconfig
    /// context, or of the Pod when running in a cluster).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the lease. Instances that split rules between them
    /// (--namespace, --label-selector) each need their own.
    #[arg(
        long,
        env = "SECGROUP_LEADER_ELECTION_LEASE_NAME",
        default_value = "secgroup-operator"
    )]
    pub leader_election_lease_name: String,
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

impl RunArgs {
    /// What the controller needs of the command line.
    fn controller_config(&self) -> controller::Config {
        controller::Config {
            namespace: self.namespace.clone(),
            label_selector: self.label_selector.clone(),
            secret_namespaces: self.secret_namespaces.clone(),
            secret_label_selector: self.secret_label_selector.clone(),
            concurrency: self.concurrency,
            resync_interval: self.resync_interval,
        }
    }
}

/// Starts the servers of /metrics and the probes.
fn serve(args: &RunArgs, client: &kube::Client, health: &Arc<Health>, metrics: &Arc<Metrics>) {
    let reviewer = args
        .metrics_auth
        .then(|| Arc::new(Reviewer::new(client.clone())));
    let metrics = server::metrics(metrics.clone(), reviewer);
    let probes = server::probes(health.clone());
    match args.health_addr {
        Some(addr) => {
            tokio::spawn(server::serve(addr, probes, "/healthz and /readyz"));
            tokio::spawn(server::serve(args.metrics_addr, metrics, "/metrics"));
        }
        None => {
            let both = metrics.merge(probes);
            tokio::spawn(server::serve(
                args.metrics_addr,
                both,
                "/metrics, /healthz and /readyz",
            ));
        }
    }
}

/// `secgroup-operator run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_format);
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    serve(&args, &client, &health, &metrics);
    let controller = controller::run(
        args.controller_config(),
        client.clone(),
        Arc::new(controller::connector::Clients),
        metrics.clone(),
        health.clone(),
    );
    if !args.leader_election {
        metrics.set_leader(true);
        return controller.await;
    }
    let candidate = leader::Candidate {
        namespace: args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned()),
        lease_name: args.leader_election_lease_name.clone(),
        identity: leader::identity(),
    };
    let mut elector = leader::Elector::new(client, candidate);
    tokio::select! {
        () = elector.acquire(|| health.standby()) => {}
        () = crate::signal::shutdown() => return Ok(()),
    }
    metrics.set_leader(true);
    let led = leader::lead(elector, controller).await;
    metrics.set_leader(false);
    led
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    /// The flag names a Deployment passes; the lease name has a default.
    #[test]
    fn leader_election_flags_parse() {
        let cli = <super::Cli as clap::Parser>::try_parse_from([
            "secgroup-operator",
            "run",
            "--secret-namespace=creds",
            "--leader-election",
            "--leader-election-namespace=ops",
        ])
        .expect("valid command line");
        let super::Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.leader_election);
        assert_eq!(args.leader_election_namespace.as_deref(), Some("ops"));
        assert_eq!(args.leader_election_lease_name, "secgroup-operator");
    }
}
