//! Real services for the end-to-end tests: an Apache Kafka node (`scripts/kafka/broker`), the
//! S3 API (moto), the GCS API (fake-gcs-server), Azure Blob Storage (Azurite), a Prometheus
//! server, and `facedex` role processes. Each is stopped when dropped.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::facedex_command;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A service process, killed (and reaped) when dropped.
pub(super) struct KilledOnDrop(pub(super) Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1 for a service that binds it itself a moment later.
///
/// The port is taken below the kernel's ephemeral range (`ip_local_port_range`), so no outgoing
/// connection and no `:0` bind (the roles' gRPC servers) can take it between this check and the
/// service's own bind, and it is never handed out twice by one test process: with two tests
/// each starting a broker side by side, either race made one broker fail to bind (CI run of
/// stop 11).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let candidates = 10_000..ephemeral_low.max(10_001);
    let span = u32::from(candidates.end - candidates.start);
    // Start somewhere different in each process so test binaries run side by side (cargo
    // bench, a second checkout) rarely probe the same ports.
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let seed = std::process::id() ^ clock.map_or(0, |since| since.subsec_nanos());
    let mut handed_out = HANDED_OUT.lock().expect("port registry");
    (0..span)
        .map(|step| candidates.start + ((seed.wrapping_mul(7_919) + step) % span) as u16)
        .find(|port| !handed_out.contains(port) && TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .inspect(|port| {
            handed_out.insert(*port);
        })
        .expect("a free port below the ephemeral range")
}

/// One Kafka node in KRaft mode with its own ports and directory.
pub struct KafkaBroker {
    process: KilledOnDrop,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
    directory: tempfile::TempDir,
    ports: (u16, u16),
}

impl KafkaBroker {
    /// Starts the broker and waits until it answers metadata requests. A broker that exits
    /// while starting (a port taken after all) or does not answer within 120 s is started again
    /// on new ports, twice at most; the last failure panics with the end of the broker's logs.
    pub fn start() -> Self {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::try_start() {
                Ok(broker) => return broker,
                Err(failure) if attempt < ATTEMPTS => {
                    eprintln!("kafka attempt {attempt} failed, retrying on new ports: {failure}")
                }
                Err(failure) => panic!("{failure}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start() -> Result<Self, String> {
        let directory = tempfile::tempdir().expect("temp dir");
        let ports = (free_port(), free_port());
        let mut broker = Self {
            process: Self::spawn(directory.path(), ports),
            bootstrap: format!("127.0.0.1:{}", ports.0),
            directory,
            ports,
        };
        broker.wait_until_answering()?;
        Ok(broker)
    }

    fn spawn(directory: &Path, (port, controller_port): (u16, u16)) -> KilledOnDrop {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(directory.join("stderr.log"))
            .expect("stderr log");
        let child = Command::new(repository().join("scripts/kafka/broker"))
            .arg(directory)
            .arg(port.to_string())
            .arg(controller_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("scripts/kafka/broker starts (run scripts/kafka/fetch first)");
        KilledOnDrop(child)
    }

    fn wait_until_answering(&mut self) -> Result<(), String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(120);
        while consumer.fetch_metadata(None, Duration::from_secs(2)).is_err() {
            if let Ok(Some(status)) = self.process.0.try_wait() {
                return Err(format!("kafka exited with {status} while starting: {}", self.logs()));
            }
            if Instant::now() >= deadline {
                return Err(format!("kafka did not answer in 120 s: {}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }

    /// SIGKILL: the broker dies at once, with whatever it had not flushed.
    pub fn kill(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }

    /// Starts the killed broker again on its ports and data, and waits until it answers.
    pub fn restart(&mut self) {
        self.process = Self::spawn(self.directory.path(), self.ports);
        if let Err(failure) = self.wait_until_answering() {
            panic!("the restarted broker: {failure}");
        }
    }

    /// The last lines of the broker's logs (storage format, stderr, log4j), for a failure
    /// message that shows why without the temporary directory that is gone by then.
    fn logs(&self) -> String {
        ["format.log", "stderr.log", "broker.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.directory.path().join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("\n--- {name} (last 25 lines) ---\n{tail}")
            })
            .collect()
    }
}

/// moto's S3 server.
pub struct S3Server {
    _process: KilledOnDrop,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    python: PathBuf,
}

impl S3Server {
    /// Starts moto (installed by `scripts/s3/venv`) and waits for it.
    pub fn start() -> Self {
        let python = fetched("scripts/s3/venv");
        let port = free_port();
        let child = Command::new(python.with_file_name("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let server = Self {
            _process: KilledOnDrop(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            python,
        };
        wait_for_port(port, "moto_server");
        server
    }

    /// The environment that points object_store (and boto3) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
    }

    /// Creates `bucket` and uploads `files` under `prefix/` with boto3.
    pub fn upload(&self, bucket: &str, prefix: &str, files: &[&Path]) {
        let script = "import sys, boto3\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1])\n\
            s3.create_bucket(Bucket=sys.argv[2])\n\
            for path in sys.argv[4:]:\n    \
                s3.upload_file(path, sys.argv[2], sys.argv[3] + '/' + path.rsplit('/', 1)[-1])\n";
        let status = Command::new(&self.python)
            .args(["-c", script, &self.endpoint, bucket, prefix])
            .args(files)
            .envs(self.env())
            .status()
            .expect("boto3 runs");
        assert!(status.success(), "upload to moto failed");
    }
}

/// The path a `scripts/*/fetch` script prints, after running it.
fn fetched(script: &str) -> PathBuf {
    let output = Command::new(repository().join(script))
        .output()
        .unwrap_or_else(|error| panic!("{script} runs: {error}"));
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Waits until something listens on `port`.
pub(super) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// fake-gcs-server (built by `scripts/gcs/fetch`), in memory, holding one bucket.
pub struct GcsServer {
    _process: KilledOnDrop,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _data: tempfile::TempDir,
}

impl GcsServer {
    /// Starts the server with `files` in `bucket` under `prefix/` (it loads them at start).
    pub fn start(bucket: &str, prefix: &str, files: &[&Path]) -> Self {
        let binary = fetched("scripts/gcs/fetch");
        let data = tempfile::tempdir().expect("temp dir");
        let folder = data.path().join(bucket).join(prefix);
        std::fs::create_dir_all(&folder).expect("bucket folder");
        for file in files {
            std::fs::copy(file, folder.join(file.file_name().expect("file name"))).expect("copy");
        }
        let port = free_port();
        let child = Command::new(binary)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-backend", "memory"])
            .args(["-port", &port.to_string(), "-public-host", &format!("127.0.0.1:{port}")])
            .arg("-data")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake-gcs-server starts");
        wait_for_port(port, "fake-gcs-server");
        Self {
            _process: KilledOnDrop(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            _data: data,
        }
    }

    /// The environment that points object_store at this server: a service-account key with
    /// its base URL and no OAuth, as object_store documents for emulators.
    pub fn env(&self) -> Vec<(String, String)> {
        let key = format!(
            r#"{{"gcs_base_url":"{}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#,
            self.endpoint
        );
        vec![("GOOGLE_SERVICE_ACCOUNT_KEY".to_owned(), key)]
    }
}

/// Azurite's Blob Storage emulator (installed by `scripts/azurite/fetch`).
pub struct AzuriteServer {
    _process: KilledOnDrop,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    installed: PathBuf,
    _data: tempfile::TempDir,
}

impl AzuriteServer {
    /// Starts the emulator on a free port with its data in a temporary folder.
    pub fn start() -> Self {
        let installed = fetched("scripts/azurite/fetch");
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(installed.join("node_modules/.bin/azurite-blob"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data.path())
            .args(["--silent", "--skipApiVersionCheck"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite starts");
        wait_for_port(port, "azurite");
        Self {
            _process: KilledOnDrop(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            installed,
            _data: data,
        }
    }

    /// The environment that points object_store at this emulator (its well-known account).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".to_owned(), "true".to_owned()),
            ("AZURITE_BLOB_STORAGE_URL".to_owned(), self.endpoint.clone()),
        ]
    }

    /// Creates `container` and uploads `files` under `prefix/` with the Azure SDK.
    pub fn upload(&self, container: &str, prefix: &str, files: &[&Path]) {
        let status = Command::new("node")
            .arg(self.installed.join("upload.js"))
            .args([&format!("{}/devstoreaccount1", self.endpoint), container, prefix])
            .args(files)
            .status()
            .expect("node runs");
        assert!(status.success(), "upload to azurite failed");
    }
}

/// A `facedex` role process whose stdout is collected line by line.
pub struct Role {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Role {
    /// Starts `facedex ARGS` with `env` and waits for a stdout line starting with `ready`;
    /// returns the process and that line.
    pub fn start(args: &[&str], env: &[(String, String)], ready: &str) -> (Self, String) {
        let mut child = facedex_command()
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::piped())
            .spawn()
            .expect("facedex starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                collected.lock().expect("lines").push(line);
            }
        });
        let role = Self { child, lines };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(line) = role.lines().into_iter().find(|line| line.starts_with(ready)) {
                return (role, line);
            }
            assert!(Instant::now() < deadline, "facedex {args:?} never printed {ready:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a serving role (`indexer`, `embed`, `serve`) and returns it with its
    /// `http://ADDR` URL, read from the line starting with `ready` (`facedex: serving … on ADDR`).
    pub fn start_server(args: &[&str], env: &[(String, String)], ready: &str) -> (Self, String) {
        let (role, line) = Self::start(args, env, ready);
        let addr = word_after(&line, ready).expect("the ready line names the address");
        let url = format!("http://{addr}");
        (role, url)
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The web console's `127.0.0.1:PORT`, from the line the role printed before its ready line.
    pub fn console_addr(&self) -> anyhow::Result<String> {
        self.lines()
            .iter()
            .find_map(|line| line.strip_prefix("facedex: web console on http://"))
            .map(|url| url.trim_end_matches('/').to_owned())
            .ok_or_else(|| anyhow::anyhow!("the role serves no web console"))
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// SIGTERM, wait for a clean exit, and return its stdout.
    pub fn terminate(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(
            exit.success(),
            "facedex exited with {exit} after SIGTERM: {:?}",
            self.lines()
        );
        std::thread::sleep(Duration::from_millis(200)); // let the reader thread take the last lines
        self.lines()
    }

    /// SIGKILL: no draining, no commits, no snapshot.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until consumer group `group` is stable with `members` members (every one assigned).
pub fn wait_for_stable_group(brokers: &str, group: &str, members: usize) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "facedex-test-observer")
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // A broker still loading its group coordinator answers CoordinatorLoadInProgress: that
        // is "not stable yet", not a failure, until the deadline.
        let (stable, last_error) = match consumer.fetch_group_list(Some(group), Duration::from_secs(5)) {
            Ok(groups) => (
                groups
                    .groups()
                    .iter()
                    .any(|found| found.state() == "Stable" && found.members().len() == members),
                None,
            ),
            Err(error) => (false, Some(error)),
        };
        if stable {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "group {group} never had {members} stable members (last error: {last_error:?})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The word after `prefix` in a role's ready line (`facedex: serving FaceSearch on ADDR …`).
pub fn word_after<'a>(line: &'a str, prefix: &str) -> anyhow::Result<&'a str> {
    line.strip_prefix(prefix)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("no address in {line:?}"))
}
