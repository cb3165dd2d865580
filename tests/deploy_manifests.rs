//! The files in deploy/ against the binary they deploy. No Docker engine or cluster runs here,
//! so this checks what can be checked: every file parses; every `facedex` command line in the
//! compose file, the Kubernetes manifests and the Dockerfiles is one the binary accepts; every
//! `FACEDEX…` variable they set is one it reads (the configuration with those variables and the
//! ConfigMap's file loads); every port they publish or probe is one a role listens on; every
//! facedex image is built by a Dockerfile here; every metric in the alerts and the dashboard
//! is one the roles export (docs/metrics.md); every alert fires and stays quiet in its
//! `promtool test rules` cases (Debian's `prometheus` package, installed by `scripts/test`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// One `facedex` process as a deploy file starts it.
#[derive(Debug, Default)]
struct Invocation {
    source: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Ports the file publishes, exposes or probes for this process.
    ports: Vec<u16>,
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn yaml_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = Value::deserialize(document).with_context(|| format!("{} is not YAML", path.display()))?;
            value.apply_merge()?;
            Ok(value)
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// `${NAME:-default}` as compose interpolates it when NAME is unset.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |end| start + end);
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn is_facedex_image(image: &str) -> bool {
    image.starts_with("facedex:")
}

fn compose_invocations(compose: &Value, images: &mut BTreeMap<String, String>) -> Vec<Invocation> {
    let mut found = Vec::new();
    let Some(services) = compose["services"].as_mapping() else {
        return found;
    };
    for (name, service) in services {
        let name = scalar(name).unwrap_or_default();
        let image = service["image"].as_str().unwrap_or_default();
        if let Some(dockerfile) = service["build"]["dockerfile"].as_str() {
            images.insert(image.to_owned(), dockerfile.to_owned());
        }
        if !is_facedex_image(image) {
            continue;
        }
        let mut args: Vec<String> = strings(&service["entrypoint"]);
        if args.first().is_some_and(|first| first == "facedex") {
            args.remove(0);
        }
        args.extend(strings(&service["command"]));
        let env = match &service["environment"] {
            Value::Mapping(map) => map
                .iter()
                .filter_map(|(key, value)| Some((scalar(key)?, scalar(value).unwrap_or_default())))
                .collect(),
            Value::Sequence(items) => items
                .iter()
                .filter_map(scalar)
                .map(|item| match item.split_once('=') {
                    Some((key, value)) => (key.to_owned(), value.to_owned()),
                    None => (item, String::new()),
                })
                .collect(),
            _ => Vec::new(),
        };
        let ports = strings(&service["ports"])
            .iter()
            .filter_map(|mapping| mapping.rsplit(':').next()?.parse().ok())
            .collect();
        found.push(Invocation {
            source: format!("docker-compose.yml service {name}"),
            args: args.iter().map(|arg| interpolate(arg)).collect(),
            env,
            ports,
        });
    }
    found
}

fn kubernetes_invocations(document: &Value, source: &str, images_used: &mut BTreeSet<String>) -> Vec<Invocation> {
    let mut found = Vec::new();
    let pod = &document["spec"]["template"];
    let annotated_port = pod["metadata"]["annotations"]["prometheus.io/port"]
        .as_str()
        .and_then(|port| port.parse::<u16>().ok());
    for container in pod["spec"]["containers"].as_sequence().into_iter().flatten() {
        let image = container["image"].as_str().unwrap_or_default();
        if !is_facedex_image(image) {
            continue;
        }
        images_used.insert(image.to_owned());
        let mut ports: Vec<u16> = container["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|port| port["containerPort"].as_u64()?.try_into().ok())
            .collect();
        for probe in ["readinessProbe", "livenessProbe"] {
            if let Some(port) = container[probe]["grpc"]["port"].as_u64() {
                ports.push(port.try_into().unwrap_or(0));
            }
        }
        ports.extend(annotated_port);
        found.push(Invocation {
            source: format!("{source} container {}", container["name"].as_str().unwrap_or("?")),
            args: strings(&container["args"]),
            env: container["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|variable| {
                    Some((
                        scalar(&variable["name"])?,
                        scalar(&variable["value"]).unwrap_or_default(),
                    ))
                })
                .collect(),
            ports,
        });
    }
    found
}

/// `ENV`, `EXPOSE` and a JSON-form `CMD` of a Dockerfile, as one invocation.
fn dockerfile_invocation(path: &Path) -> anyhow::Result<Invocation> {
    let text = std::fs::read_to_string(path)?;
    let joined = text.replace("\\\n", " ");
    // Only the final stage is the image.
    let final_stage = joined.rsplit("\nFROM ").next().unwrap_or(&joined);
    let mut invocation = Invocation {
        source: path.display().to_string(),
        ..Invocation::default()
    };
    for line in final_stage.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (key, value) = pair.split_once('=').context("ENV KEY=VALUE")?;
                invocation.env.push((key.to_owned(), value.to_owned()));
            }
        } else if let Some(rest) = line.strip_prefix("EXPOSE ") {
            invocation
                .ports
                .extend(rest.split_whitespace().filter_map(|port| port.parse::<u16>().ok()));
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            let args: Vec<String> = serde_json::from_str(rest).context("CMD in JSON form")?;
            if args.first().is_some_and(|first| first != "--help") {
                invocation.args = args;
            }
        }
    }
    Ok(invocation)
}

