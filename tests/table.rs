//! `process --format csv|parquet`: the long table against the JSONL records of the same run,
//! value for value, read back with the csv and parquet crates' readers.

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
mod common;

use common::{eeg, root, stderr};
#[cfg(target_os = "linux")]
use common::{long_edf, peak_rss_of, sines};

/// A scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    common::scratch("table-tests", test)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// Files in `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// As [`common::assert_bad_input`], with nothing on standard output.
fn assert_bad_input(o: &Output, needles: &[&str]) {
    common::assert_bad_input(o, needles);
    assert!(o.stdout.is_empty());
}

const DEFAULT_BANDS: [&str; 5] = ["delta", "theta", "alpha", "beta", "gamma"];

/// The table's columns for `bands`, as the documentation lists them.
fn expected_columns(bands: &[&str]) -> Vec<String> {
    let mut cols: Vec<String> = [
        "session_id",
        "device_id",
        "window_index",
        "start_ms",
        "end_ms",
        "settling",
        "channel",
    ]
    .map(String::from)
    .to_vec();
    for b in bands {
        cols.push(format!("{b}_power"));
        cols.push(format!("{b}_rel"));
    }
    cols.extend(
        [
            "total_power",
            "rms_uv",
            "ptp_uv",
            "line_noise_ratio",
            "flatline",
            "railed",
            "artifact",
            "good",
            "engagement",
            "theta_beta",
            "alpha_theta",
        ]
        .map(String::from),
    );
    cols
}

/// One value of a row; numbers by their bits, so that equal means bit for bit. `Num(None)`
/// is null (JSON `null`, an empty CSV field, a Parquet null).
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Text(String),
    UInt(u64),
    Int(i64),
    Bool(bool),
    Num(Option<u64>),
}

fn num(v: &Value) -> Val {
    match v {
        Value::Null => Val::Num(None),
        v => Val::Num(Some(v.as_f64().expect("a number").to_bits())),
    }
}

/// The rows the JSONL records flatten to: one per record and channel, in order, with the
/// values of `expected_columns(bands)`.
fn rows_of_jsonl(jsonl: &[u8], bands: &[&str]) -> Vec<Vec<Val>> {
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(jsonl).lines() {
        let r: Value = serde_json::from_str(line).expect("each line is JSON");
        for ch in r["channels"].as_array().expect("channels") {
            let mut row = vec![
                Val::Text(r["session_id"].as_str().expect("id").into()),
                Val::Text(r["device_id"].as_str().expect("id").into()),
                Val::UInt(r["window_index"].as_u64().expect("u64")),
                Val::Int(r["start_ms"].as_i64().expect("i64")),
                Val::Int(r["end_ms"].as_i64().expect("i64")),
                Val::Bool(r["settling"].as_bool().expect("bool")),
                Val::Text(ch["name"].as_str().expect("name").into()),
            ];
            for b in bands {
                row.push(num(&ch["band_power"][b]));
                row.push(num(&ch["relative_power"][b]));
            }
            let q = &ch["quality"];
            row.extend([
                num(&ch["total_power"]),
                num(&q["rms_uv"]),
                num(&q["ptp_uv"]),
                num(&q["line_noise_ratio"]),
            ]);
            for flag in ["flatline", "railed", "artifact", "good"] {
                row.push(Val::Bool(q[flag].as_bool().expect("bool")));
            }
            for index in ["engagement", "theta_beta", "alpha_theta"] {
                row.push(num(&r["indices"][index]));
            }
            rows.push(row);
        }
    }
    rows
}

