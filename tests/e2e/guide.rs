//! The plugin guide, `docs/writing-plugins.md`, run as written: for each
//! language, the files it shows are written and the commands it shows are run
//! in an empty folder, with the real toolchains and the real `plugboard`
//! binary, and each checked command must print what the guide shows. The
//! annotations are described in the comment at the top of the guide.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use plugboard_tests::repo_root;
use serde_json::Value;

/// The guide, relative to the repository root.
const GUIDE: &str = "docs/writing-plugins.md";
/// Keys whose values change from run to run; `json output` blocks show them
/// but they are not compared.
const VOLATILE: [&str; 5] = [
    "duration_ms",
    "peak_memory_bytes",
    "peak_host_memory_bytes",
    "at_ms",
    "started_at_ms",
];
/// Longest one block may run (a cold `cargo build` or `npm install`).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(900);

/// The Rust section builds `shout-rust` with cargo and the host runs it.
#[test]
fn rust_guide_builds_a_plugin_the_host_runs() {
    require("cargo", "install Rust through rustup (https://rustup.rs)");
    require("rustup", "install Rust through rustup (https://rustup.rs)");
    // A shared target folder keeps reruns incremental; the guide copies the
    // component from `${CARGO_TARGET_DIR:-target}`.
    run_guide("shout-rust", &[("CARGO_TARGET_DIR", cache_dir("guide-rust"))]);
}

/// The JavaScript section builds `shout-js` with componentize-js and the host runs it.
#[test]
fn javascript_guide_builds_a_plugin_the_host_runs() {
    require("node", "install Node.js 20 or later with npm");
    require("npm", "install npm (it comes with Node.js)");
    run_guide(
        "shout-js",
        &[
            ("npm_config_cache", cache_dir("guide-npm")),
            ("npm_config_prefer_offline", "true".into()),
            ("npm_config_update_notifier", "false".into()),
            ("npm_config_fund", "false".into()),
            ("npm_config_audit", "false".into()),
        ],
    );
}

/// The Python section builds `shout-py` with componentize-py and the host runs it.
#[test]
fn python_guide_builds_a_plugin_the_host_runs() {
    require("python3", "install Python 3.10 or later with its venv module");
    run_guide(
        "shout-py",
        &[
            ("PIP_CACHE_DIR", cache_dir("guide-pip")),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1".into()),
        ],
    );
}

/// Fails, saying what to install, when `tool` is not on PATH.
fn require(tool: &str, hint: &str) {
    let found = Command::new("bash")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{tool}` is missing: {hint} to run the guide's test");
}

/// A folder under the repository's `target/` for a tool's cache, as a string.
fn cache_dir(name: &str) -> String {
    repo_root().join("target").join(name).display().to_string()
}

/// One fenced block of the guide.
#[derive(Debug)]
struct Block {
    /// Line of the opening fence (1-based).
    line: usize,
    /// First word of the info string (`sh`, `json`, ...).
    lang: String,
    /// The other words: `key=value` or a bare `key`.
    attrs: Vec<(String, Option<String>)>,
    body: String,
}

impl Block {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    fn has(&self, key: &str) -> bool {
        self.attr(key).is_some()
    }
}

/// Every fenced block of `text`, in order.
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let lang = words.next().unwrap_or_default().to_string();
        let attrs = words
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w.to_string(), None),
            })
            .collect();
        let mut body = String::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            if line == "```" {
                closed = true;
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        assert!(closed, "{GUIDE}:{}: the block is never closed", n + 1);
        out.push(Block {
            line: n + 1,
            lang,
            attrs,
            body,
        });
    }
    out
}

/// What a checked command must print.
#[derive(Debug, Default)]
struct Expected {
    status: i32,
    /// `json output`: stdout as JSON.
    json: Option<Value>,
    /// `text output`: stdout exactly.
    text: Option<String>,
    /// `text stderr`: lines that must appear in stderr, in order.
    stderr: Option<Vec<String>>,
}

/// One thing the guide has the reader do.
#[derive(Debug)]
enum Step {
    /// Write `body` to `path` (relative to the work folder).
    File { line: usize, path: String, body: String },
    /// Run `script` in the project folder `dir`.
    Run {
        line: usize,
        dir: String,
        script: String,
        expected: Option<Expected>,
    },
}

/// The annotation words a block may carry.
const KNOWN: [&str; 6] = ["file", "run", "check", "exit", "output", "stderr"];

