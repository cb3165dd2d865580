//! Prometheus metrics for every role: `--metrics-addr ADDR` (or `metrics.listen_addr`) serves
//! `GET /metrics` in the text exposition format. The library crates record through the
//! `metrics` facade; this module installs the exporter, registers every metric's help text and
//! sets the histogram buckets. `docs/metrics.md` lists what is exported.

use std::net::SocketAddr;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::{Deserialize, Serialize};

/// `[metrics]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; none: metrics are not exported.
    pub listen_addr: Option<SocketAddr>,
}

/// Always-present gauge (value 1) naming the version and the role of this process.
pub const BUILD_INFO: &str = "facedex_build_info";

/// Latency buckets, in seconds: 0.5 ms to 60 s, covering a gRPC search and a slow object-store
/// fetch alike.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Model batch sizes: powers of two up to the largest embed batch.
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Starts the exporter when configured, and registers every metric's description.
pub fn install(config: &MetricsConfig, role: &'static str) -> anyhow::Result<()> {
    let Some(addr) = config.listen_addr else {
        return Ok(());
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(facedex_pipeline::metrics::MODEL_BATCH_SIZE.into()),
                BATCH_SIZE_BUCKETS,
            )
        })
        .and_then(PrometheusBuilder::install)
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    describe_all();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "role" => role).set(1.0);
    eprintln!("facedex: metrics on http://{addr}/metrics");
    Ok(())
}

/// Registers the help text of every facedex metric with the installed recorder.
pub fn describe_all() {
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; its labels name the version and the role of this process."
    );
    facedex_pipeline::metrics::describe();
    facedex_index::metrics::describe();
    facedex_kafka::metrics::describe();
    facedex_server::metrics::describe();
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    use super::*;

    /// Collects the names of described metrics.
    #[derive(Default)]
    struct Descriptions(Mutex<BTreeSet<String>>);

    impl Descriptions {
        fn add(&self, name: KeyName) {
            self.0.lock().expect("lock").insert(name.as_str().to_owned());
        }
    }

    impl Recorder for Descriptions {
        fn describe_counter(&self, name: KeyName, _: Option<Unit>, _: SharedString) {
            self.add(name);
        }
        fn describe_gauge(&self, name: KeyName, _: Option<Unit>, _: SharedString) {
            self.add(name);
        }
        fn describe_histogram(&self, name: KeyName, _: Option<Unit>, _: SharedString) {
            self.add(name);
        }
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn docs_list_exactly_the_described_metrics() {
        let recorder = Descriptions::default();
        metrics::with_local_recorder(&recorder, describe_all);
        let described = recorder.0.into_inner().expect("lock");
        let docs = include_str!("../../../docs/metrics.md");
        let documented: BTreeSet<String> = docs
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_owned)
            .collect();
        assert!(described.len() > 30, "{described:?}");
        assert_eq!(
            described, documented,
            "docs/metrics.md and the described metrics differ"
        );
        for name in &described {
            assert!(name.starts_with("facedex_"), "{name} lacks the facedex_ prefix");
            assert!(!name.ends_with("_total") || !name.contains("_seconds"), "{name}");
        }
    }
}