/// How the CSV writes a column's values.
fn csv_value(column: &str, field: &str) -> Val {
    fn bad<T>(column: &str, field: &str, what: &str) -> T {
        panic!("{column}: {field:?} is not {what}")
    }
    match column {
        "session_id" | "device_id" | "channel" => Val::Text(field.into()),
        "window_index" => Val::UInt(
            field
                .parse()
                .unwrap_or_else(|_| bad(column, field, "a u64")),
        ),
        "start_ms" | "end_ms" => Val::Int(
            field
                .parse()
                .unwrap_or_else(|_| bad(column, field, "an i64")),
        ),
        "settling" | "flatline" | "railed" | "artifact" | "good" => match field {
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            _ => bad(column, field, "true or false"),
        },
        _ if field.is_empty() => Val::Num(None),
        _ => Val::Num(Some(
            field
                .parse::<f64>()
                .unwrap_or_else(|_| bad(column, field, "a number"))
                .to_bits(),
        )),
    }
}

fn rows_of_csv(path: &Path, columns: &[String]) -> Vec<Vec<Val>> {
    let mut reader = csv::Reader::from_path(path).expect("open CSV");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(header, columns, "CSV header");
    reader
        .records()
        .map(|r| {
            let r = r.expect("a CSV record");
            assert_eq!(r.len(), columns.len());
            columns
                .iter()
                .zip(r.iter())
                .map(|(c, f)| csv_value(c, f))
                .collect()
        })
        .collect()
}

fn parquet_reader(path: &Path) -> SerializedFileReader<std::fs::File> {
    let file = std::fs::File::open(path).expect("open Parquet");
    SerializedFileReader::new(file).expect("a Parquet file")
}

/// The rows of a Parquet file through the parquet crate's record reader, which types each
/// value by the file's schema: window_index must read as an unsigned 64-bit integer, the
/// times as timestamps in ms, the indices as nullable doubles.
fn rows_of_parquet(path: &Path, columns: &[String]) -> Vec<Vec<Val>> {
    parquet_reader(path)
        .into_iter()
        .map(|row| {
            let row = row.expect("a Parquet row");
            assert!(
                row.get_column_iter().map(|(n, _)| n).eq(columns.iter()),
                "columns of a row"
            );
            row.get_column_iter()
                .map(|(name, field)| match field {
                    Field::Str(s) => Val::Text(s.clone()),
                    Field::ULong(v) => Val::UInt(*v),
                    Field::TimestampMillis(v) => Val::Int(*v),
                    Field::Bool(b) => Val::Bool(*b),
                    Field::Double(v) => Val::Num(Some(v.to_bits())),
                    Field::Null => Val::Num(None),
                    other => panic!("{name}: unexpected Parquet value {other:?}"),
                })
                .collect()
        })
        .collect()
}

/// Asserts equal rows, pointing at the first difference.
fn assert_same_rows(what: &str, got: &[Vec<Val>], want: &[Vec<Val>], columns: &[String]) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (c, (gv, wv)) in g.iter().zip(w).enumerate() {
            assert_eq!(gv, wv, "{what}: row {i}, column {}", columns[c]);
        }
        assert_eq!(g.len(), w.len(), "{what}: row {i}");
    }
}

