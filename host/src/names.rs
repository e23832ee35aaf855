//! The naming rules for plugins, their operations, and credentials and the
//! slots they bind to.
//!
//! A leaf: these rules are checked where names come in (manifests, the
//! config file, the admin API, callout URLs), by modules that must not import
//! each other for them.

/// Checks a plugin or operation name: lowercase letters, digits, `-` and (for
/// operations) `_`, starting with a letter, at most 64 characters.
fn check_name(what: &str, name: &str, allow_underscore: bool) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_underscore && c == '_')
        });
    if ok {
        return Ok(());
    }
    let extra = if allow_underscore {
        ", `-` and `_`"
    } else {
        " and `-`"
    };
    Err(format!(
        "{what} `{}` is not a valid name: use lowercase letters, digits{extra}, starting with a letter, at most 64 characters",
        name.escape_debug()
    ))
}

/// Checks a plugin name (lowercase letters, digits and `-`, starting with a
/// letter, at most 64 characters).
pub fn check_plugin_name(name: &str) -> Result<(), String> {
    check_name("plugin name", name, false)
}

/// Checks a connector operation name (lowercase letters, digits, `-` and
/// `_`, starting with a letter, at most 64 characters).
pub fn check_operation_name(name: &str) -> Result<(), String> {
    check_name("operation", name, true)
}

/// Checks a credential or slot name: lowercase letters, digits and `-`,
/// starting with a letter, at most 63 characters (it doubles as a host name in
/// `wasi:http` URLs).
pub fn check_slot_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use lowercase letters, digits and `-`, starting with a letter, at most 63 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_host_name_safe() {
        assert!(check_slot_name("crm-eu1").is_ok());
        assert!(check_slot_name("CRM").is_err());
        assert!(check_slot_name("127.0.0.1").is_err());
        assert!(check_slot_name("a:80").is_err());
    }

    #[test]
    fn operation_names_may_have_underscores_but_plugin_names_not() {
        assert!(check_operation_name("list_orders").is_ok());
        let err = check_plugin_name("rest_json").unwrap_err();
        assert!(
            err.starts_with("plugin name `rest_json` is not a valid name"),
            "{err}"
        );
        assert!(check_plugin_name("rest-json").is_ok());
        assert!(check_operation_name("9lives").is_err());
    }
}
