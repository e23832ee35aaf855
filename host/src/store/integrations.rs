//! Integrations: named definitions with a status, every version kept.
//!
//! Definitions are opaque JSON here (the integrations module validates them).
//! The current definition is the row of `integration_versions` whose number
//! is the integration's `version`; an update adds a row rather than
//! rewriting one, so a run can always be traced to the definition it ran.

use crate::store::Result;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Store, StoreError, db_error, from_db, is_unique_violation, json_column, now_ms, to_db};

/// The statuses an integration can have, as stored and shown.
pub const INTEGRATION_STATUSES: [&str; 3] = ["draft", "active", "inactive"];

/// An integration's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Status)]
pub enum IntegrationStatus {
    /// Being written; only admins can test-invoke it.
    Draft,
    /// Validated and invocable.
    Active,
    /// Switched off; invocations are refused.
    Inactive,
}

impl IntegrationStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationStatus::Draft => "draft",
            IntegrationStatus::Active => "active",
            IntegrationStatus::Inactive => "inactive",
        }
    }

    /// Parses a status as stored and shown.
    pub fn parse(s: &str) -> Option<IntegrationStatus> {
        match s {
            "draft" => Some(IntegrationStatus::Draft),
            "active" => Some(IntegrationStatus::Active),
            "inactive" => Some(IntegrationStatus::Inactive),
            _ => None,
        }
    }
}

impl std::fmt::Display for IntegrationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl rusqlite::ToSql for IntegrationStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for IntegrationStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        IntegrationStatus::parse(text).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("`{text}` is not an integration status").into())
        })
    }
}

/// An integration and its current definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationRecord {
    /// Unique name.
    pub name: String,
    /// Its lifecycle status.
    pub status: IntegrationStatus,
    /// The current version, from 1.
    pub version: u32,
    /// The current definition.
    pub definition: Value,
    /// When the integration was created.
    pub created_at_ms: u64,
    /// When its definition or status last changed.
    pub updated_at_ms: u64,
}

/// One version of an integration's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationVersion {
    /// Version number, from 1.
    pub version: u32,
    /// The definition as of this version (its schema: `api::bodies`).
    pub definition: Value,
    /// When this version was written.
    pub created_at_ms: u64,
}

/// Selects integrations joined with their current definition.
const SELECT: &str = "SELECT i.name, i.status, i.version, v.definition, i.created_at_ms, i.updated_at_ms
    FROM integrations i JOIN integration_versions v ON v.integration = i.name AND v.version = i.version";

/// Reads one row of [`SELECT`].
fn read_record(row: &Row<'_>) -> rusqlite::Result<IntegrationRecord> {
    Ok(IntegrationRecord {
        name: row.get(0)?,
        status: row.get(1)?,
        version: row.get(2)?,
        definition: json_column(row, 3)?,
        created_at_ms: from_db(row.get(4)?),
        updated_at_ms: from_db(row.get(5)?),
    })
}

/// The integration `name`, read on `conn` (a connection or a transaction).
fn find(conn: &Connection, name: &str) -> rusqlite::Result<Option<IntegrationRecord>> {
    conn.query_row(&format!("{SELECT} WHERE i.name = ?1"), [name], read_record)
        .optional()
}

/// The error for a missing integration.
fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("integration `{name}` does not exist"))
}

/// Serializes a definition for storage.
fn definition_text(definition: &Value) -> String {
    definition.to_string()
}

