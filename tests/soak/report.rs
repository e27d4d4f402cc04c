//! What the soak found: figures per phase, and the three counts that must
//! stay zero (lost, duplicated, stuck) with an example of each problem.

use std::fmt::Display;

#[derive(Default)]
pub struct Report {
    figures: Vec<(&'static str, String, String)>,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub stuck: Vec<String>,
    /// A scenario's own promise broken (say, the operator restarted when the API server did).
    pub failures: Vec<String>,
}

impl Report {
    pub fn figure(&mut self, phase: &'static str, name: &str, value: impl Display) {
        let value = value.to_string();
        crate::say(&format!("[{phase}] {name}: {value}"));
        self.figures.push((phase, name.to_owned(), value));
    }

    pub fn fail(&mut self, phase: &str, what: String) {
        crate::say(&format!("[{phase}] FAILED: {what}"));
        self.failures.push(format!("{phase}: {what}"));
    }

    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.stuck.is_empty()
            && self.failures.is_empty()
    }

    /// The figures as a table, then the problems (at most a few of each).
    pub fn print(&self) {
        println!("\n=== soak figures");
        let width = self
            .figures
            .iter()
            .map(|(_, n, _)| n.len())
            .max()
            .unwrap_or(0);
        let mut phase = "";
        for (p, name, value) in &self.figures {
            if *p != phase {
                println!("{p}");
                phase = p;
            }
            println!("  {name:<width$}  {value}");
        }
        println!(
            "\nkills {}, lost {}, duplicated {}, stuck {}",
            self.kills(),
            self.lost.len(),
            self.duplicated.len(),
            self.stuck.len()
        );
        for (what, list) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("stuck", &self.stuck),
            ("failed", &self.failures),
        ] {
            for line in list.iter().take(10) {
                println!("  {what}: {line}");
            }
            if list.len() > 10 {
                println!("  {what}: ... and {} more", list.len() - 10);
            }
        }
    }

    fn kills(&self) -> String {
        self.figures
            .iter()
            .find(|(_, n, _)| n == "operator SIGKILLs")
            .map_or_else(|| "0".into(), |(_, _, v)| v.clone())
    }
}
