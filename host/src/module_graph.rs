//! A test that the crate's top-level modules import each other without
//! cycles.
//!
//! It reads the sources under `src/`, takes every path in code that names a
//! top-level module - `use crate::callout::...`, `crate::time::now_ms()`,
//! `use crate::{names, time}`, a `super::` chain that climbs to the crate
//! root - and builds the graph "module A uses module B". Comments, doc
//! comments and string literals are skipped, so a doc link such as
//! ``[`crate::plugins`]`` is not an import. Every cycle in that graph fails
//! the test, except those closed by an import in [`ALLOWED_IMPORTS`], and the
//! failure lists each cycle with a file and line for every edge in it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Imports that may close a cycle: `(module, module it uses)`. None now:
/// the store names no type of the modules above it (an integration
/// version's OpenAPI schema is stated in `api::bodies`), so every cycle fails.
const ALLOWED_IMPORTS: &[(&str, &str)] = &[];

/// Where one module uses another: the first place found.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph
            .get("callout")
            .is_some_and(|uses| uses.contains_key("credentials")),
        "the scan found no `callout -> credentials` edge; is it reading {}?",
        src.display()
    );
    let mut checked = graph.clone();
    for (module, used) in ALLOWED_IMPORTS {
        if let Some(uses) = checked.get_mut(*module) {
            uses.remove(*used);
        }
    }
    let bad: Vec<String> = cycles(&checked).iter().map(|c| describe(c, &checked)).collect();
    assert!(
        bad.is_empty(),
        "top-level modules import each other in a circle; move what both need into a leaf module:\n{}",
        bad.join("\n")
    );
}

/// The scanner sees imports in every form the crate writes them, and nothing
/// in comments or strings.
#[test]
fn scanner_reads_paths_in_code_only() {
    let text = r##"
        //! [`crate::doc_link`] and crate::in_doc
        use crate::{alpha, beta::Thing, gamma::{self, x}};
        use crate::delta::Item; // crate::in_comment
        /* crate::in_block /* nested crate::deeper */ */
        let s = "crate::in_string \" crate::still_string";
        let r = r#"crate::in_raw "# ;
        let c = '"'; let l: &'static str = x;
        let q = '\''; let n = b'\\'; let b = br#"crate::in_bytes"#; crate::theta::go();
        fn f() { crate::epsilon::now() }
        use super::super::zeta;
        use super::eta;
    "##;
    let found = uses_in(text, 2);
    let found: Vec<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        found,
        ["alpha", "beta", "gamma", "delta", "theta", "epsilon", "zeta"]
    );
}

/// `a -> b -> a (a -> b: a/x.rs:3, b -> a: b.rs:9)`.
fn describe(cycle: &[String], graph: &Edges) -> String {
    let mut path = cycle.to_vec();
    path.push(cycle[0].clone());
    let places: Vec<String> = path
        .windows(2)
        .map(|w| format!("{} -> {}: {}", w[0], w[1], graph[&w[0]][&w[1]]))
        .collect();
    format!("  {} ({})", path.join(" -> "), places.join(", "))
}

/// Every elementary cycle, each starting at its smallest module.
fn cycles(graph: &Edges) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        walk(graph, start, &mut path, &mut found);
    }
    found
}

/// Extends `path` through modules greater than its start, recording each
/// way back to the start.
fn walk(graph: &Edges, start: &str, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    let last = path.last().expect("a path has a start").clone();
    for next in graph.get(&last).into_iter().flat_map(|uses| uses.keys()) {
        if next == start {
            found.push(path.clone());
        } else if next.as_str() > start && !path.contains(next) {
            path.push(next.clone());
            walk(graph, start, path, found);
            path.pop();
        }
    }
}

/// "Module A uses module B" for every top-level module under `src`, with
/// the first place each use was seen.
fn module_graph(src: &Path) -> Edges {
    let modules: BTreeSet<String> = fs::read_dir(src)
        .expect("src is readable")
        .map(|e| e.expect("src entry").path())
        .filter_map(|p| {
            let name = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension().is_some_and(|e| e == "rs")).then_some(name)
        })
        .filter(|name| name != "lib" && name != "main")
        .collect();
    let mut graph = Edges::new();
    for module in &modules {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        rust_files(&src.join(format!("{module}.rs")), &mut files);
        let uses = graph.entry(module.clone()).or_default();
        for file in files {
            let rel = file.strip_prefix(src).expect("under src");
            let text =
                fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            for (used, line) in uses_in(&text, depth(rel)) {
                if modules.contains(&used) && &used != module {
                    uses.entry(used)
                        .or_insert_with(|| format!("{}:{line}", rel.display()));
                }
            }
        }
    }
    graph
}

