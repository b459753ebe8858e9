//! Inventory and catalog files. An inventory is the contract's JSON, or a CSV with one endpoint a
//! row: a header of the contract's endpoint fields (`id`, `client`, `kind`, ... as in
//! `docs/plan.md`), plus optional `client_name` and `client_timezone` columns for the client's
//! record. Empty cells are absent fields. Errors name the file, the row and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use patchflow_core::contract::{
    inventory_from_doc, parse_catalog, ClientDoc, EndpointDoc, InventoryDoc,
};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::sources::{CatalogSource, InventorySource};
use patchflow_core::ports::PortError;

fn read(path: &Path) -> Result<String, PortError> {
    std::fs::read_to_string(path).map_err(|e| {
        let context = format!("read {}", path.display());
        match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                PortError::permanent(context, e)
            }
            _ => PortError::transient(context, e),
        }
    })
}

/// An error naming the file, row and field.
fn input_error(message: String) -> PortError {
    PortError::permanent("inventory", message)
}

/// An inventory file: JSON (`.json`) or CSV (`.csv`).
#[derive(Debug, Clone)]
pub struct FileInventory {
    path: PathBuf,
}

impl FileInventory {
    /// The inventory in this file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl InventorySource for FileInventory {
    async fn pull(&self) -> Result<InventoryDoc, PortError> {
        let text = read(&self.path)?;
        let source = self.path.display().to_string();
        let is_csv = self
            .path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let doc = if is_csv {
            inventory_from_csv(&source, &text)?
        } else {
            serde_json::from_str::<InventoryDoc>(&text).map_err(|_| {
                // The contract's parser explains what is wrong, naming the record and field.
                match patchflow_core::contract::parse_inventory(&source, &text) {
                    Err(e) => input_error(e.to_string()),
                    Ok(_) => input_error(format!("{source}: not an inventory document")),
                }
            })?
        };
        // Check the whole document before anyone writes any of it.
        inventory_from_doc(&source, doc.clone()).map_err(|e| input_error(e.to_string()))?;
        Ok(doc)
    }
}

/// Reads a CSV inventory.
pub fn inventory_from_csv(source: &str, text: &str) -> Result<InventoryDoc, PortError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| input_error(format!("{source}: header: {e}")))?
        .clone();
    let mut clients: BTreeMap<String, ClientDoc> = BTreeMap::new();
    let mut endpoints = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| input_error(format!("{source}: row {line}: {e}")))?;
        let mut fields = serde_json::Map::new();
        let (mut client_name, mut client_tz) = (None, None);
        for (name, cell) in headers.iter().zip(row.iter()) {
            if cell.is_empty() {
                continue;
            }
            match name {
                "client_name" => client_name = Some(cell.to_owned()),
                "client_timezone" => client_tz = Some(cell.to_owned()),
                _ => {
                    let value = match cell.to_ascii_lowercase().as_str() {
                        "true" | "yes" => serde_json::Value::Bool(true),
                        "false" | "no" => serde_json::Value::Bool(false),
                        _ => serde_json::Value::String(cell.to_owned()),
                    };
                    fields.insert(name.to_owned(), value);
                }
            }
        }
        let id = fields
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned();
        let doc: EndpointDoc = serde_path_free(serde_json::Value::Object(fields))
            .map_err(|e| input_error(format!("{source}: row {line} (endpoint {id}): {e}")))?;
        let entry = clients
            .entry(doc.client.clone())
            .or_insert_with(|| ClientDoc {
                id: doc.client.clone(),
                name: None,
                timezone: None,
                locations: None,
                impact: None,
            });
        entry.name = entry.name.take().or(client_name);
        entry.timezone = entry.timezone.take().or(client_tz);
        if let Some(loc) = &doc.location {
            let locations = entry.locations.get_or_insert_with(Vec::new);
            if !locations.iter().any(|l| &l.id == loc) {
                locations.push(patchflow_core::contract::LocationDoc {
                    id: loc.clone(),
                    patching_disabled: None,
                });
            }
        }
        endpoints.push(doc);
    }
    Ok(InventoryDoc {
        clients: clients.into_values().collect(),
        endpoints,
    })
}

fn serde_path_free(value: serde_json::Value) -> Result<EndpointDoc, String> {
    serde_json::from_value(value).map_err(|e| {
        // serde_json names the field for unknown variants and missing fields.
        e.to_string()
    })
}

/// The month's catalog from a file; `{cycle}` in the path is replaced by the cycle (`YYYY-MM`).
#[derive(Debug, Clone)]
pub struct FileCatalog {
    template: String,
}

impl FileCatalog {
    /// The catalog at this path (template).
    pub fn new(template: impl Into<String>) -> Self {
        Self {
            template: template.into(),
        }
    }

    /// The file of a cycle.
    pub fn path(&self, cycle: CycleId) -> PathBuf {
        PathBuf::from(self.template.replace("{cycle}", &cycle.to_string()))
    }
}

impl CatalogSource for FileCatalog {
    async fn catalog(
        &self,
        cycle: CycleId,
    ) -> Result<patchflow_core::contract::CatalogDoc, PortError> {
        let path = self.path(cycle);
        let text = read(&path)?;
        let source = path.display().to_string();
        parse_catalog(&source, &text)
            .map_err(|e| PortError::permanent("catalog", e.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| PortError::permanent(format!("catalog {source}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_inventory_reads_like_its_json_twin() {
        let csv = "id,client,client_timezone,location,hostname,kind,timezone,role,ring,track\n\
                   srv-1,acme,America/Chicago,hq,ACME-DC1,server,,domain_controller,pilot,\n\
                   ws-1,acme,,hq,ACME-WS1,workstation,America/Denver,,,daytime\n";
        let doc = inventory_from_csv("fleet.csv", csv).unwrap();
        assert_eq!(doc.clients.len(), 1);
        assert_eq!(doc.clients[0].timezone.as_deref(), Some("America/Chicago"));
        assert_eq!(doc.endpoints.len(), 2);
        assert_eq!(doc.endpoints[1].timezone.as_deref(), Some("America/Denver"));
        let inv = inventory_from_doc("fleet.csv", doc).unwrap();
        assert_eq!(inv.endpoints().len(), 2);
    }

    #[test]
    fn a_bad_csv_cell_names_the_file_row_and_field() {
        let csv = "id,client,kind\nws-1,acme,laptop\n";
        let e = inventory_from_csv("fleet.csv", csv).unwrap_err();
        let full = patchflow_core_error_chain(&e);
        assert!(
            full.contains("fleet.csv") && full.contains("row 2") && full.contains("laptop"),
            "{full}"
        );
    }

    fn patchflow_core_error_chain(e: &PortError) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }

    #[tokio::test]
    async fn a_missing_file_is_permanent_and_names_the_path() {
        let e = FileInventory::new("/nonexistent/fleet.json")
            .pull()
            .await
            .unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("/nonexistent/fleet.json"));
    }
}