/// Runs `process INPUT ARGS` as JSONL to standard output, and as CSV and Parquet to files
/// whose extension picks the format, and checks that both tables hold the JSONL's values.
/// Returns the number of rows.
fn check_tables(test: &str, input: &str, args: &[&str], bands: &[&str]) -> usize {
    let dir = scratch(test);
    let mut jsonl_args = vec!["process", input, "-q"];
    jsonl_args.extend_from_slice(args);
    let jsonl = eeg(&jsonl_args);
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let columns = expected_columns(bands);
    let want = rows_of_jsonl(&jsonl.stdout, bands);
    assert!(!want.is_empty());

    let csv = dir.join("table.csv");
    let parquet = dir.join("table.parquet");
    for out in [&csv, &parquet] {
        let mut table_args = vec!["process", input, "-q", "--out", path_str(out)];
        table_args.extend_from_slice(args);
        let o = eeg(&table_args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    assert_same_rows("CSV", &rows_of_csv(&csv, &columns), &want, &columns);
    assert_same_rows(
        "Parquet",
        &rows_of_parquet(&parquet, &columns),
        &want,
        &columns,
    );
    want.len()
}

#[test]
fn table_rows_equal_the_jsonl_records_bit_for_bit() {
    // One channel, 695 windows, some with null indices (no good channel).
    let rows = check_tables(
        "subsecond",
        "fixtures/test_subsecond.edf",
        &[],
        &DEFAULT_BANDS,
    );
    assert_eq!(rows, 695);
    // Five sessions of one signal each (one per sample rate), whose windows interleave.
    let rows = check_tables(
        "generator_bdf",
        "fixtures/test_generator.bdf",
        &[],
        &DEFAULT_BANDS,
    );
    assert_eq!(rows, 5 * 27);
    // 11 channels, with a config of its own: the band columns follow the config.
    let dir = scratch("custom_bands_config");
    let cfg = dir.join("bands.toml");
    std::fs::write(
        &cfg,
        "[bands]\nslow = [1.0, 8.0]\nfast = [8.0, 40.0]\nbeta = [13.0, 30.0]\n",
    )
    .expect("write");
    let rows = check_tables(
        "generator_edf",
        "fixtures/test_generator.edf",
        &["--config", path_str(&cfg)],
        &["slow", "fast", "beta"],
    );
    assert_eq!(rows, 597 * 11);
}

#[test]
fn null_indices_are_empty_csv_fields_and_parquet_nulls() {
    // test_subsecond.edf has windows where no channel is good: their indices are null.
    let dir = scratch("nulls");
    let csv = dir.join("t.csv");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "-q",
        "--out",
        path_str(&csv),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&csv).expect("read");
    let nulls = text.lines().filter(|l| l.ends_with(",,,")).count();
    assert!(nulls > 0, "no row with three empty indices");
    let columns = expected_columns(&DEFAULT_BANDS);
    let parquet = dir.join("t.parquet");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "-q",
        "--out",
        path_str(&parquet),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = rows_of_parquet(&parquet, &columns);
    let null_rows = rows
        .iter()
        .filter(|r| r[r.len() - 3..].iter().all(|v| *v == Val::Num(None)))
        .count();
    assert_eq!(null_rows, nulls);
}

#[test]
fn format_flag_overrides_the_extension() {
    let dir = scratch("override");
    let run = |out: &Path, format: Option<&str>| {
        let mut args = vec![
            "process",
            "fixtures/test_subsecond.edf",
            "-q",
            "--out",
            path_str(out),
        ];
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        let o = eeg(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out).expect("output")
    };
    let header = expected_columns(&DEFAULT_BANDS).join(",") + "\n";
    let is_parquet = |b: &[u8]| b.starts_with(b"PAR1") && b.ends_with(b"PAR1");
    let is_csv = |b: &[u8]| b.starts_with(header.as_bytes());
    let is_jsonl = |b: &[u8]| b.starts_with(b"{\"schema\":\"eeg.processed/1\"");

    // The extension, any case, when there is no --format.
    assert!(is_csv(&run(&dir.join("a.csv"), None)));
    assert!(is_csv(&run(&dir.join("a.CSV"), None)));
    assert!(is_parquet(&run(&dir.join("a.parquet"), None)));
    assert!(is_jsonl(&run(&dir.join("a.jsonl"), None)));
    assert!(is_jsonl(&run(&dir.join("a.ndjson"), None)));
    // --format wins over the extension, and writes any name (without it, an extension no
    // format is written as is refused: tests/cli.rs).
    assert!(is_jsonl(&run(&dir.join("a.txt"), Some("jsonl"))));
    assert!(is_parquet(&run(&dir.join("b.csv"), Some("parquet"))));
    assert!(is_csv(&run(&dir.join("b.parquet"), Some("csv"))));
    assert!(is_jsonl(&run(&dir.join("c.parquet"), Some("jsonl"))));
    assert!(is_csv(&run(&dir.join("c.jsonl"), Some("csv"))));

    // Standard output: JSONL unless told otherwise.
    let o = eeg(&["process", "fixtures/test_subsecond.edf", "-q"]);
    assert!(is_jsonl(&o.stdout));
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "-q",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(is_csv(&o.stdout));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1 + 695);
}

