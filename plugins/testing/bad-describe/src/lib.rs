//! `bad-describe`: a test fixture processor whose `describe` panics, so the
//! host's tests can check that a plugin trapping at load time is refused.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:plugin/processor",
    generate_all,
});

struct BadDescribe;

impl Guest for BadDescribe {
    fn describe() -> Manifest {
        panic!("describe is broken on purpose")
    }

    fn process(input: String) -> Result<String, PluginError> {
        Ok(input)
    }
}

export!(BadDescribe);