/// The steps of the guide for the project folder `project`, in order.
fn steps(text: &str, project: &str) -> Vec<Step> {
    let blocks = blocks(text);
    let mut steps = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let block = &blocks[i];
        i += 1;
        // Any `key=value` word marks a block as annotated, so that a misspelt
        // key is refused rather than the block silently skipped.
        let annotated = block
            .attrs
            .iter()
            .any(|(k, v)| v.is_some() || KNOWN.contains(&k.as_str()));
        if !annotated {
            continue;
        }
        if let Some((key, _)) = block.attrs.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
            panic!(
                "{GUIDE}:{}: unknown annotation `{key}`, expected one of {}",
                block.line,
                KNOWN.map(|k| format!("`{k}`")).join(", ")
            );
        }
        if let Some(path) = block.attr("file") {
            check_relative(path, block.line);
            if path.split('/').next() == Some(project) {
                steps.push(Step::File {
                    line: block.line,
                    path: path.into(),
                    body: block.body.clone(),
                });
            }
            continue;
        }
        let Some(dir) = block.attr("run") else {
            panic!(
                "{GUIDE}:{}: a `{}` block must follow a `check` block",
                block.line, block.attrs[0].0
            );
        };
        assert!(
            !dir.is_empty() && !dir.contains('/') && dir != "..",
            "{GUIDE}:{}: `run={dir}` must name one project folder",
            block.line
        );
        let mut expected = None;
        if block.has("check") {
            let status = block.attr("exit").map_or(0, |s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("{GUIDE}:{}: `exit={s}` is not a number", block.line))
            });
            let mut e = Expected {
                status,
                ..Expected::default()
            };
            while let Some(next) = blocks.get(i).filter(|b| b.has("output") || b.has("stderr")) {
                match (next.lang.as_str(), next.has("output")) {
                    ("json", true) => {
                        e.json = Some(serde_json::from_str(&next.body).unwrap_or_else(|err| {
                            panic!("{GUIDE}:{}: the expected output is not JSON: {err}", next.line)
                        }))
                    }
                    ("text", true) => e.text = Some(next.body.clone()),
                    ("text", false) => e.stderr = Some(next.body.lines().map(str::to_string).collect()),
                    (lang, _) => panic!(
                        "{GUIDE}:{}: `{lang}` blocks cannot be compared, only `json output`, `text output` and `text stderr`",
                        next.line
                    ),
                }
                i += 1;
            }
            assert!(
                e.json.is_some() || e.text.is_some() || e.stderr.is_some(),
                "{GUIDE}:{}: a `check` block must be followed by an `output` or `stderr` block",
                block.line
            );
            expected = Some(e);
        } else {
            assert!(!block.has("exit"), "{GUIDE}:{}: `exit` needs `check`", block.line);
        }
        if dir == project {
            steps.push(Step::Run {
                line: block.line,
                dir: dir.into(),
                script: block.body.clone(),
                expected,
            });
        }
    }
    steps
}

/// Panics unless `path` stays inside the work folder.
fn check_relative(path: &str, line: usize) {
    let ok = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    assert!(
        ok,
        "{GUIDE}:{line}: `file={path}` must be a relative path without `..`"
    );
}