#[test]
fn parquet_to_a_pipe_equals_parquet_to_a_file() {
    let dir = scratch("pipe");
    let file = dir.join("t.parquet");
    let o = eeg(&[
        "process",
        "fixtures/test_generator.bdf",
        "-q",
        "--out",
        path_str(&file),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Standard output is a pipe here, not a terminal: allowed.
    let o = eeg(&[
        "process",
        "fixtures/test_generator.bdf",
        "-q",
        "--format",
        "parquet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let piped = dir.join("piped.parquet");
    std::fs::write(&piped, &o.stdout).expect("write");
    let columns = expected_columns(&DEFAULT_BANDS);
    let rows = rows_of_parquet(&piped, &columns);
    assert!(!rows.is_empty());
    assert_eq!(rows, rows_of_parquet(&file, &columns));
}

#[test]
fn parquet_schema_has_the_documented_types_and_metadata() {
    use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
    let dir = scratch("schema");
    let out = dir.join("t.parquet");
    let o = eeg(&[
        "process",
        "fixtures/test_generator.edf",
        "-q",
        "--out",
        path_str(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reader = parquet_reader(&out);
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let columns = expected_columns(&DEFAULT_BANDS);
    assert_eq!(schema.num_columns(), columns.len());
    for (i, name) in columns.iter().enumerate() {
        let c = schema.column(i);
        assert_eq!(c.name(), name);
        let ty = c.self_type();
        let (physical, logical, repetition) = match name.as_str() {
            "session_id" | "device_id" | "channel" => (
                Physical::BYTE_ARRAY,
                Some(LogicalType::String),
                Repetition::REQUIRED,
            ),
            "window_index" => (
                Physical::INT64,
                Some(LogicalType::integer(64, false)),
                Repetition::REQUIRED,
            ),
            "start_ms" | "end_ms" => (
                Physical::INT64,
                Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
                Repetition::REQUIRED,
            ),
            "settling" | "flatline" | "railed" | "artifact" | "good" => {
                (Physical::BOOLEAN, None, Repetition::REQUIRED)
            }
            "engagement" | "theta_beta" | "alpha_theta" => {
                (Physical::DOUBLE, None, Repetition::OPTIONAL)
            }
            _ => (Physical::DOUBLE, None, Repetition::REQUIRED),
        };
        assert_eq!(c.physical_type(), physical, "{name}");
        assert_eq!(c.logical_type_ref(), logical.as_ref(), "{name}");
        assert_eq!(ty.get_basic_info().repetition(), repetition, "{name}");
    }
    assert_eq!(meta.file_metadata().num_rows(), 597 * 11);
    for rg in meta.row_groups() {
        for c in rg.columns() {
            assert_eq!(c.compression(), Compression::SNAPPY);
        }
    }
    let kv: Vec<(String, String)> = meta
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    let get = |k: &str| {
        kv.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {kv:?}"))
    };
    assert_eq!(get("eeg.schema"), "eeg.processed/1");
    let config: Value = serde_json::from_str(&get("eeg.processing")).expect("JSON");
    assert_eq!(config["bands"][2], serde_json::json!(["alpha", 8.0, 13.0]));
    assert_eq!(config["filter"]["mains_hz"], 50.0);
    assert_eq!(config["window"]["hop_s"], 1.0);
}

#[test]
fn a_bad_format_value_is_rejected() {
    let dir = scratch("bad_format");
    let out = dir.join("t.csv");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--format",
        "xlsx",
        "--out",
        path_str(&out),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("'xlsx'") && err.contains("--format"), "{err}");
    assert!(err.contains("jsonl, csv, parquet"), "{err}");
    assert!(files(&dir).is_empty());
}

/// `script` (util-linux) runs the command on a pseudo-terminal and exits with its code.
#[cfg(target_os = "linux")]
fn on_a_terminal(dir: &Path, args: &str) -> (Option<i32>, String) {
    let bin = env!("CARGO_BIN_EXE_eeg-pipeline");
    let o = Command::new("script")
        .args(["-qec", &format!("{bin} {args}"), "/dev/null"])
        .current_dir(dir)
        .output()
        .expect("script (util-linux) runs");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn parquet_to_a_terminal_is_refused() {
    let dir = scratch("terminal");
    let input = root().join("fixtures").join("test_subsecond.edf");
    let input = path_str(&input);
    let (code, screen) = on_a_terminal(&dir, &format!("process {input} --format parquet"));
    assert_eq!(code, Some(2), "{screen}");
    let errors: Vec<&str> = screen
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{screen}");
    assert!(
        errors[0].contains("--format parquet") && errors[0].contains("terminal"),
        "{screen}"
    );
    assert!(!screen.contains("PAR1"), "{screen}");
    // To a file, from the same terminal: fine.
    let (code, screen) = on_a_terminal(
        &dir,
        &format!("process {input} --format parquet --out t.parquet -q"),
    );
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        parquet_reader(&dir.join("t.parquet"))
            .metadata()
            .file_metadata()
            .num_rows()
            > 0
    );
    // CSV is text: to the terminal it goes.
    let (code, screen) = on_a_terminal(&dir, &format!("process {input} --format csv -q"));
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.starts_with("session_id,device_id,"), "{screen:.200}");
}

#[test]
fn table_bad_combinations_are_refused_before_writing() {
    let dir = scratch("combinations");
    // Trigger events would land in the middle of the table on standard output.
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--format",
        "csv",
        "--triggers",
        "-",
    ]);
    assert_bad_input(&o, &["--triggers -", "csv"]);
    // Events to a file beside a table are fine (they stay JSONL).
    let events = dir.join("events.jsonl");
    let table = dir.join("t.parquet");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "-q",
        "--out",
        path_str(&table),
        "--triggers",
        path_str(&events),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::metadata(&events).is_ok());

    // A band whose column would repeat another column's name.
    let cfg = dir.join("total.toml");
    std::fs::write(&cfg, "[bands]\ntotal = [1.0, 4.0]\nalpha = [8.0, 13.0]\n").expect("write");
    let before = files(&dir);
    let out = dir.join("clash.csv");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--config",
        path_str(&cfg),
        "--out",
        path_str(&out),
    ]);
    assert_bad_input(&o, &["bands.total", "total_power", "--format csv"]);
    assert_eq!(files(&dir), before, "nothing written");
    // In JSON the band is a key of its own object: no clash.
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "-q",
        "--config",
        path_str(&cfg),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[cfg(target_os = "linux")]
#[test]
fn parquet_memory_stays_bounded_on_a_long_recording() {
    // 64 channels x 20 minutes at 256 Hz: 1197 windows, 76 608 rows.
    let dir = scratch("parquet_memory");
    let path = dir.join("long.edf");
    long_edf(&path, 1200, sines);
    let out = dir.join("long.parquet");
    let peak = peak_rss_of(Command::new(env!("CARGO_BIN_EXE_eeg-pipeline")).args([
        "process",
        path_str(&path),
        "--out",
        path_str(&out),
        "-q",
    ]));
    println!("peak RSS of process to Parquet on 20 min x 64 channels: {peak} kB");
    let reader = parquet_reader(&out);
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 1197 * 64);
    // Rows are written in bounded row groups, not held until the end.
    assert!(
        meta.num_row_groups() >= 3,
        "{} row groups",
        meta.num_row_groups()
    );
    assert!(
        peak < 40 * 1024,
        "peak RSS {peak} kB writing {} rows",
        1197 * 64
    );
}
