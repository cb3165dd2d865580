//! `facedex detect` end to end: the real binary on the sample photos, on the same photo in
//! every other format it decodes, and on bad inputs.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::{assets_dir, cosine, iou, photo, vision_config};

/// Runs `facedex` with the repository's assets configured through the environment.
fn facedex(args: &[&str]) -> Output {
    support::facedex_command().args(args).output().expect("facedex runs")
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[test]
fn json_with_embeddings_finds_yao_ming_among_the_players() {
    let (players, yao) = (photo("players.jpg"), photo("yaoming.jpg"));
    let output = facedex(&["detect", "--json", "--embeddings", path_str(&players), path_str(&yao)]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["path"], path_str(&players), "input order is kept");
    assert_eq!(
        (lines[0]["width"].as_u64(), lines[0]["height"].as_u64()),
        (Some(1237), Some(800))
    );
    let player_faces = lines[0]["faces"].as_array().expect("faces");
    let yao_faces = lines[1]["faces"].as_array().expect("faces");
    assert_eq!((player_faces.len(), yao_faces.len()), (22, 1));
    for face in player_faces.iter().chain(yao_faces) {
        assert_eq!(floats(&face["bbox"]).len(), 4);
        assert_eq!(face["landmarks"].as_array().expect("landmarks").len(), 5);
        let embedding = floats(&face["embedding"]);
        assert_eq!(embedding.len(), 512);
        assert!(
            (cosine(&embedding, &embedding) - 1.0).abs() < 1e-4,
            "embeddings are unit length"
        );
    }
    let query = floats(&yao_faces[0]["embedding"]);
    let best = player_faces
        .iter()
        .max_by(|a, b| cosine(&query, &floats(&a["embedding"])).total_cmp(&cosine(&query, &floats(&b["embedding"]))))
        .expect("faces");
    let bbox: [f32; 4] = floats(&best["bbox"]).try_into().expect("4 numbers");
    assert!(
        iou(&bbox, &[720.8068, 142.0237, 764.8746, 192.0418]) > 0.9,
        "best match at {bbox:?}"
    );
}

#[test]
fn bad_photos_get_typed_errors_and_the_others_still_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let players = std::fs::read(photo("players.jpg")).expect("players.jpg");
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &players[..players.len() / 2]).expect("write");
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").expect("write");
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, b"shopping list: milk, eggs\n").expect("write");
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, png_header_claiming(30_000, 30_000)).expect("write");
    let missing = dir.path().join("missing.jpg");
    let yao = photo("yaoming.jpg");

    let paths = [&truncated, &empty, &text, &bomb, &missing, &yao];
    let mut args = vec!["detect", "--json"];
    args.extend(paths.iter().map(|p| path_str(p)));
    let output = facedex(&args);
    assert_eq!(output.status.code(), Some(1), "failures make the exit status 1");
    let lines = json_lines(&output);
    assert_eq!(lines.len(), paths.len(), "one line per photo, failed or not");
    let expected_kinds = ["corrupt", "empty", "not_an_image", "too_large", "unreadable"];
    for (line, kind) in lines.iter().zip(expected_kinds) {
        assert_eq!(line["error"]["kind"], kind, "{line}");
        let message = line["error"]["message"].as_str().expect("message");
        assert!(
            message.starts_with(line["path"].as_str().expect("path")),
            "message names the input: {message}"
        );
    }
    assert!(
        lines[3]["error"]["message"]
            .as_str()
            .expect("message")
            .contains("30000x30000")
    );
    assert_eq!(lines[5]["faces"].as_array().expect("the good photo still ran").len(), 1);
}

#[test]
fn missing_model_names_the_path_and_the_setup_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_facedex"))
        .args(["detect", "--detector-model", "/nonexistent/det.onnx", "x.jpg"])
        .env(
            "FACEDEX__VISION__ONNXRUNTIME_LIBRARY_PATH",
            vision_config().onnxruntime_library_path,
        )
        .output()
        .expect("facedex runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/det.onnx") && stderr.contains("scripts/setup"),
        "{stderr}"
    );
}

#[test]
fn default_output_is_a_readable_table() {
    let output = facedex(&["detect", path_str(&photo("t1.jpg"))]);
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("1280x886, 6 face(s)"), "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|line| line.trim_start().starts_with(char::is_numeric))
            .count(),
        6
    );
}

/// The first 33 bytes of a PNG (signature + IHDR with a valid CRC) declaring `width`×`height`.
fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d".to_vec();
    bytes.extend_from_slice(&ihdr);
    bytes.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0, b'I', b'D', b'A', b'T']);
    bytes
}

/// A photo file over `archive.max_image_bytes` is refused by its size, before it is read or
/// decoded, with the setting named; the photos under the limit still run.
#[test]
fn a_photo_over_the_byte_limit_is_refused_before_it_is_read() {
    let yao = photo("yaoming.jpg");
    let players = photo("players.jpg");
    let limit = std::fs::metadata(&yao).expect("yaoming.jpg").len() + 1;
    assert!(
        std::fs::metadata(&players).expect("players.jpg").len() > limit,
        "players.jpg is the larger one"
    );
    let output = support::facedex_command()
        .env("FACEDEX__ARCHIVE__MAX_IMAGE_BYTES", limit.to_string())
        .args(["detect", "--json", path_str(&players), path_str(&yao)])
        .output()
        .expect("facedex runs");
    assert_eq!(output.status.code(), Some(1), "a refused photo makes the exit status 1");
    let lines = json_lines(&output);
    assert_eq!(lines[0]["error"]["kind"], "too_large", "{}", lines[0]);
    let message = lines[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains("archive.max_image_bytes"), "{message}");
    assert_eq!(lines[1]["faces"].as_array().map(Vec::len), Some(1), "{}", lines[1]);
}

