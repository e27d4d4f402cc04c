//! `secgroup-fakecloud`: serves the fake cloud on a loopback port.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Parser;
use secgroup_fakecloud::{Config, FakeCloud, serve, serve_tls, tls};

/// Alibaba ECS, Apsara Stack and Baidu BCC security-group APIs on one port,
/// for end-to-end tests and demos. Admin API under /_fake/.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8787 (port 0 picks a free one).
    #[arg(long, env = "FAKECLOUD_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// JSON file that keeps groups, rules and ClientTokens across restarts.
    #[arg(long, env = "FAKECLOUD_STATE")]
    state: Option<PathBuf>,
    /// Accepted credentials as ID:SECRET; repeat for more.
    #[arg(long = "access-key", env = "FAKECLOUD_ACCESS_KEYS", value_delimiter = ',', value_parser = parse_key)]
    access_keys: Vec<(String, String)>,
    /// Seed for ids and fault draws, for reproducible runs.
    #[arg(long, env = "FAKECLOUD_SEED")]
    seed: Option<u64>,
    /// Create unknown security groups on first use instead of answering NotFound.
    #[arg(long, env = "FAKECLOUD_AUTO_CREATE_GROUPS")]
    auto_create_groups: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "FAKECLOUD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FAKECLOUD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_key(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok((id.to_owned(), secret.to_owned()))
        }
        _ => Err("expected ID:SECRET".into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let Args {
        listen,
        state,
        access_keys,
        seed,
        auto_create_groups,
        tls_cert,
        tls_key,
    } = Args::parse();
    let cloud = FakeCloud::new(Config {
        access_keys,
        state_file: state,
        seed,
        auto_create_groups,
    })
    .context("loading the fake cloud's state")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    match tls_cert.zip(tls_key) {
        Some((cert, key)) => {
            let acceptor = tls::acceptor(&cert, &key)?;
            // Scripts wait for this line to learn the port.
            println!("listening on https://{address}");
            serve_tls(listener, cloud, acceptor).await?;
        }
        None => {
            println!("listening on http://{address}");
            serve(listener, cloud).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn access_keys_need_an_id_and_a_secret() {
        assert_eq!(parse_key("ak:sk"), Ok(("ak".into(), "sk".into())));
        assert!(parse_key("ak").is_err());
        assert!(parse_key(":sk").is_err());
    }
}
