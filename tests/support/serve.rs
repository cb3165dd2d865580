//! A `facedex serve` process for the tests that talk to it over gRPC.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::support::facedex_command;

/// A `facedex serve` process, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The web console's URL, when it serves one (`--http-listen`).
    pub console: Option<String>,
}

impl Server {
    /// Starts `facedex serve` over `data_dir` with `extra_args` and `env`, on a free port.
    pub fn start(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = facedex_command();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .envs(env.iter().copied());
        Self::spawn(command)
    }

    /// Runs `command` (a `facedex serve`) and waits until it serves.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).spawn().expect("facedex serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        // hnsw_rs prints a line of its own when a graph is created; skip to ours.
        let mut line = String::new();
        let mut console = None;
        let address = loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).expect("read stdout") > 0,
                "facedex serve exited before serving"
            );
            if let Some(url) = line.trim().strip_prefix("facedex: web console on ") {
                console = Some(url.to_owned());
            }
            if let Some(rest) = line.strip_prefix("facedex: serving FaceSearch on ") {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        // Keep draining stdout so that later output never hits a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self {
            child,
            url: format!("http://{address}"),
            console,
        }
    }

    /// SIGTERM, then wait: the server drains and writes its final snapshot.
    pub fn terminate(mut self) {
        let exit = self.stop();
        assert!(exit.success(), "facedex serve exited with {exit} after SIGTERM");
    }

    /// SIGTERM, then wait for the exit, whatever it is.
    pub fn stop(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