/// How deep the file's module sits below the crate root: `time.rs` and
/// `callout/mod.rs` are 1, `callout/send.rs` is 2.
fn depth(rel: &Path) -> usize {
    let parts = rel.components().count();
    if rel.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .expect("folder is readable")
            .map(|e| e.expect("folder entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// A token of Rust code that matters for paths.
#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

/// The crate-level names that `text` (a file `depth` modules deep) uses,
/// with their lines, in order of appearance.
fn uses_in(text: &str, depth: usize) -> Vec<(String, usize)> {
    let tokens = tokenize(text);
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let root = match &tokens[i].0 {
            Token::Ident(name) if name == "crate" => Some(i + 1),
            Token::Ident(name) if name == "super" => climbs_to_root(&tokens, i, depth),
            _ => None,
        };
        // `crate::x` or `super::...::x`, not a field or a path inside one.
        let starts = i == 0 || tokens[i - 1].0 != Token::PathSep;
        if let (Some(at), true) = (root, starts)
            && tokens.get(at).map(|t| &t.0) == Some(&Token::PathSep)
        {
            match tokens.get(at + 1) {
                Some((Token::Ident(name), line)) => found.push((name.clone(), *line)),
                Some((Token::Open, _)) => found.extend(group_heads(&tokens, at + 2)),
                _ => {}
            }
        }
        i += 1;
    }
    found
}

/// For `super` at `i`: the index just past the chain of `super::` when it
/// climbs to the crate root or above, else `None`.
fn climbs_to_root(tokens: &[(Token, usize)], i: usize, depth: usize) -> Option<usize> {
    let mut at = i;
    let mut climbs = 0;
    while matches!(&tokens.get(at).map(|t| &t.0), Some(Token::Ident(n)) if n == "super") {
        climbs += 1;
        if tokens.get(at + 1).map(|t| &t.0) != Some(&Token::PathSep) {
            return None;
        }
        at += 2;
    }
    // `at` is past the last `super::`; step back onto its `::`.
    (climbs >= depth).then_some(at - 1)
}

/// The first name of each item of a `{ ... }` group starting at `start`.
fn group_heads(tokens: &[(Token, usize)], start: usize) -> Vec<(String, usize)> {
    let mut heads = Vec::new();
    let mut level = 1;
    let mut at_item_start = true;
    for (token, line) in &tokens[start..] {
        match token {
            Token::Open => level += 1,
            Token::Close => {
                level -= 1;
                if level == 0 {
                    break;
                }
            }
            Token::Comma if level == 1 => {
                at_item_start = true;
                continue;
            }
            Token::Ident(name) if level == 1 && at_item_start && name != "self" => {
                heads.push((name.clone(), *line));
            }
            _ => {}
        }
        at_item_start = false;
    }
    heads
}

/// The tokens of `text` with their lines, leaving out comments and the
/// contents of string and character literals.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i, &mut line);
        } else if c == '"' {
            i = skip_string(&chars, i + 1, 0, &mut line);
        } else if c == '\'' {
            i = skip_char_or_lifetime(&chars, i);
        } else if c.is_alphanumeric() || c == '_' {
            let begin = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[begin..i].iter().collect();
            // A literal's prefix (`b"..."`, `r#"..."#`, `br"..."`) is not a name.
            let raw = matches!(word.as_str(), "r" | "br" | "cr").then(|| raw_string_hashes(&chars, i));
            if let Some(Some(hashes)) = raw {
                i = skip_string(&chars, i + 1 + hashes, hashes, &mut line);
            } else if matches!(word.as_str(), "b" | "c") && chars.get(i) == Some(&'"') {
                i = skip_string(&chars, i + 1, 0, &mut line);
            } else {
                tokens.push((Token::Ident(word), start_line));
            }
        } else {
            let token = match (c, next) {
                (':', Some(':')) => {
                    i += 1;
                    Token::PathSep
                }
                ('{', _) => Token::Open,
                ('}', _) => Token::Close,
                (',', _) => Token::Comma,
                _ => Token::Other,
            };
            tokens.push((token, start_line));
            i += 1;
        }
    }
    tokens
}

/// Past the block comment opening at `i` (block comments nest in Rust).
fn skip_block_comment(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut level = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                level += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                level -= 1;
                i += 2;
                if level == 0 {
                    return i;
                }
            }
            (c, _) => {
                *line += usize::from(c == '\n');
                i += 1;
            }
        }
    }
    i
}

/// For `r` followed by `#`s and a quote starting at `i`: how many `#`s.
fn raw_string_hashes(chars: &[char], i: usize) -> Option<usize> {
    let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + hashes) == Some(&'"')).then_some(hashes)
}

/// Past the string whose contents start at `i`: a plain one (`hashes` 0,
/// with escapes) or a raw one closed by a quote and `hashes` `#`s.
fn skip_string(chars: &[char], mut i: usize, hashes: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        let c = chars[i];
        *line += usize::from(c == '\n');
        if c == '\\' && hashes == 0 {
            *line += usize::from(chars.get(i + 1) == Some(&'\n'));
            i += 2;
            continue;
        }
        let closes = chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes;
        if c == '"' && (hashes == 0 || closes) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// Past a character literal (`'a'`, `'\n'`, `'"'`) or a lifetime (`'a`).
fn skip_char_or_lifetime(chars: &[char], i: usize) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        // The escaped character itself may be a quote (`'\''`).
        let from = (i + 3).min(chars.len());
        let close = chars[from..]
            .iter()
            .position(|&c| c == '\'')
            .map_or(chars.len(), |p| from + p);
        return close + 1;
    }
    if chars.get(i + 2) == Some(&'\'') {
        return i + 3;
    }
    // A lifetime: its name follows as an identifier, harmlessly.
    i + 1
}
