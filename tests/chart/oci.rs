//! The OCI images `make image` writes (target/image/NAME), read back, and
//! compared with the Dockerfile stages that users' CI builds: the same
//! entrypoint, user, environment, ports and files.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};

/// What BuildKit records as PATH in a Linux image whose Dockerfile sets none.
const BUILDKIT_DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An image of target/image/, at the crate's version.
pub struct Image {
    pub reference: String,
    pub config: Value,
    layers: Vec<PathBuf>,
}

impl Image {
    pub fn open(name: &str) -> Image {
        let layout = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root().join("target"), PathBuf::from)
            .join("image")
            .join(name);
        let tag = env!("CARGO_PKG_VERSION");
        let read = |path: PathBuf| -> Value {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; build the images first: `make image` (PROFILE=debug packs the debug build)",
                    path.display()
                )
            });
            serde_json::from_str(&text).expect("JSON")
        };
        let blob = |digest: &Value| -> PathBuf {
            let (algorithm, hex) = digest
                .as_str()
                .and_then(|d| d.split_once(':'))
                .expect("digest");
            layout.join("blobs").join(algorithm).join(hex)
        };
        let index = read(layout.join("index.json"));
        let descriptor = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("{} has no tag {tag}", layout.display()));
        let manifest = read(blob(&descriptor["digest"]));
        let config = read(blob(&manifest["config"]["digest"]));
        let layers = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| blob(&l["digest"]))
            .collect();
        Image {
            reference: format!("{}:{tag}", layout.display()),
            config,
            layers,
        }
    }

    /// `tar -tv` of layer `n` (gzip): one line per entry, numeric owners.
    /// GNU tar exits non-zero on an archive without its end blocks.
    pub fn layer_listing(&self, n: usize) -> Vec<String> {
        let out = Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&self.layers[n])
            .output()
            .expect("tar");
        assert!(
            out.status.success(),
            "layer {n} of {} is not a complete tar archive: {}",
            self.reference,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The content of `path` (no leading slash) in layer `n`.
    pub fn layer_file(&self, n: usize, path: &str) -> String {
        let out = Command::new("tar")
            .arg("-xzOf")
            .arg(&self.layers[n])
            .arg(path)
            .output()
            .expect("tar");
        assert!(out.status.success(), "{path} in layer {n}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One stage of the Dockerfile: its base, name and instructions with their
/// arguments (continuation lines joined).
pub struct Stage {
    pub from: String,
    pub name: String,
    pub instructions: Vec<(String, String)>,
}

pub fn dockerfile_stages() -> Vec<Stage> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => logical.push(std::mem::take(&mut pending) + trimmed),
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let (instruction, rest) = (instruction.to_uppercase(), rest.trim().to_owned());
        if instruction == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => String::new(),
            };
            stages.push(Stage {
                from: words[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((instruction, rest));
        }
    }
    stages
}

/// The image stages: `FROM scratch`, the ones `make image` builds.
pub fn image_stages() -> Vec<Stage> {
    dockerfile_stages()
        .into_iter()
        .filter(|s| s.from == "scratch")
        .collect()
}

/// The config `docker build` writes for `stage`.
fn expected_config(stage: &Stage) -> Value {
    let mut config = json!({"Env": [BUILDKIT_DEFAULT_PATH]});
    for (instruction, rest) in &stage.instructions {
        match instruction.as_str() {
            "USER" => config["User"] = json!(rest),
            "ENV" => config["Env"].as_array_mut().expect("Env").push(json!(rest)),
            "EXPOSE" => {
                for port in rest.split_whitespace() {
                    let port = if port.contains('/') {
                        port.to_owned()
                    } else {
                        format!("{port}/tcp")
                    };
                    config["ExposedPorts"][port] = json!({});
                }
            }
            "ENTRYPOINT" => config["Entrypoint"] = serde_json::from_str(rest).expect("exec form"),
            "CMD" => config["Cmd"] = serde_json::from_str(rest).expect("exec form"),
            "WORKDIR" => config["WorkingDir"] = json!(rest),
            "COPY" => {}
            other => panic!("{}: {other} is not an image-stage instruction", stage.name),
        }
    }
    config
}

/// The path and mode column of a `tar -tv` line for `path` (no leading slash).
fn entry<'a>(listing: &'a [String], path: &str) -> Option<&'a String> {
    listing
        .iter()
        .find(|line| line.split_whitespace().nth(5) == Some(path))
}

#[test]
fn images_say_what_the_dockerfile_says() {
    let stages = image_stages();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["secgroup-fakecloud", "secgroup-operator"]);
    for stage in &stages {
        let image = Image::open(&stage.name);
        assert_eq!(
            image.config["config"],
            expected_config(stage),
            "{}: config",
            image.reference
        );
        assert_eq!(image.config["os"], "linux");

        // One layer per COPY, in order, recorded as that instruction.
        let copies: Vec<&String> = stage
            .instructions
            .iter()
            .filter(|(i, _)| i == "COPY")
            .map(|(_, rest)| rest)
            .collect();
        let history: Vec<&str> = image.config["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["created_by"].as_str().expect("created_by"))
            .collect();
        let recorded: Vec<String> = copies.iter().map(|c| format!("COPY {c}")).collect();
        assert_eq!(history, recorded, "{}: history", image.reference);
        assert_eq!(image.layers.len(), copies.len());

        for (n, copy) in copies.iter().enumerate() {
            let listing = image.layer_listing(n);
            let words: Vec<&str> = copy.split_whitespace().collect();
            let [from, _source, dest] = words.as_slice() else {
                panic!("COPY --from=STAGE SRC DEST expected: {copy}")
            };
            match *from {
                "--from=build" => {
                    let binary = entry(&listing, dest.trim_start_matches('/'))
                        .unwrap_or_else(|| panic!("{dest} in layer {n}: {listing:?}"));
                    assert!(binary.starts_with("-rwxr-xr-x 0/0 "), "{binary}");
                }
                "--from=base" => {
                    for path in [
                        "etc/ssl/certs/ca-certificates.crt",
                        "lib64/ld-linux-x86-64.so.2",
                        "etc/passwd",
                    ] {
                        assert!(entry(&listing, path).is_some(), "{path} in the base");
                    }
                    // Debian's selection of the Mozilla roots, well over a hundred.
                    let bundle = image.layer_file(n, "etc/ssl/certs/ca-certificates.crt");
                    let roots = bundle.matches("-----BEGIN CERTIFICATE-----").count();
                    assert!(roots > 100, "{roots} CA certificates in the bundle");
                    assert!(
                        listing.iter().all(|l| l.contains(" 0/0 ")),
                        "the base belongs to root"
                    );
                    assert!(
                        entry(&listing, "bin/sh").is_none()
                            && entry(&listing, "usr/bin/apt").is_none(),
                        "no shell, no package manager"
                    );
                }
                other => panic!("COPY {other} is not built by make image"),
            }
        }
    }
}
