//! `bad-manifest`: a test fixture processor whose manifest names it
//! `Not A Valid Name!`, so the host's tests can check that the name is
//! validated at load time.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:plugin/processor",
    generate_all,
});

struct BadManifest;

impl Guest for BadManifest {
    fn describe() -> Manifest {
        Manifest {
            name: "Not A Valid Name!".into(),
            version: "0.1.0".into(),
            description: "Test fixture: a manifest with an invalid name.".into(),
            operations: Vec::new(),
            credential_slots: Vec::new(),
        }
    }

    fn process(input: String) -> Result<String, PluginError> {
        Ok(input)
    }
}

export!(BadManifest);
