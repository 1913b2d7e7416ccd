//! The documentation against the tree and the binary: README.md and docs/*.md link only to
//! files that exist; every configuration key their TOML examples use parses and is a key of
//! config.example.toml; every command in README.md's command table is one the real binary
//! accepts, and every command the binary has is in that table; README.md keeps the two
//! commands that run the demo and the tests, each in a fenced block of its own; the docs index
//! and its pages link to each other. Plain text checks: no Markdown parser, no network.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");

/// The two-command start (README.md), each alone in a fenced code block.
const DEMO_COMMAND: &str = "tests/setup.sh --demo && cargo run --release -- demo";
const TEST_COMMAND: &str = ".ci/run";

/// The pages the docs index must list (docs/README.md).
const PAGES: [&str; 11] = [
    "configuration.md",
    "storage.md",
    "backups.md",
    "verify.md",
    "restore.md",
    "retention.md",
    "daemon.md",
    "api.md",
    "console.md",
    "drills.md",
    "repository-format.md",
];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every docs/*.md, with their text.
fn markdown_files() -> Vec<(PathBuf, String)> {
    let mut files = vec![PathBuf::from(README)];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(DOCS)
        .unwrap_or_else(|e| panic!("{DOCS}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|p| {
            let text = read(&p);
            (p, text)
        })
        .collect()
}

/// A fenced code block: its language (what follows the opening backticks) and its lines.
struct Fence {
    lang: String,
    lines: Vec<String>,
    /// 1-based line of the opening fence.
    line: usize,
}

/// The fenced code blocks of a Markdown text (``` fences, possibly indented in a list), and
/// the text outside them, line by line (`None` for lines inside a fence).
fn split_fences(text: &str) -> (Vec<Fence>, Vec<Option<&str>>) {
    let mut fences = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<Fence> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match open.take() {
            None if t.starts_with("```") => {
                open = Some(Fence {
                    lang: t.trim_start_matches('`').trim().to_string(),
                    lines: vec![],
                    line: i + 1,
                });
                prose.push(None);
            }
            None => prose.push(Some(line)),
            Some(f) if t.starts_with("```") => {
                fences.push(f);
                prose.push(None);
            }
            Some(mut f) => {
                f.lines.push(line.to_string());
                open = Some(f);
                prose.push(None);
            }
        }
    }
    assert!(open.is_none(), "a fenced code block is never closed");
    (fences, prose)
}

/// `line` without its inline code spans (`…`), where a `](` is text, not a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of one line of prose.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_string());
        rest = &after[end..];
    }
    out
}

#[test]
fn relative_links_in_readme_and_docs_point_to_files_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in markdown_files() {
        let dir = path.parent().expect("a file has a folder");
        let (_, prose) = split_fences(&text);
        for (n, line) in prose.iter().enumerate() {
            let Some(line) = line else { continue };
            for target in link_targets(line) {
                if target.is_empty()
                    || target.starts_with('#')
                    || target.starts_with("http://")
                    || target.starts_with("https://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let file = target.split('#').next().unwrap_or("");
                checked += 1;
                if !dir.join(file).exists() {
                    broken.push(format!("{}:{}: {target}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to missing files:\n{}",
        broken.join("\n")
    );
    assert!(
        checked >= 20,
        "only {checked} relative links found: is docs/ there?"
    );
}

/// `(table, key)` for every value of a parsed TOML table, tables named by their dotted path
/// (`sources.schedule`, `drill.checks`); arrays of tables and inline tables count as tables.
fn toml_pairs(table: &toml::Table, path: &str, out: &mut BTreeSet<(String, String)>) {
    for (key, value) in table {
        let sub = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            toml::Value::Table(t) => toml_pairs(t, &sub, out),
            toml::Value::Array(items)
                if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
            {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        toml_pairs(t, &sub, out);
                    }
                }
            }
            _ => {
                out.insert((path.to_string(), key.clone()));
            }
        }
    }
}

/// `(table, key)` for every `key = …` line of config.example.toml, commented (`# key = …`) or
/// not, under the last `[table]` or `[[table]]` header above it (commented or not).
fn example_pairs(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = match line.strip_prefix("# ") {
            Some(rest) => rest,
            None if line.starts_with('#') => continue,
            None => line,
        };
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            let Some(end) = header.find(']') else {
                continue;
            };
            let after = header[end..].trim_start_matches(']').trim();
            // A header line, not prose that starts with a bracket ("[backup], [postgres] …").
            if after.is_empty() || after.starts_with('#') {
                table = header[..end].trim().to_string();
            }
            continue;
        }
        let key: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !key.is_empty() && line[key.len()..].trim_start().starts_with('=') {
            out.insert((table.clone(), key));
        }
    }
    out
}

#[test]
fn toml_examples_in_readme_and_docs_parse_and_use_only_keys_of_config_example() {
    let known = example_pairs(&read(Path::new(EXAMPLE)));
    assert!(
        known.contains(&("repository".into(), "url".into()))
            && known.contains(&("drill.checks".into(), "expect".into())),
        "config.example.toml was not read as expected: {known:?}"
    );
    let mut unknown = Vec::new();
    let mut blocks = 0;
    for (path, text) in markdown_files() {
        let (fences, _) = split_fences(&text);
        for f in fences.iter().filter(|f| f.lang == "toml") {
            blocks += 1;
            let body = f.lines.join("\n");
            let parsed: toml::Table = body.parse().unwrap_or_else(|e| {
                panic!(
                    "{}:{}: the TOML block does not parse: {e}\n{body}",
                    path.display(),
                    f.line
                )
            });
            let mut used = BTreeSet::new();
            toml_pairs(&parsed, "", &mut used);
            for (table, key) in used.difference(&known) {
                unknown.push(format!("{}:{}: [{table}] {key}", path.display(), f.line));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "keys used in the documentation but not in config.example.toml:\n{}",
        unknown.join("\n")
    );
    assert!(blocks >= 10, "only {blocks} TOML blocks found");
}

/// The cells of a Markdown table row (`| a | b \| c |`): split on unescaped pipes.
fn cells(row: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut prev = ' ';
    for c in row.trim().trim_start_matches('|').chars() {
        if c == '|' && prev != '\\' {
            out.push(String::new());
        } else if let Some(cell) = out.last_mut() {
            cell.push(c);
        }
        prev = c;
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// For every row of README.md's command table (a row whose first cell holds `keepsake …`),
/// the subcommand words of each `keepsake …` in that cell: the leading lowercase words
/// (`audit verify`, `token new`, `console`), up to the first flag or placeholder. `keepsake`
/// alone and `keepsake --daemon` have none.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = read(Path::new(README));
    let mut out = Vec::new();
    for line in readme.lines().filter(|l| l.trim_start().starts_with('|')) {
        let first = cells(line).into_iter().next().unwrap_or_default();
        if !first.starts_with("`keepsake") {
            continue;
        }
        for (i, span) in first.split('`').enumerate() {
            let Some(rest) = span.strip_prefix("keepsake").filter(|_| i % 2 == 1) else {
                continue;
            };
            let words: Vec<String> = rest
                .split_whitespace()
                .take_while(|w| {
                    !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                })
                .map(str::to_string)
                .collect();
            out.push(words);
        }
    }
    out
}

fn keepsake(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_keepsake"))
        .args(args)
        .env_remove("KEEPSAKE_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("running keepsake {args:?}: {e}"))
}

#[test]
fn every_command_in_the_readme_table_is_accepted_by_the_binary() {
    let commands = readme_commands();
    assert!(
        commands.len() >= 20,
        "README.md's command table has only {} commands: {commands:?}",
        commands.len()
    );
    let mut refused = Vec::new();
    for words in commands.iter().filter(|w| !w.is_empty()) {
        let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
        args.push("--help");
        let out = keepsake(&args);
        if !out.status.success() {
            refused.push(format!(
                "keepsake {}: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        refused.is_empty(),
        "README.md names commands the binary refuses:\n{}",
        refused.join("\n")
    );
}

#[test]
fn every_command_of_the_binary_is_in_the_readme_table() {
    let out = keepsake(&["--help"]);
    assert!(out.status.success(), "keepsake --help: {}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's own line; a wrapped description continues further indented.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "no command list in:\n{help}");
    let documented: BTreeSet<String> = readme_commands()
        .into_iter()
        .filter_map(|w| w.into_iter().next())
        .collect();
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|c| !documented.contains(**c))
        .collect();
    assert!(
        missing.is_empty(),
        "commands of `keepsake --help` missing from README.md's command table: {missing:?}"
    );
}

#[test]
fn readme_keeps_the_demo_and_test_commands_each_in_its_own_fenced_block() {
    let (fences, _) = split_fences(&read(Path::new(README)));
    let alone = |command: &str| {
        fences.iter().any(|f| {
            let lines: Vec<&str> = f
                .lines
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect();
            lines == [command]
        })
    };
    assert!(
        alone(DEMO_COMMAND),
        "README.md has no fenced block holding only `{DEMO_COMMAND}`"
    );
    assert!(
        alone(TEST_COMMAND),
        "README.md has no fenced block holding only `{TEST_COMMAND}`"
    );
}

#[test]
fn docs_index_lists_every_page_and_every_page_links_back_to_it() {
    let index = read(&Path::new(DOCS).join("README.md"));
    let mut problems = Vec::new();
    let mut pages: BTreeSet<String> = PAGES.iter().map(|p| p.to_string()).collect();
    for e in std::fs::read_dir(DOCS).expect("docs/").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" {
            pages.insert(name);
        }
    }
    for page in &pages {
        let path = Path::new(DOCS).join(page);
        if !path.exists() {
            problems.push(format!("docs/{page} is missing"));
            continue;
        }
        if !index.contains(&format!("]({page})")) {
            problems.push(format!("docs/README.md does not link to {page}"));
        }
        if !read(&path).contains("](README.md)") {
            problems.push(format!("docs/{page} does not link back to the index"));
        }
    }
    let readme = read(Path::new(README));
    if !readme.contains("](docs/README.md)") {
        problems.push("README.md does not link to docs/README.md".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
