//! `field-map`: a processor that reshapes a JSON document following the
//! `mappings` of its configuration, each copying the value at one JSON
//! Pointer (RFC 6901) of the input to another pointer of the output.
//!
//! It exports `config-check`, so activation refuses a bad configuration.
//!
//! Configuration:
//! `{"mappings": [{"from", "to", "default"?, "required"?, "transform"?}],
//! "keep_unmapped": false}`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugboard:plugin/processor-checked",
    generate_all,
});

mod mapping;
mod pointer;

use common::failure::parse_input;
use plugboard::plugin::config;

struct FieldMap;

impl Guest for FieldMap {
    fn describe() -> Manifest {
        Manifest {
            name: "field-map".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Reshapes a JSON document: each configured mapping copies the value at a JSON \
                          Pointer of the input to a JSON Pointer of the output, with an optional default, \
                          a required flag and a transform."
                .into(),
            operations: Vec::new(),
            credential_slots: Vec::new(),
        }
    }

    fn process(input: String) -> Result<String, PluginError> {
        let config = mapping::Config::parse(&config::get_json())?;
        Ok(config.apply(parse_input(&input)?)?.to_string())
    }
}

/// Activation's check: the same parsing `process` does, so a bad mapping is
/// refused before the integration runs.
impl exports::plugboard::plugin::config_check::Guest for FieldMap {
    fn check() -> Result<(), PluginError> {
        mapping::Config::parse(&config::get_json())?;
        Ok(())
    }
}

export!(FieldMap);

common::impl_from_failure!(PluginError);
