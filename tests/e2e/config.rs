//! Golden files for configuration errors: each `tests/fixtures/config/*.toml`
//! sits next to the exact message (`*.expected`) a user gets for it. Run with
//! `PLUGBOARD_BLESS=1` to rewrite the expected files after a deliberate
//! wording change, then review the diff.

use plugboard::config::Config;
use plugboard_tests::repo_root;

/// Every bad config file gets exactly the message recorded beside it, naming
/// the setting and never echoing a secret.
#[test]
fn config_errors_match_their_golden_files() {
    let dir = repo_root().join("tests/fixtures/config");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "fixtures missing in `{}`", dir.display());
    let bless = std::env::var_os("PLUGBOARD_BLESS").is_some();
    let mut mismatches = Vec::new();
    for case in cases {
        let err = Config::load(&case).expect_err("every fixture is invalid");
        let got = format!("{err:#}").replace(&repo_root().display().to_string(), "<repo>") + "\n";
        assert!(!got.contains("s3cr3t-value"), "a secret was echoed: {got}");
        let expected = case.with_extension("expected");
        if bless {
            std::fs::write(&expected, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_default();
        if want != got {
            mismatches.push(format!(
                "{}:\n  expected: {want:?}\n  got:      {got:?}",
                case.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
