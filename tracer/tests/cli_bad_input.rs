//! The offline subcommands on input that is not a trace: exit status 2 (bad
//! input, see `cli/mod.rs`) and a message naming the file, never a panic or
//! a silent empty result. Runs the built binary, as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cowtrace(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .args(args)
        .arg(file)
        .output()
        .expect("the cowtrace binary runs")
}

/// The bad inputs, each with a word its message must contain.
fn bad_inputs(dir: &Path) -> Vec<(&'static str, PathBuf, &'static str)> {
    let missing = dir.join("missing.cwt");
    let empty = dir.join("empty.cwt");
    std::fs::write(&empty, b"").unwrap();
    let directory = dir.join("a-directory.cwt");
    std::fs::create_dir(&directory).unwrap();
    let magic = dir.join("not-a-trace.cwt");
    // Longer than any header, so only the magic can be what is wrong.
    std::fs::write(&magic, "{\"type\":\"cow_fault\"}\n".repeat(64)).unwrap();
    vec![
        ("missing file", missing, "cannot open"),
        ("empty file", empty, "empty"),
        ("directory", directory, "directory"),
        ("wrong magic", magic, "magic"),
    ]
}

fn assert_refused(what: &str, args: &[&str], file: &Path, word: &str) {
    let out = cowtrace(args, file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("cowtrace {args:?} on the {what}: stderr {stderr:?}");
    assert_eq!(out.status.code(), Some(2), "{context}");
    assert!(
        stderr.contains(&file.display().to_string()),
        "must name the file: {context}"
    );
    assert!(stderr.contains(word), "must say {word:?}: {context}");
    assert!(!stderr.contains("panicked"), "{context}");
    assert!(out.stdout.is_empty(), "no output for bad input: {context}");
}

#[test]
fn report_refuses_bad_input_with_status_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (what, file, word) in bad_inputs(dir.path()) {
        assert_refused(what, &["report"], &file, word);
        assert_refused(what, &["report", "--format", "json"], &file, word);
    }
}

#[test]
fn export_refuses_bad_input_with_status_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (what, file, word) in bad_inputs(dir.path()) {
        assert_refused(what, &["export", "--format", "jsonl"], &file, word);
    }
}
