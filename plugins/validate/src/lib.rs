//! `validate`: a processor that checks its input against the JSON Schema in
//! its configuration (`{"schema": {...}}`) with the `jsonschema` crate. A
//! valid input passes through unchanged; an invalid one is refused with
//! `invalid_input`, listing every error in the details. It exports
//! `config-check`, so activation refuses a missing or invalid schema.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugboard:plugin/processor-checked",
    generate_all,
});

use common::Failure;
use common::failure::parse_input;
use jsonschema::Validator;
use plugboard::plugin::config;
use serde_json::{Value, json};

struct Validate;

impl Guest for Validate {
    fn describe() -> Manifest {
        Manifest {
            name: "validate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Checks each document against the JSON Schema given as `schema` in the \
                          configuration: valid documents pass through unchanged, invalid ones are \
                          refused with every error listed."
                .into(),
            operations: Vec::new(),
            credential_slots: Vec::new(),
        }
    }

    fn process(input: String) -> Result<String, PluginError> {
        let validator = validator()?;
        check(&validator, &parse_input(&input)?)?;
        Ok(input)
    }
}

/// Activation's check: the schema must be present and compile.
impl exports::plugboard::plugin::config_check::Guest for Validate {
    fn check() -> Result<(), PluginError> {
        validator()?;
        Ok(())
    }
}

export!(Validate);

/// The validator for the configured schema.
fn validator() -> Result<Validator, Failure> {
    let config: Value = serde_json::from_str(&config::get_json())
        .map_err(|e| Failure::invalid_config(format!("the configuration is not JSON: {e}")))?;
    let schema = config
        .get("schema")
        .ok_or_else(|| Failure::invalid_config("missing `schema` in the configuration"))?;
    jsonschema::validator_for(schema).map_err(|e| Failure::invalid_config(format!("invalid schema: {e}")))
}

/// `Ok` when `instance` matches, else an `invalid_input` failure listing
/// every error as `{"path", "message"}`.
fn check(validator: &Validator, instance: &Value) -> Result<(), Failure> {
    let errors: Vec<(String, String)> =
        validator.iter_errors(instance).map(|e| (e.instance_path.to_string(), e.to_string())).collect();
    let Some((_, first)) = errors.first() else {
        return Ok(());
    };
    let details = errors.iter().map(|(path, message)| json!({"path": path, "message": message})).collect();
    Err(Failure::invalid_input(format!("input does not match the schema: {first}"))
        .with_details(Value::Array(details)))
}

common::impl_from_failure!(PluginError);
