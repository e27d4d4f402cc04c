//! The `secgroup-fakecloud` binary as a tied process, with its admin client.

use std::path::Path;

use secgroup_fakecloud::client::Admin;

use crate::{
    paths::binary,
    process::{Output, Tied},
};

/// A fake cloud on a free loopback port, stopped when this drops.
pub struct FakeCloud {
    /// What it announced: `http://127.0.0.1:PORT` (`https://` with a certificate).
    pub url: String,
    pub admin: Admin,
    process: Tied,
}

impl FakeCloud {
    /// Starts it accepting `access_key` (`ID:SECRET`), with `args` added,
    /// logging to `log`, and waits until it listens.
    pub fn start(access_key: &str, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Self {
        let mut all = vec!["--listen", "127.0.0.1:0", "--access-key", access_key];
        all.extend_from_slice(args);
        let mut process = Tied::spawn(
            &binary("secgroup-fakecloud"),
            &all,
            envs,
            Output::Here,
            Output::Log(log.to_owned()),
        );
        let banner = process.read_line();
        let url = banner
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected fake cloud banner {banner:?}"))
            .to_owned();
        Self {
            admin: Admin::new(&url),
            url,
            process,
        }
    }

    pub fn process(&self) -> &Tied {
        &self.process
    }
}