/// The ConfigMap's `facedex.toml`, written to a temporary file for `--config`.
fn configmap_file(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let documents = yaml_documents(&dir.join("k8s/configmap.yaml"))?;
    let text = documents
        .iter()
        .find_map(|document| document["data"]["facedex.toml"].as_str())
        .context("configmap.yaml holds facedex.toml")?;
    let mut file = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(file)
}

fn facedex_output(args: &[String], env: &[(String, String)]) -> anyhow::Result<(bool, String)> {
    // The bare binary: no assets or settings of the test environment leak in.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_facedex"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FACEDEX") {
            command.env_remove(key);
        }
    }
    let output = command.args(args).envs(env.iter().cloned()).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

#[test]
fn deploy_files_use_only_what_the_binary_accepts() -> anyhow::Result<()> {
    let dir = deploy_dir();
    let mut images_built = BTreeMap::new();
    let mut images_used = BTreeSet::new();
    let mut invocations = compose_invocations(&yaml_documents(&dir.join("docker-compose.yml"))?[0], &mut images_built);
    for entry in std::fs::read_dir(dir.join("k8s"))? {
        let path = entry?.path();
        for document in yaml_documents(&path)? {
            ensure!(
                document["apiVersion"].as_str().is_some(),
                "{} has a document without apiVersion",
                path.display()
            );
            invocations.extend(kubernetes_invocations(
                &document,
                &path.display().to_string(),
                &mut images_used,
            ));
        }
    }
    for dockerfile in ["docker/Dockerfile", "docker/Dockerfile.cuda"] {
        invocations.push(dockerfile_invocation(&dir.join(dockerfile))?);
    }
    ensure!(
        invocations.len() >= 10,
        "found only {} facedex processes",
        invocations.len()
    );

    // Images: every facedex image is built by a Dockerfile that exists here.
    for (image, dockerfile) in &images_built {
        ensure!(
            dir.join("..").join(dockerfile).is_file(),
            "{image} is built from missing {dockerfile}"
        );
    }
    for image in &images_used {
        ensure!(
            images_built.contains_key(image),
            "{image} is used but no compose service builds it"
        );
    }

    let (_, top_help) = facedex_output(&["--help".to_owned()], &[])?;
    let config = configmap_file(&dir)?;
    let config_path = config.path().to_str().context("utf-8")?.to_owned();
    let mut listening_ports = BTreeSet::new();
    for invocation in &invocations {
        let source = &invocation.source;
        // Flags: clap rejects an unknown flag even with --help.
        if !invocation.args.is_empty() {
            let mut args = invocation.args.clone();
            args.push("--help".into());
            let (ok, text) = facedex_output(&args, &[])?;
            ensure!(
                ok,
                "{source}: `facedex {}` is refused: {text}",
                invocation.args.join(" ")
            );
        }
        // Variables: single-underscore ones are documented in --help; FACEDEX__ ones must load.
        for (key, _) in &invocation.env {
            if key.starts_with("FACEDEX_") && !key.starts_with("FACEDEX__") {
                ensure!(
                    top_help.contains(key.as_str()),
                    "{source}: {key} is not a variable facedex reads"
                );
            }
        }
        let facedex_env: Vec<(String, String)> = invocation
            .env
            .iter()
            .filter(|(key, _)| key.starts_with("FACEDEX__"))
            .cloned()
            .collect();
        let mut config_args = Vec::new();
        if invocation.args.iter().any(|arg| arg == "--config") {
            config_args = vec!["--config".to_owned(), config_path.clone()];
        }
        config_args.push("config".into());
        let (ok, text) = facedex_output(&config_args, &facedex_env)?;
        ensure!(ok, "{source}: its configuration does not load: {text}");
        for (key, value) in &facedex_env {
            let leaf = key.rsplit("__").next().unwrap_or_default().to_lowercase();
            ensure!(
                text.lines()
                    .any(|line| line.starts_with(&format!("{leaf} = ")) && line.contains(value.as_str())),
                "{source}: {key}={value} does not show in the effective configuration:\n{text}"
            );
        }
        listening_ports.extend(
            invocation
                .args
                .iter()
                .filter_map(|arg| arg.rsplit_once(':')?.1.parse::<u16>().ok()),
        );
    }
    // Ports: every published, exposed or probed port is one a facedex role listens on.
    for invocation in &invocations {
        for port in &invocation.ports {
            ensure!(
                listening_ports.contains(port),
                "{}: port {port} is not one any role listens on ({listening_ports:?})",
                invocation.source
            );
        }
    }
    Ok(())
}

