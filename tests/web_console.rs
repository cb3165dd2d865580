//! The web console end to end, in a real browser: headless Chromium (Debian's `chromium`,
//! which `scripts/test` installs) driven by Playwright (`playwright-core` from npm, through
//! `web/tests/console.mjs`) against real `facedex serve` and `facedex index` processes.
//! The browser uploads yaoming.jpg and sees player 13 first, renames his person and sees the
//! name in the results, is refused without a token, and watches the pipeline page's counters
//! move during a local index run; screenshots of the pages land in `target/web-console/`.
//! Thumbnails are checked against image-rs crops, also on a 100-megapixel photo, where the
//! server's peak memory must stay within the console's decoding budget.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use serde_json::Value;
use support::people::{Augment, PLAYER_13_BOX, index_archive, save_jpeg, write_archive};
use support::{facedex_command, http_request, iou, photo};

const READ_TOKEN: &str = "read-s3cret";
const WRITE_TOKEN: &str = "write-s3cret";

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    let dir = root().join("target/web-console");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// A facedex process serving the console, killed on drop.
struct Console {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// What it printed after the console's address.
    later_lines: Arc<Mutex<Vec<String>>>,
}

impl Console {
    /// Runs `command` (which has `--http-listen 127.0.0.1:0`) with the tokens and waits for
    /// the console's address on its stdout.
    fn spawn(mut command: Command) -> Self {
        command
            .env("FACEDEX__SERVER__READ_TOKEN", READ_TOKEN)
            .env("FACEDEX__SERVER__WRITE_TOKEN", WRITE_TOKEN)
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("facedex starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).expect("read stdout") > 0,
                "facedex exited before serving the console"
            );
            if let Some(url) = line.trim().strip_prefix("facedex: web console on http://") {
                break url.trim_end_matches('/').to_owned();
            }
        };
        let later_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&later_lines);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                lines.lock().expect("lines").push(line);
            }
        });
        Self {
            child,
            addr,
            later_lines,
        }
    }

    /// `GET PATH` with the read token, as JSON.
    fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path, Some(READ_TOKEN));
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON")
    }

    /// `GET PATH` with `token`.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|value| ("Authorization", value.as_str())).collect();
        http_request(&self.addr, "GET", path, &headers, &[]).expect("HTTP")
    }

    /// Peak resident memory of the process since the last reset, in bytes (Linux).
    fn peak_rss_bytes(&self) -> u64 {
        self.memory("VmHWM:")
    }

    /// Resets the peak to the resident memory now, which it returns (Linux ≥ 4.0).
    fn reset_peak_rss(&self) -> u64 {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").expect("clear_refs");
        self.memory("VmRSS:")
    }

    /// A memory figure of `/proc/PID/status`, in bytes.
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"));
        kib * 1024
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `facedex serve --http-listen` over `data_dir`, with `extra` arguments.
fn serve(data_dir: &Path, extra: &[&str]) -> Console {
    let mut command = facedex_command();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra);
    Console::spawn(command)
}

/// Runs `web/tests/console.mjs SCENARIO` in Chromium with `env`; returns the JSON report it
/// prints last.
fn browser(scenario: &str, console: &Console, env: &[(&str, String)]) -> Value {
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            found
                .status
                .success()
                .then(|| String::from_utf8_lossy(&found.stdout).trim().to_owned())
        })
        .expect("chromium is not on PATH: scripts/test installs Debian's chromium");
    assert!(
        root().join("web/node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/web/build --deps"
    );
    let output = Command::new("node")
        .arg("web/tests/console.mjs")
        .arg(scenario)
        .current_dir(root())
        .env("CHROMIUM", chromium)
        .env("CONSOLE_URL", format!("http://{}/", console.addr))
        .env("READ_TOKEN", READ_TOKEN)
        .env("WRITE_TOKEN", WRITE_TOKEN)
        .env("SCREENSHOT_DIR", screenshots())
        .envs(env.iter().map(|(name, value)| (*name, value)))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "console.mjs {scenario} failed:\n{stdout}\n{stderr}"
    );
    let report = stdout.lines().last().expect("a report line");
    serde_json::from_str(report).unwrap_or_else(|error| panic!("report {report:?}: {error}"))
}

/// A face's box as `[x1, y1, x2, y2]`.
fn corners(face: &Value) -> [f32; 4] {
    let values: Vec<f32> = face["box"]
        .as_array()
        .expect("box")
        .iter()
        .map(|value| value.as_f64().expect("number") as f32)
        .collect();
    values.try_into().expect("four corners")
}

/// The box of `face` (of copy `photo_name`) in players.jpg's own pixels.
fn original_box(face: &Value, augments: &HashMap<String, Augment>) -> [f32; 4] {
    let augment = augments[face["photo_name"].as_str().expect("photo name")];
    let [x1, y1, x2, y2] = corners(face);
    let ([ax, ay], [bx, by]) = (augment.to_original([x1, y1]), augment.to_original([x2, y2]));
    [ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)]
}

