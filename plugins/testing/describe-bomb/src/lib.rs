//! `describe-bomb`: a test fixture processor whose `describe` logs one
//! 16 MiB line a hundred times before answering, so the host's tests can
//! check that loading a file cannot make the host hold what its code sends.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:plugin/processor",
    generate_all,
});

use plugboard::plugin::log::{Level, log};

struct DescribeBomb;

impl Guest for DescribeBomb {
    fn describe() -> Manifest {
        let line = "x".repeat(16 << 20);
        for _ in 0..100 {
            log(Level::Info, &line);
        }
        Manifest {
            name: "describe-bomb".into(),
            version: "0.1.0".into(),
            description: "Test fixture: floods the log while being described.".into(),
            operations: Vec::new(),
            credential_slots: Vec::new(),
        }
    }

    fn process(input: String) -> Result<String, PluginError> {
        Ok(input)
    }
}

export!(DescribeBomb);