#[test]
fn monitoring_files_parse_and_name_exported_metrics() -> anyhow::Result<()> {
    let dir = deploy_dir();
    let documented = std::fs::read_to_string(dir.join("../docs/metrics.md"))?;
    let mut texts = Vec::new();

    let alerts = &yaml_documents(&dir.join("prometheus/alerts.yml"))?[0];
    let mut alert_count = 0;
    for group in alerts["groups"].as_sequence().context("alert groups")? {
        for rule in group["rules"].as_sequence().context("rules")? {
            ensure!(
                rule["alert"].as_str().is_some() && rule["expr"].as_str().is_some(),
                "{rule:?}"
            );
            texts.push(rule["expr"].as_str().unwrap_or_default().to_owned());
            alert_count += 1;
        }
    }
    let alert_names: Vec<_> = alerts["groups"][0]["rules"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["alert"].as_str())
        .collect();
    for wanted in [
        "FacedexPipelineStalled",
        "FacedexDeadLetterRateHigh",
        "FacedexEmbedLatencyHigh",
    ] {
        ensure!(alert_names.contains(&wanted), "alert {wanted} missing");
    }
    ensure!(alert_count >= 3);

    let scrape = &yaml_documents(&dir.join("prometheus/prometheus.yml"))?[0];
    ensure!(
        scrape["scrape_configs"]
            .as_sequence()
            .is_some_and(|jobs| !jobs.is_empty())
    );

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana/facedex.json"))?)?;
    let panels = dashboard["panels"].as_array().context("panels")?;
    ensure!(panels.len() >= 6, "a dashboard for throughput and lag");
    for panel in panels {
        for target in panel["targets"].as_array().context("targets")? {
            texts.push(target["expr"].as_str().context("expr")?.to_owned());
        }
    }
    for provisioning in [
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/facedex.yml",
    ] {
        yaml_documents(&dir.join(provisioning))?;
    }

    let mut metrics = BTreeSet::new();
    for text in &texts {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("facedex_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_owned();
            metrics.insert(base);
        }
    }
    ensure!(metrics.len() >= 8, "{metrics:?}");
    for metric in &metrics {
        ensure!(
            documented.contains(&format!("`{metric}`")),
            "{metric} is used in deploy/ but not exported (docs/metrics.md)"
        );
    }
    Ok(())
}

/// `promtool`, or an error saying how to get it.
fn promtool() -> anyhow::Result<std::process::Command> {
    let found = std::process::Command::new("promtool").arg("--version").output();
    ensure!(
        found.is_ok_and(|output| output.status.success()),
        "promtool is not on PATH: scripts/test installs Debian's `prometheus` package (apt-get install prometheus)"
    );
    Ok(std::process::Command::new("promtool"))
}

#[test]
fn every_alert_fires_on_its_condition_and_stays_quiet_otherwise() -> anyhow::Result<()> {
    let dir = deploy_dir().join("prometheus");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let output = promtool()?.args(args).current_dir(&dir).output()?;
        ensure!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Every alert has a case where it fires and one where it must not.
    let alerts = &yaml_documents(&dir.join("alerts.yml"))?[0];
    let tests = &yaml_documents(&dir.join("alerts.test.yml"))?[0];
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in tests["tests"].as_sequence().context("tests")? {
        for check in case["alert_rule_test"].as_sequence().context("alert_rule_test")? {
            let name = check["alertname"].as_str().context("alertname")?.to_owned();
            let expected = check["exp_alerts"].as_sequence().context("exp_alerts")?;
            if expected.is_empty() {
                quiet.insert(name)
            } else {
                fires.insert(name)
            };
        }
    }
    for group in alerts["groups"].as_sequence().context("alert groups")? {
        for rule in group["rules"].as_sequence().context("rules")? {
            let name = rule["alert"].as_str().context("alert")?;
            ensure!(fires.contains(name), "alerts.test.yml has no case where {name} fires");
            ensure!(
                quiet.contains(name),
                "alerts.test.yml has no case where {name} stays quiet"
            );
        }
    }
    Ok(())
}
