//! The table a run prints: one row per figure, with its goal where there is one.

pub struct Row {
    what: String,
    figure: String,
    goal: String,
    met: Option<bool>,
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// A figure with a goal; `met` says whether this run reached it.
    pub fn goal(
        &mut self,
        what: impl Into<String>,
        figure: impl Into<String>,
        goal: &str,
        met: bool,
    ) {
        self.rows.push(Row {
            what: what.into(),
            figure: figure.into(),
            goal: goal.into(),
            met: Some(met),
        });
    }

    /// A figure shown for context.
    pub fn info(&mut self, what: impl Into<String>, figure: impl Into<String>) {
        self.rows.push(Row {
            what: what.into(),
            figure: figure.into(),
            goal: String::new(),
            met: None,
        });
    }

    /// Markdown, so a run can be pasted into BENCHMARKS.md.
    pub fn render(&self) -> String {
        let mut out = String::from("| measurement | figure | goal | met |\n|---|---|---|---|\n");
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {met} |\n",
                row.what, row.figure, row.goal
            ));
        }
        out
    }
}

/// Nearest-rank percentile of `values` (sorted here), `p` in 0..=100.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// nproc, memory and CPU model of this machine.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches(" kB")
                .parse()
                .ok()
        })
        .unwrap_or(0);
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB memory",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// The 1-minute load average, sampled every few seconds while the run
/// lasts: the operator, the control plane and the harness share the
/// machine, so a timing means little without the load next to it.
pub struct Load(std::sync::Arc<std::sync::Mutex<Vec<f64>>>);

impl Load {
    pub fn sample() -> Self {
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = samples.clone();
        tokio::spawn(async move {
            loop {
                if let Some(load) = load_average() {
                    kept.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(load);
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        Self(samples)
    }

    /// "mean 3.1, max 5.2 over 40 samples".
    pub fn summary(&self) -> String {
        let samples = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let max = samples.iter().copied().fold(0.0, f64::max);
        let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
        format!(
            "1-minute load average: mean {mean:.1}, max {max:.1} ({} samples, every 5 s)",
            samples.len()
        )
    }
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