/// Runs the guide's steps for `project` in a fresh folder, with `env` added.
fn run_guide(project: &str, env: &[(&str, String)]) {
    let root = repo_root();
    let text =
        std::fs::read_to_string(root.join(GUIDE)).unwrap_or_else(|e| panic!("cannot read `{GUIDE}`: {e}"));
    let steps = steps(&text, project);
    let checks = steps
        .iter()
        .filter(|s| {
            matches!(
                s,
                Step::Run {
                    expected: Some(_),
                    ..
                }
            )
        })
        .count();
    assert!(checks > 0, "{GUIDE} has no `check` block for `{project}`");

    // Outside the repository, so that cargo does not take the project for a
    // member of Plugboard's workspace.
    let work = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(&root, work.path().join("plugboard")).expect("link the repository");
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).expect("bin folder");
    std::os::unix::fs::symlink(plugboard_tests::plugboard_binary(), bin.join("plugboard"))
        .expect("link the binary");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());

    let started = Instant::now();
    for step in steps {
        match step {
            Step::File { line, path, body } => {
                let file = work.path().join(&path);
                std::fs::create_dir_all(file.parent().expect("a file has a folder"))
                    .unwrap_or_else(|e| panic!("{GUIDE}:{line}: cannot create the folder of `{path}`: {e}"));
                std::fs::write(&file, body)
                    .unwrap_or_else(|e| panic!("{GUIDE}:{line}: cannot write `{path}`: {e}"));
            }
            Step::Run {
                line,
                dir,
                script,
                expected,
            } => {
                let cwd = work.path().join(&dir);
                std::fs::create_dir_all(&cwd).expect("project folder");
                let mut command = Command::new("bash");
                command
                    .args(["-euo", "pipefail", "-c", &script])
                    .current_dir(&cwd)
                    .env("PATH", &path)
                    .env_remove("PLUGBOARD_CONFIG")
                    .env_remove("PLUGBOARD_PLUGIN_DIR")
                    .env_remove("PLUGBOARD_DATA_DIR")
                    .env_remove("PLUGBOARD_LOG")
                    .envs(env.iter().map(|(k, v)| (k, v)));
                let step_started = Instant::now();
                let out = run(command, line);
                eprintln!(
                    "{project}: {GUIDE}:{line} took {:.1} s",
                    step_started.elapsed().as_secs_f64()
                );
                compare(line, &script, &out, expected);
            }
        }
    }
    eprintln!(
        "{project}: the guide ran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// What a script did.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` in a process group of its own, killing the group when it
/// runs past [`BLOCK_TIMEOUT`].
fn run(mut command: Command, line: usize) -> Output {
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{GUIDE}:{line}: cannot start bash: {e}"));
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + BLOCK_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            panic!(
                "{GUIDE}:{line}: the block did not finish within {} s",
                BLOCK_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Panics, showing the script and what it printed, when `out` is not what
/// the guide says.
fn compare(line: usize, script: &str, out: &Output, expected: Option<Expected>) {
    let shown = || {
        format!(
            "\n--- script\n{script}--- {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            out.stdout,
            tail(&out.stderr, 60)
        )
    };
    let expected = expected.unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(expected.status),
        "{GUIDE}:{line}: the block exited with {}, the guide expects {}{}",
        out.status,
        expected.status,
        shown()
    );
    if let Some(want) = expected.json {
        let got: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{GUIDE}:{line}: stdout is not JSON: {e}{}", shown()));
        let (got, want) = (without_volatile(got), without_volatile(want));
        assert!(
            got == want,
            "{GUIDE}:{line}: stdout differs from the guide's `json output`, which shows (volatile values aside)\n{}{}",
            serde_json::to_string_pretty(&want).unwrap_or_default(),
            shown()
        );
    }
    if let Some(want) = expected.text {
        assert_eq!(
            out.stdout.trim_end(),
            want.trim_end(),
            "{GUIDE}:{line}: stdout differs from the guide's `text output`{}",
            shown()
        );
    }
    if let Some(want) = expected.stderr {
        let mut got = out.stderr.lines().map(str::trim_end);
        for wanted in want.iter().map(|l| l.trim_end()).filter(|l| !l.is_empty()) {
            assert!(
                got.any(|l| l == wanted),
                "{GUIDE}:{line}: stderr lacks the line `{wanted}` (or has it out of order){}",
                shown()
            );
        }
    }
}

/// `value` without the keys of [`VOLATILE`], at any depth.
fn without_volatile(mut value: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|k, _| !VOLATILE.contains(&k.as_str()));
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The guide's annotations, read from a sample.
mod parsing {
    use super::*;

    const SAMPLE: &str = "intro\n\
        ```toml file=p/Cargo.toml\n[package]\n```\n\
        ```sh\nnot run\n```\n\
        ```sh run=p check exit=1\nplugboard invoke x\n```\n\
        ```json output\n{\"a\": 1}\n```\n\
        ```text stderr\n[plugin info] hi\n```\n\
        ```sh run=q\nother project\n```\n";

    /// Only annotated blocks of the project become steps, with their checks.
    #[test]
    fn annotated_blocks_of_a_project_become_steps() {
        let steps = steps(SAMPLE, "p");
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(
            matches!(&steps[0], Step::File { path, body, .. } if path == "p/Cargo.toml" && body == "[package]\n")
        );
        let Step::Run {
            dir,
            expected: Some(e),
            ..
        } = &steps[1]
        else {
            panic!("{steps:?}")
        };
        assert_eq!(dir, "p");
        assert_eq!(e.status, 1);
        assert_eq!(e.json, Some(serde_json::json!({"a": 1})));
        assert_eq!(e.stderr.as_deref(), Some(&["[plugin info] hi".to_string()][..]));
    }

    /// A misspelt annotation is an error, not a silently skipped block.
    #[test]
    #[should_panic(expected = "unknown annotation `fiel`")]
    fn unknown_annotations_are_refused() {
        steps("```rust fiel=p/src/lib.rs\n```\n", "p");
    }

    /// Volatile figures are not compared.
    #[test]
    fn volatile_values_are_ignored() {
        let a = serde_json::json!({"duration_ms": 1.5, "logs": [{"at_ms": 3, "message": "m"}]});
        let b = serde_json::json!({"duration_ms": 9, "logs": [{"at_ms": 0, "message": "m"}]});
        assert_eq!(without_volatile(a), without_volatile(b));
    }
}
