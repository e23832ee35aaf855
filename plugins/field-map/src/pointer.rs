//! Writing and removing at JSON Pointers (RFC 6901); reading uses
//! `serde_json::Value::pointer`.

use serde_json::{Map, Value};

/// Check that `pointer` is `""` or starts with `/`.
pub fn check(pointer: &str) -> Result<(), String> {
    match pointer.is_empty() || pointer.starts_with('/') {
        true => Ok(()),
        false => Err(format!("pointer `{pointer}` must be empty or start with `/`")),
    }
}

/// The unescaped reference tokens of `pointer` (`~1` is `/`, `~0` is `~`).
fn tokens(pointer: &str) -> Vec<String> {
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// Put `value` at `pointer` in `root`, creating objects along the way.
pub fn write(root: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let mut slot = root;
    for token in tokens(pointer) {
        slot = child(slot, &token).ok_or_else(|| {
            format!("cannot write `{pointer}`: the value holding `{token}` is not an object")
        })?;
    }
    *slot = value;
    Ok(())
}

/// The child `token` of `parent`, created when missing; `None` when `parent`
/// is neither an object nor an array holding that index (or `-` to append).
fn child<'a>(parent: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    if parent.is_null() {
        *parent = Value::Object(Map::new());
    }
    match parent {
        Value::Object(map) => Some(map.entry(token).or_insert(Value::Null)),
        Value::Array(items) => {
            if token == "-" {
                items.push(Value::Null);
                return items.last_mut();
            }
            token.parse::<usize>().ok().and_then(|i| items.get_mut(i))
        }
        _ => None,
    }
}

/// Remove the object member at `pointer`, if there is one.
pub fn remove(root: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    if let Some(Value::Object(map)) = root.pointer_mut(parent) {
        map.remove(&last.replace("~1", "/").replace("~0", "~"));
    }
}