impl Store {
    /// Every integration with its current definition, by name.
    pub fn list_integrations(&self) -> Result<Vec<IntegrationRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY i.name"))?;
        let rows = stmt.query_map([], read_record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The integration `name`, if it exists.
    pub fn get_integration(&self, name: &str) -> Result<Option<IntegrationRecord>> {
        Ok(find(&self.conn(), name)?)
    }

    /// Every version of integration `name`, oldest first (empty when it does not exist).
    pub fn integration_versions(&self, name: &str) -> Result<Vec<IntegrationVersion>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT version, definition, created_at_ms FROM integration_versions
             WHERE integration = ?1 ORDER BY version",
        )?;
        let rows = stmt.query_map([name], |row| {
            Ok(IntegrationVersion {
                version: row.get(0)?,
                definition: json_column(row, 1)?,
                created_at_ms: from_db(row.get(2)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Creates integration `name` at version 1. [`StoreError::Conflict`]
    /// when the name is taken.
    pub fn create_integration(
        &self,
        name: &str,
        definition: &Value,
        status: IntegrationStatus,
    ) -> Result<IntegrationRecord, StoreError> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error("cannot start a transaction", e))?;
        let inserted = tx.execute(
            "INSERT INTO integrations (name, status, version, created_at_ms, updated_at_ms)
             VALUES (?1, ?2, 1, ?3, ?3)",
            params![name, status, to_db(now)],
        );
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "integration `{name}` already exists"
                )));
            }
            other => other.map_err(|e| db_error(&format!("cannot create integration `{name}`"), e))?,
        };
        insert_version(&tx, name, 1, definition, now)?;
        tx.commit()
            .map_err(|e| db_error(&format!("cannot create integration `{name}`"), e))?;
        let (name, status, definition) = (name.to_string(), status, definition.clone());
        Ok(IntegrationRecord {
            name,
            status,
            version: 1,
            definition,
            created_at_ms: now,
            updated_at_ms: now,
        })
    }

    /// Makes `definition` the current one of integration `name` as a new
    /// version, in one transaction. A definition equal to the current one
    /// changes nothing and comes back with `false`.
    pub fn update_integration(
        &self,
        name: &str,
        definition: &Value,
    ) -> Result<(IntegrationRecord, bool), StoreError> {
        let doing = format!("cannot update integration `{name}`");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&doing, e))?;
        let current = find(&tx, name)
            .map_err(|e| db_error(&doing, e))?
            .ok_or_else(|| not_found(name))?;
        if current.definition == *definition {
            return Ok((current, false));
        }
        let (version, now) = (current.version + 1, now_ms());
        insert_version(&tx, name, version, definition, now)?;
        tx.execute(
            "UPDATE integrations SET version = ?1, updated_at_ms = ?2 WHERE name = ?3",
            params![version, to_db(now), name],
        )
        .and_then(|_| tx.commit())
        .map_err(|e| db_error(&doing, e))?;
        let definition = definition.clone();
        Ok((
            IntegrationRecord {
                version,
                definition,
                updated_at_ms: now,
                ..current
            },
            true,
        ))
    }

    /// Sets the status of integration `name` (setting the same status again
    /// changes nothing).
    pub fn set_integration_status(
        &self,
        name: &str,
        status: IntegrationStatus,
    ) -> Result<IntegrationRecord, StoreError> {
        let doing = format!("cannot set the status of integration `{name}`");
        let conn = self.conn();
        let current = find(&conn, name)
            .map_err(|e| db_error(&doing, e))?
            .ok_or_else(|| not_found(name))?;
        if current.status == status {
            return Ok(current);
        }
        let now = now_ms();
        let changed = conn
            .execute(
                "UPDATE integrations SET status = ?1, updated_at_ms = ?2 WHERE name = ?3",
                params![status, to_db(now), name],
            )
            .map_err(|e| db_error(&doing, e))?;
        if changed == 0 {
            return Err(not_found(name));
        }
        Ok(IntegrationRecord {
            status,
            updated_at_ms: now,
            ..current
        })
    }

    /// Deletes integration `name` and all its versions; its runs stay.
    /// `false` when it did not exist.
    pub fn delete_integration(&self, name: &str) -> Result<bool> {
        // `ON DELETE CASCADE` removes the versions (foreign keys are on).
        let deleted = self
            .conn()
            .execute("DELETE FROM integrations WHERE name = ?1", [name])?;
        Ok(deleted > 0)
    }
}