#[test]
fn search_people_and_tokens_in_a_real_browser() {
    let work = tempfile::tempdir().expect("temp dir");
    let (archive, data_dir) = (work.path().join("archive"), work.path().join("data"));
    std::fs::create_dir_all(&archive).expect("archive");
    let augments = write_archive(&archive);
    assert!(index_archive(&archive, &data_dir) > 0, "the archive makes people");
    let console = serve(&data_dir, &[]);

    // Without a token the API refuses; with the read token it answers.
    let (status, body) = console.get("/api/people", None);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(console.get_json("/api/info")["needs_token"], true);

    let yaoming = photo("yaoming.jpg");
    let report = browser(
        "search-and-people",
        &console,
        &[
            ("QUERY_PHOTO", yaoming.display().to_string()),
            ("NEW_NAME", "Yao Ming".into()),
        ],
    );
    // The first thumbnail the browser showed is player 13, in whichever copy of players.jpg.
    let first = report["first_hit_face_id"].as_str().expect("first hit");
    let face = &console.get_json(&format!("/api/faces/{first}"))["face"];
    assert!(
        iou(&original_box(face, &augments), &PLAYER_13_BOX) > 0.8,
        "the first hit is player 13: {face}"
    );
    // The name the browser gave is the person's, and the browser saw it in the results.
    let person_id = face["person_id"].as_str().expect("player 13 is in a person");
    let person = console.get_json(&format!("/api/people/{person_id}"));
    assert_eq!(person["person"]["name"], "Yao Ming");
    assert_eq!(report["first_hit_name_after_rename"], "Yao Ming");
    for page in ["search", "people", "person"] {
        assert!(screenshots().join(format!("{page}.png")).is_file(), "{page}.png");
    }
}

#[test]
fn the_pipeline_page_follows_a_local_index_run() {
    let work = tempfile::tempdir().expect("temp dir");
    let archive = work.path().join("archive");
    std::fs::create_dir_all(&archive).expect("archive");
    // Enough photos for several refreshes of the page: 24 distinct copies of the sample
    // photos (each re-encoded differently), and one that is no image.
    let samples = ["players.jpg", "t1.jpg", "gdp.jpg", "yaoming.jpg"];
    for copy in 0..6 {
        for name in samples {
            let image = image::open(photo(name)).expect("sample photo");
            save_jpeg(&image, &archive.join(format!("{copy:02}-{name}")), 80 + copy as u8);
        }
    }
    std::fs::write(archive.join("broken.jpg"), b"not a photo").expect("broken photo");
    let data_dir = work.path().join("data");
    let mut command = facedex_command();
    command
        .arg("index")
        .arg(&archive)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--max-in-flight", "1", "--http-listen", "127.0.0.1:0"])
        .env("FACEDEX__WEB__THUMBNAILS_DURING_INDEXING", "true");
    let mut console = Console::spawn(command);
    let report = browser("pipeline", &console, &[]);
    let seen: Vec<u64> = report["photos_done_seen"]
        .as_array()
        .expect("values seen")
        .iter()
        .map(|value| value.as_u64().expect("count"))
        .collect();
    assert!(seen.len() >= 3, "the counter moved at least twice: {seen:?}");
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    assert!(*seen.last().expect("a value") <= 25, "{seen:?}");
    assert!(screenshots().join("pipeline.png").is_file());
    // Every face found got its thumbnail while the run went on (or just after it).
    let exit = console.child.wait().expect("facedex index exits");
    assert!(exit.success(), "{exit}");
    let cached = std::fs::read_dir(data_dir.join("thumbnails"))
        .expect("the thumbnail cache")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|extension| extension == "jpg"))
        })
        .count() as u64;
    // The reader thread takes the last lines once the pipe closes.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let lines = console.later_lines.lock().expect("lines").clone();
    let faces: u64 = lines
        .iter()
        .find_map(|line| {
            line.strip_prefix("indexed ")?
                .split_once(" photos (")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("facedex index says how many faces it found: {lines:?}"));
    assert!(faces > 0);
    assert_eq!(cached, faces, "a thumbnail per face");
}

/// The thumbnail an image-rs user would cut: the square on the box with 10 % margins, clamped
/// inside the photo, resized with Lanczos3 to `size`.
fn reference_thumbnail(photo: &RgbImage, [x1, y1, x2, y2]: [f32; 4], size: u32) -> RgbImage {
    let side = ((x2 - x1).max(y2 - y1) * 1.2)
        .min(photo.width() as f32)
        .min(photo.height() as f32);
    let left = ((x1 + x2) / 2.0 - side / 2.0).clamp(0.0, photo.width() as f32 - side);
    let top = ((y1 + y2) / 2.0 - side / 2.0).clamp(0.0, photo.height() as f32 - side);
    let square = image::imageops::crop_imm(
        photo,
        left.round() as u32,
        top.round() as u32,
        side.round() as u32,
        side.round() as u32,
    )
    .to_image();
    image::imageops::resize(&square, size, size, FilterType::Lanczos3)
}

