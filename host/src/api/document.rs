//! The OpenAPI document as `GET /v1/openapi.json` serves it: built once
//! from the handlers' descriptions, with what utoipa 5 renders wrong put
//! right, so that the document says what the server does.
//!
//! Two things are fixed here rather than in each handler:
//! - utoipa writes a link's fields in Rust's spelling (`operation_id`);
//!   OpenAPI's are `operationId`, `operationRef` and `requestBody`;
//! - an internally tagged enum's `deny_unknown_fields` does not reach its
//!   variants' schemas, and a newtype variant comes out as `allOf` of the
//!   inner type (which denies unknown fields, the tag included) and the
//!   tag, which no value satisfies. [`STRICT_TAGGED`] lists those enums;
//!   their variants are made closed objects holding the tag.

use serde_json::{Map, Value};

/// Internally tagged enums whose variants refuse unknown fields.
const STRICT_TAGGED: &[&str] = &["RetryPolicy", "RawAuth"];

/// The document `doc` as served.
pub fn finish(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).expect("an OpenAPI document serialises");
    fix_links(&mut doc);
    for name in STRICT_TAGGED {
        close_variants(&mut doc, name);
    }
    doc
}

/// Renames every link's fields to OpenAPI's spelling.
fn fix_links(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    let responses = operations
        .filter_map(|op| op.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut());
    for links in responses.filter_map(|r| r.get_mut("links").and_then(Value::as_object_mut)) {
        for link in links.values_mut().filter_map(Value::as_object_mut) {
            for (rust, openapi) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(rust) {
                    link.insert(openapi.to_string(), v);
                }
            }
        }
    }
}

/// Makes each variant of the tagged enum schema `name` a closed object:
/// `allOf: [{$ref: inner}, {tag}]` becomes the inner schema with the tag's
/// property and requirement added.
fn close_variants(doc: &mut Value, name: &str) {
    let schemas = doc.pointer("/components/schemas").cloned().unwrap_or(Value::Null);
    let Some(variants) = doc
        .pointer_mut(&format!("/components/schemas/{name}/oneOf"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for variant in variants.iter_mut() {
        if let Some(parts) = variant.get("allOf").and_then(Value::as_array).cloned() {
            *variant = merge_newtype(&schemas, &parts, variant.get("description").cloned());
        }
        if let Some(object) = variant.as_object_mut() {
            object.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
}

/// One object schema from a newtype variant's parts: the referenced inner
/// schema and the tag.
fn merge_newtype(schemas: &Value, parts: &[Value], description: Option<Value>) -> Value {
    let mut merged = Map::new();
    merged.insert("type".into(), "object".into());
    let mut properties = Map::new();
    let mut required = Vec::new();
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => schemas
                .get(r.trim_start_matches("#/components/schemas/"))
                .cloned()
                .unwrap_or(Value::Null),
            None => part.clone(),
        };
        if let Some(p) = part.get("properties").and_then(Value::as_object) {
            properties.extend(p.clone());
        }
        if let Some(r) = part.get("required").and_then(Value::as_array) {
            required.extend(r.iter().cloned());
        }
    }
    merged.insert("properties".into(), Value::Object(properties));
    merged.insert("required".into(), Value::Array(required));
    if let Some(d) = description {
        merged.insert("description".into(), d);
    }
    Value::Object(merged)
}

/// JSON Schema counts `5.0` an integer and serde's integer fields refuse
/// it: numbers written with a zero fraction become integers, except in the
/// documents under `keep` (JSON pointers), whose numbers are a plugin's to
/// read as written.
pub fn integral_numbers(value: &mut Value, keep: &[&str]) {
    walk(value, &mut String::new(), keep);
}

fn walk(value: &mut Value, pointer: &mut String, keep: &[&str]) {
    if keep.contains(&pointer.as_str()) {
        return;
    }
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
            {
                // The bounds are exact powers of two, so the casts are exact.
                if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    *value = Value::from(f as u64);
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                walk(item, pointer, keep);
                pointer.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(item, pointer, keep);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Integral floats become integers, other numbers and kept documents
    /// stay as written.
    #[test]
    fn integral_floats_become_integers_outside_kept_documents() {
        let mut v = json!({"a": 5.0, "b": [1.5, -2.0, 1e300], "config": {"n": 3.0}, "c": 7});
        integral_numbers(&mut v, &["/config"]);
        assert_eq!(
            v,
            json!({"a": 5, "b": [1.5, -2, 1e300], "config": {"n": 3.0}, "c": 7})
        );
        assert!(v["config"]["n"].is_f64());
    }

    /// Links use OpenAPI's field names; tagged variants are closed objects
    /// holding their tag.
    #[test]
    fn links_and_tagged_variants_are_rendered_as_openapi_means() {
        let mut doc = json!({
            "paths": {"/a": {"post": {"responses": {"201": {"links": {"Get": {"operation_id": "get", "parameters": {}}}}}}}},
            "components": {"schemas": {
                "Inner": {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}, "additionalProperties": false},
                "RawAuth": {"oneOf": [
                    {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["none"]}}},
                    {"allOf": [{"$ref": "#/components/schemas/Inner"}, {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["inner"]}}}]}
                ]}
            }}
        });
        fix_links(&mut doc);
        close_variants(&mut doc, "RawAuth");
        assert_eq!(
            doc.pointer("/paths/~1a/post/responses/201/links/Get/operationId"),
            Some(&json!("get"))
        );
        let variants = &doc["components"]["schemas"]["RawAuth"]["oneOf"];
        assert_eq!(variants[0]["additionalProperties"], false);
        assert_eq!(variants[1]["required"], json!(["x", "type"]));
        assert_eq!(variants[1]["properties"]["type"]["enum"], json!(["inner"]));
        assert_eq!(variants[1]["additionalProperties"], false);
    }
}
