//! The configuration and how it is applied to one document.

use common::Failure;
use serde::{Deserialize, Deserializer};
use serde_json::{Number, Value};

use crate::pointer;

/// The processor's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mappings: Vec<Mapping>,
    /// Start from the input (less the mapped sources) instead of `{}`.
    #[serde(default)]
    keep_unmapped: bool,
}

/// One `from` -> `to` copy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    from: String,
    to: String,
    /// Used as it is when `from` is missing (`null` included).
    #[serde(default, deserialize_with = "present")]
    default: Option<Value>,
    #[serde(default)]
    required: bool,
    transform: Option<Transform>,
}

/// A change applied to the value found at `from`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Transform {
    Lowercase,
    Uppercase,
    Trim,
    ToString,
    ToNumber,
}

/// Keeps an explicit `"default": null` apart from an absent default.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl Config {
    /// Read and check the configuration JSON text.
    pub fn parse(text: &str) -> Result<Self, Failure> {
        let config: Self = serde_json::from_str(text)
            .map_err(|e| Failure::invalid_config(format!("invalid configuration: {e}")))?;
        for mapping in &config.mappings {
            for pointer in [&mapping.from, &mapping.to] {
                pointer::check(pointer).map_err(Failure::invalid_config)?;
            }
        }
        Ok(config)
    }

    /// The output document for `input`.
    pub fn apply(&self, input: Value) -> Result<Value, Failure> {
        let values = self.mappings.iter().map(|m| m.value(&input)).collect::<Result<Vec<_>, _>>()?;
        let mut output =
            if self.keep_unmapped { self.unmapped(input) } else { Value::Object(Default::default()) };
        for (mapping, value) in self.mappings.iter().zip(values) {
            if let Some(value) = value {
                pointer::write(&mut output, &mapping.to, value)
                    .map_err(|e| Failure::new("mapping_conflict", e))?;
            }
        }
        Ok(output)
    }

    /// `input` without the values the mappings move elsewhere.
    fn unmapped(&self, mut input: Value) -> Value {
        for mapping in &self.mappings {
            pointer::remove(&mut input, &mapping.from);
        }
        input
    }
}

impl Mapping {
    /// The value to write at `to`, or `None` to leave it out.
    fn value(&self, input: &Value) -> Result<Option<Value>, Failure> {
        match (input.pointer(&self.from), &self.default) {
            (Some(found), _) => self.transformed(found.clone()).map(Some),
            (None, Some(default)) => Ok(Some(default.clone())),
            (None, None) if self.required => Err(Failure::new(
                "missing_field",
                format!("required field `{}` is missing from the input", self.from),
            )),
            (None, None) => Ok(None),
        }
    }

    fn transformed(&self, value: Value) -> Result<Value, Failure> {
        let Some(transform) = self.transform else {
            return Ok(value);
        };
        transform.apply(value).map_err(|found| {
            Failure::invalid_input(format!(
                "cannot apply `{}` to `{found}` at `{}`",
                transform.name(),
                self.from
            ))
        })
    }
}

impl Transform {
    /// The transformed value, or the value back when it does not apply.
    fn apply(self, value: Value) -> Result<Value, Value> {
        match (self, value) {
            (Self::Lowercase, Value::String(s)) => Ok(Value::String(s.to_lowercase())),
            (Self::Uppercase, Value::String(s)) => Ok(Value::String(s.to_uppercase())),
            (Self::Trim, Value::String(s)) => Ok(Value::String(s.trim().to_owned())),
            (Self::ToString, Value::String(s)) => Ok(Value::String(s)),
            (Self::ToString, other) => Ok(Value::String(other.to_string())),
            (Self::ToNumber, Value::Number(n)) => Ok(Value::Number(n)),
            (Self::ToNumber, Value::String(s)) => parse_number(s.trim()).ok_or(Value::String(s)),
            (_, other) => Err(other),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Lowercase => "lowercase",
            Self::Uppercase => "uppercase",
            Self::Trim => "trim",
            Self::ToString => "to_string",
            Self::ToNumber => "to_number",
        }
    }
}

/// `"42"` -> `42`, `"1.5"` -> `1.5`; `None` for anything else.
fn parse_number(text: &str) -> Option<Value> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(Value::Number(n.into()));
    }
    text.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
}