/// The mean absolute difference of two same-sized images, in grey levels.
fn mean_difference(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// The face whose box best overlaps `expected`, found by searching the index with
/// players.jpg (every player's hits include his own face there).
fn face_at(console: &Console, expected: [f32; 4]) -> Value {
    let query = std::fs::read(photo("players.jpg")).expect("players.jpg");
    let bearer = format!("Bearer {READ_TOKEN}");
    let (status, body) = http_request(
        &console.addr,
        "POST",
        "/api/search?limit=3&min_score=-1",
        &[("Authorization", bearer.as_str()), ("Content-Type", "image/jpeg")],
        &query,
    )
    .expect("HTTP");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    let hits: Vec<&Value> = answer["faces"]
        .as_array()
        .expect("query faces")
        .iter()
        .flat_map(|face| face["hits"].as_array().expect("hits"))
        .map(|hit| &hit["face"])
        .collect();
    let face = hits
        .into_iter()
        .max_by(|a, b| iou(&corners(a), &expected).total_cmp(&iou(&corners(b), &expected)))
        .expect("a face")
        .clone();
    assert!(iou(&corners(&face), &expected) > 0.8, "{face}");
    face
}

/// `GET /api/faces/{id}/WHAT` (`thumbnail` or `photo`), decoded.
fn picture(console: &Console, face: &Value, what: &str) -> RgbImage {
    let face_id = face["face_id"].as_str().expect("id");
    let (status, jpeg) = console.get(&format!("/api/faces/{face_id}/{what}"), Some(READ_TOKEN));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&jpeg));
    image::load_from_memory(&jpeg).expect("a JPEG").to_rgb8()
}

#[test]
fn thumbnails_match_image_rs_crops_and_a_100_megapixel_photo_stays_within_budget() {
    let work = tempfile::tempdir().expect("temp dir");
    let players = image::open(photo("players.jpg")).expect("players.jpg").to_rgb8();
    // Player 13 of the original photo, against image-rs's own decode and crop.
    let small = work.path().join("small");
    std::fs::create_dir_all(&small).expect("folder");
    std::fs::copy(photo("players.jpg"), small.join("players.jpg")).expect("copy");
    index_archive(&small, &work.path().join("small-data"));
    let console = serve(&work.path().join("small-data"), &[]);
    let face = face_at(&console, PLAYER_13_BOX);
    let served = picture(&console, &face, "thumbnail");
    assert_eq!(served.dimensions(), (250, 250));
    let difference = mean_difference(&served, &reference_thumbnail(&players, corners(&face), 250));
    println!("player 13's thumbnail differs from image-rs's crop by {difference:.2} grey levels on average");
    assert!(difference < 4.0, "mean difference {difference:.2} grey levels");
    drop(console);

    // The same photo ten times larger (12370 × 8000, 99 megapixels, baseline JPEG).
    let large = work.path().join("large");
    std::fs::create_dir_all(&large).expect("folder");
    let upscaled = image::imageops::resize(
        &players,
        players.width() * 10,
        players.height() * 10,
        FilterType::Triangle,
    );
    save_jpeg(&DynamicImage::ImageRgb8(upscaled), &large.join("players.jpg"), 90);
    index_archive(&large, &work.path().join("large-data"));
    let console = serve(&work.path().join("large-data"), &[]);
    let face = face_at(&console, PLAYER_13_BOX.map(|value| value * 10.0));
    let within_budget = |what: &str| {
        let before = console.reset_peak_rss();
        let picture = picture(&console, &face, what);
        let grown = console.peak_rss_bytes().saturating_sub(before);
        // Decoded whole, the photo alone is 297 MB; within the default budget of 16 megapixels
        // (48 MB) it is decoded at 3/8, 14 megapixels (42 MB).
        println!(
            "the {what} of a 99-megapixel photo took {} MB over the resident set",
            grown >> 20
        );
        assert!(
            grown < 100 << 20,
            "the {what} took {} MB over the resident set",
            grown >> 20
        );
        picture
    };
    let served = within_budget("thumbnail");
    let expected = reference_thumbnail(&players, corners(&face).map(|value| value / 10.0), 250);
    let difference = mean_difference(&served, &expected);
    println!("on the 99-megapixel photo, by {difference:.2} grey levels");
    assert!(difference < 8.0, "mean difference {difference:.2} grey levels");
    let view = within_budget("photo");
    assert_eq!(view.width().max(view.height()), 1600, "the photo is shown downscaled");
}