/// Writes version `version` of integration `name`.
fn insert_version(
    conn: &Connection,
    name: &str,
    version: u32,
    definition: &Value,
    now: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO integration_versions (integration, version, definition, created_at_ms)
         VALUES (?1, ?2, ?3, ?4)",
        params![name, version, definition_text(definition), to_db(now)],
    )
    .map_err(|e| {
        db_error(
            &format!("cannot write version {version} of integration `{name}`"),
            e,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::tests::sample_run;
    use serde_json::json;

    /// A new integration starts at version 1 with its definition and status.
    #[test]
    fn a_new_integration_starts_at_version_1() {
        let store = Store::open_in_memory().unwrap();
        let created = store
            .create_integration("crm", &json!({"steps": []}), IntegrationStatus::Draft)
            .unwrap();
        assert_eq!((created.version, created.status), (1, IntegrationStatus::Draft));
        assert_eq!(store.get_integration("crm").unwrap(), Some(created));
        assert_eq!(store.integration_versions("crm").unwrap().len(), 1);
    }

    /// Integrations are listed by name.
    #[test]
    fn integrations_are_listed_by_name() {
        let store = Store::open_in_memory().unwrap();
        for name in ["zeta", "alpha", "mid"] {
            store
                .create_integration(name, &json!({}), IntegrationStatus::Active)
                .unwrap();
        }
        let names: Vec<_> = store
            .list_integrations()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
    }

    /// An update adds a version, becomes current, and keeps the older versions in order.
    #[test]
    fn an_update_adds_a_version_and_keeps_the_old_ones() {
        let store = Store::open_in_memory().unwrap();
        store
            .create_integration("crm", &json!({"v": 1}), IntegrationStatus::Active)
            .unwrap();
        let (updated, changed) = store.update_integration("crm", &json!({"v": 2})).unwrap();
        assert!(changed);
        assert_eq!((updated.version, &updated.definition), (2, &json!({"v": 2})));
        assert_eq!(store.get_integration("crm").unwrap(), Some(updated));
        let versions = store.integration_versions("crm").unwrap();
        let seen: Vec<_> = versions
            .iter()
            .map(|v| (v.version, v.definition.clone()))
            .collect();
        assert_eq!(seen, [(1, json!({"v": 1})), (2, json!({"v": 2}))]);
    }

    /// Updating with a definition equal to the current one (key order aside) is a no-op.
    #[test]
    fn an_unchanged_update_is_a_no_op() {
        let store = Store::open_in_memory().unwrap();
        let created = store
            .create_integration("crm", &json!({"a": 1, "b": [2]}), IntegrationStatus::Active)
            .unwrap();
        let (same, changed) = store
            .update_integration("crm", &json!({"b": [2], "a": 1}))
            .unwrap();
        assert!(!changed);
        assert_eq!(same, created);
        assert_eq!(store.integration_versions("crm").unwrap().len(), 1);
    }

    /// A status change is kept; a status the store does not know is refused
    /// by the table, and by the read, which names it.
    #[test]
    fn status_changes_are_kept_and_unknown_statuses_refused() {
        let store = Store::open_in_memory().unwrap();
        store
            .create_integration("crm", &json!({}), IntegrationStatus::Draft)
            .unwrap();
        let active = store
            .set_integration_status("crm", IntegrationStatus::Active)
            .unwrap();
        assert_eq!((active.status, active.version), (IntegrationStatus::Active, 1));
        assert_eq!(
            store.get_integration("crm").unwrap().unwrap().status,
            IntegrationStatus::Active
        );
        let conn = store.conn();
        let refused = conn.execute("UPDATE integrations SET status = 'paused' WHERE name = 'crm'", []);
        assert!(refused.is_err(), "the table's CHECK refuses an unknown status");
        let read: rusqlite::Result<IntegrationStatus> =
            conn.query_row("SELECT 'paused'", [], |row| row.get(0));
        let err = read.unwrap_err().to_string();
        assert!(err.contains("`paused` is not an integration status"), "{err}");
        drop(conn);
        for status in INTEGRATION_STATUSES {
            assert_eq!(IntegrationStatus::parse(status).unwrap().as_str(), status);
        }
    }

    /// Deleting removes the integration and its versions but keeps its runs.
    #[test]
    fn deleting_removes_versions_but_keeps_runs() {
        let store = Store::open_in_memory().unwrap();
        store
            .create_integration("crm", &json!({"v": 1}), IntegrationStatus::Active)
            .unwrap();
        store.update_integration("crm", &json!({"v": 2})).unwrap();
        let writer = store.run_writer();
        writer.record(sample_run("crm", "succeeded", 5)).unwrap();
        writer.flush().unwrap();
        assert!(store.delete_integration("crm").unwrap());
        assert!(!store.delete_integration("crm").unwrap());
        assert_eq!(store.get_integration("crm").unwrap(), None);
        assert!(store.integration_versions("crm").unwrap().is_empty());
        assert_eq!(store.list_runs(&Default::default()).unwrap().len(), 1);
        store
            .create_integration("crm", &json!({"v": 9}), IntegrationStatus::Draft)
            .unwrap();
        assert_eq!(store.integration_versions("crm").unwrap().len(), 1);
    }

    /// Creating an integration under a taken name is a conflict naming it.
    #[test]
    fn creating_a_taken_name_is_a_conflict() {
        let store = Store::open_in_memory().unwrap();
        store
            .create_integration("crm", &json!({"v": 1}), IntegrationStatus::Active)
            .unwrap();
        let err = store
            .create_integration("crm", &json!({"v": 2}), IntegrationStatus::Draft)
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict("integration `crm` already exists".into())
        );
        assert_eq!(
            store.get_integration("crm").unwrap().unwrap().definition,
            json!({"v": 1})
        );
    }

    /// Updating or setting the status of a missing integration is not-found, naming it.
    #[test]
    fn a_missing_integration_is_not_found() {
        let store = Store::open_in_memory().unwrap();
        let missing = StoreError::NotFound("integration `ghost` does not exist".into());
        assert_eq!(
            store.update_integration("ghost", &json!({})).unwrap_err(),
            missing
        );
        assert_eq!(
            store
                .set_integration_status("ghost", IntegrationStatus::Active)
                .unwrap_err(),
            missing
        );
        assert_eq!(store.get_integration("ghost").unwrap(), None);
    }
}
