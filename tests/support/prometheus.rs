//! A real Prometheus server (Debian's `prometheus`, installed by `scripts/test`) scraping the
//! roles of a test run every second and evaluating `deploy/prometheus/alerts.yml`, queried
//! through its HTTP API.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use super::cluster::{KilledOnDrop, free_port, wait_for_port};
use super::http_get;

/// A Prometheus server with its data in a temporary folder.
pub struct PrometheusServer {
    _process: KilledOnDrop,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _data: tempfile::TempDir,
}

/// One sample of an instant query: its labels and value.
#[derive(Debug)]
pub struct Sample {
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub value: f64,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (role, `host:port` of its `/metrics`) as job
    /// `facedex` every second, with the repository's alert rules, and waits until it is ready.
    pub fn start(targets: &[(&str, &str)], alert_rules: &Path) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let static_configs: String = targets
            .iter()
            .map(|(role, addr)| format!("      - targets: ['{addr}']\n        labels: {{role: {role}}}\n"))
            .collect();
        std::fs::copy(alert_rules, data.path().join("alerts.yml")).context("the alert rules")?;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\n\
             scrape_configs:\n  - job_name: facedex\n    static_configs:\n{static_configs}"
        );
        let config_path = data.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("prometheus is not on PATH: scripts/test installs Debian's `prometheus` package")?;
        let server = Self {
            _process: KilledOnDrop(child),
            addr: format!("127.0.0.1:{port}"),
            _data: data,
        };
        wait_for_port(port, "prometheus");
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&server.addr, "/-/ready").is_err() {
            ensure!(Instant::now() < deadline, "prometheus never became ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(server)
    }

    /// Waits until every one of the `targets` scraping started with has been scraped and
    /// is up (Prometheus's first scrapes come seconds after it is ready).
    pub fn wait_until_all_up(&self, targets: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.value("count(up == 1)").ok() != Some(targets as f64) {
            ensure!(
                Instant::now() < deadline,
                "prometheus never scraped all {targets} targets: {:?}",
                self.query("up")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// The samples of the instant query `expr` now.
    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<Sample>> {
        let body = http_get(&self.addr, &format!("/api/v1/query?query={}", percent_encoded(expr)))?;
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        ensure!(answer["status"] == "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .context("a vector result")?
            .iter()
            .map(|sample| {
                Ok(Sample {
                    labels: sample["metric"].as_object().cloned().unwrap_or_default(),
                    value: sample["value"][1].as_str().context("value")?.parse()?,
                })
            })
            .collect()
    }

    /// The one value of `expr`, which must give exactly one sample.
    pub fn value(&self, expr: &str) -> anyhow::Result<f64> {
        match self.query(expr)?.as_slice() {
            [sample] => Ok(sample.value),
            other => anyhow::bail!("{expr}: {} samples, expected one: {other:?}", other.len()),
        }
    }

    /// The alerting rules as Prometheus evaluates them: (name, health, state) of each.
    pub fn alerting_rules(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let answer: serde_json::Value = serde_json::from_str(&http_get(&self.addr, "/api/v1/rules?type=alert")?)?;
        let mut rules = Vec::new();
        for group in answer["data"]["groups"].as_array().context("rule groups")? {
            for rule in group["rules"].as_array().context("rules")? {
                let field = |name: &str| rule[name].as_str().unwrap_or_default().to_owned();
                rules.push((field("name"), field("health"), field("state")));
            }
        }
        Ok(rules)
    }
}

/// `text` with every byte but the unreserved ones percent-encoded, for a URL's query.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