/// The photos `scripts/formats/make-photos` makes from t1.jpg with real encoders: name, the
/// photo whose faces it must give, and the least cosine to them. A GIF's 256-colour palette
/// loses detail of its own, so it must give t1.jpg's faces less closely, and exactly those of
/// its first frame as Pillow reads it back.
const FORMAT_PHOTOS: [(&str, &str, f32); 17] = [
    ("t1.tif", "t1.jpg", 0.98),
    ("t1-16bit.tif", "t1.jpg", 0.98),
    ("t1-orientation6.tif", "t1.jpg", 0.98),
    ("t1-multipage.tif", "t1.jpg", 0.98),
    ("t1.apng", "t1.jpg", 0.98),
    ("t1-animated.webp", "t1.jpg", 0.98),
    ("t1.bmp", "t1.jpg", 0.98),
    ("t1.jxl", "t1.jpg", 0.98),
    ("t1-lossless.jxl", "t1.jpg", 0.98),
    ("t1.heic", "t1.jpg", 0.98),
    ("t1-irot.heic", "t1.jpg", 0.98),
    ("t1.avif", "t1.jpg", 0.98),
    ("t1.dng", "t1.jpg", 0.98),
    ("t1-orientation6.dng", "t1.jpg", 0.98),
    ("t1.gif", "t1.jpg", 0.95),
    ("t1.gif", "t1.gif-frame0.png", 0.999),
    ("t1.gif-frame0.png", "t1.jpg", 0.95),
];

#[test]
fn every_format_gives_the_faces_of_its_source() {
    let folder = assets_dir().join("formats");
    let path_of = |name: &str| {
        let path = if name == "t1.jpg" {
            photo(name)
        } else {
            folder.join(name)
        };
        assert!(
            path.is_file(),
            "{} missing: run scripts/formats/make-photos",
            path.display()
        );
        path
    };
    let mut names: Vec<&str> = FORMAT_PHOTOS
        .iter()
        .flat_map(|(name, source, _)| [*name, *source])
        .collect();
    names.sort_unstable();
    names.dedup();
    let paths: Vec<_> = names.iter().map(|name| path_of(name)).collect();
    let mut args = vec!["detect", "--json", "--embeddings"];
    args.extend(paths.iter().map(|path| path_str(path)));
    let output = facedex(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), names.len());
    let faces_of = |name: &str| -> Vec<([f32; 4], Vec<f32>)> {
        let line = &lines[names.iter().position(|candidate| *candidate == name).expect("detected")];
        line["faces"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no faces in {line}"))
            .iter()
            .map(|face| {
                let bbox: [f32; 4] = floats(&face["bbox"]).try_into().expect("4 numbers");
                (bbox, floats(&face["embedding"]))
            })
            .collect()
    };
    assert_eq!(faces_of("t1.jpg").len(), 6, "t1.jpg has 6 faces");
    for (name, source, min_cosine) in FORMAT_PHOTOS {
        let (expected, found) = (faces_of(source), faces_of(name));
        assert_eq!(found.len(), expected.len(), "{name} against {source}");
        for (bbox, embedding) in &expected {
            let (best_bbox, best_embedding) = found
                .iter()
                .max_by(|a, b| iou(bbox, &a.0).total_cmp(&iou(bbox, &b.0)))
                .expect("faces");
            let (overlap, similarity) = (iou(bbox, best_bbox), cosine(embedding, best_embedding));
            assert!(
                overlap >= 0.9 && similarity >= min_cosine,
                "{name}: {source}'s face at {bbox:?} matches at IoU {overlap:.3}, cosine {similarity:.4} (at least {min_cosine})"
            );
        }
    }
}

#[test]
fn every_format_cut_short_is_a_corrupt_photo() {
    let folder = assets_dir().join("formats");
    let cut = tempfile::tempdir().expect("temp dir");
    let mut names: Vec<&str> = FORMAT_PHOTOS.iter().map(|(name, _, _)| *name).collect();
    names.dedup();
    let paths: Vec<_> = names
        .iter()
        .map(|name| {
            let bytes = std::fs::read(folder.join(name)).expect("run scripts/formats/make-photos");
            let path = cut.path().join(name);
            // A quarter: also short of the first page of the two-page TIFF. A DNG holds its
            // JPEG preview before the sensor data, so its quarter still holds the whole preview
            // (and is read); a tenth cuts into the preview.
            let keep = match name.ends_with(".dng") {
                true => bytes.len() / 10,
                false => bytes.len() / 4,
            };
            std::fs::write(&path, &bytes[..keep]).expect("write");
            path
        })
        .collect();
    let mut args = vec!["detect", "--json"];
    args.extend(paths.iter().map(|path| path_str(path)));
    let output = facedex(&args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "bad photos exit 1: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (name, line) in names.iter().zip(json_lines(&output)) {
        assert_eq!(line["error"]["kind"], "corrupt", "{name} cut to a quarter: {line}");
    }
}
