//! Inventory sync input: the whole inventory as a CMDB exports it, as JSON (an array of assets,
//! or `{"assets": [...]}`) or CSV with the header
//! `name,kind,owner_team,owner_email,service,environment,identifiers,spiffe_id,profile`, where
//! `identifiers` lists names and addresses separated by spaces or `;` (`dns:`/`ip:` prefixes
//! optional).

use std::net::IpAddr;

use dualca_ca::model::AssetSpec;
use dualca_ca::SyncPlan;
use serde_json::{json, Value};

use crate::assets::AssetBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

pub fn parse_inventory(data: &[u8], format: Format) -> Result<Vec<AssetSpec>, String> {
    match format {
        Format::Json => {
            let value: Value = serde_json::from_slice(data).map_err(|e| format!("inventory JSON: {e}"))?;
            let list = match value {
                Value::Array(_) => value,
                Value::Object(mut o) => o.remove("assets").ok_or("inventory JSON object has no \"assets\"")?,
                _ => return Err("inventory JSON must be an array of assets or {\"assets\": [...]}".into()),
            };
            let bodies: Vec<AssetBody> = serde_json::from_value(list).map_err(|e| format!("inventory JSON: {e}"))?;
            Ok(bodies.iter().map(AssetBody::to_spec).collect())
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(data);
            let headers = reader.headers().map_err(|e| format!("inventory CSV: {e}"))?.clone();
            let column = |name: &str| headers.iter().position(|h| h == name);
            let required = ["name", "kind", "owner_team", "owner_email", "service", "environment", "identifiers"];
            for name in required {
                if column(name).is_none() {
                    return Err(format!("inventory CSV lacks the column {name:?}"));
                }
            }
            let mut specs = Vec::new();
            for (line, record) in reader.records().enumerate() {
                let record = record.map_err(|e| format!("inventory CSV row {}: {e}", line + 2))?;
                let field = |name: &str| column(name).and_then(|i| record.get(i)).unwrap_or("").to_string();
                let optional = |name: &str| Some(field(name)).filter(|v| !v.is_empty());
                let identifiers = field("identifiers")
                    .split(|c: char| c == ';' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.split_once(':') {
                        Some(("dns", v)) => ("dns".to_string(), v.to_string()),
                        Some(("ip", v)) => ("ip".to_string(), v.to_string()),
                        _ if s.parse::<IpAddr>().is_ok() => ("ip".to_string(), s.to_string()),
                        _ => ("dns".to_string(), s.to_string()),
                    })
                    .collect();
                specs.push(AssetSpec {
                    name: field("name"),
                    kind: field("kind"),
                    owner_team: field("owner_team"),
                    owner_email: field("owner_email"),
                    service: field("service"),
                    environment: field("environment"),
                    identifiers,
                    spiffe_id: optional("spiffe_id"),
                    profile: optional("profile"),
                });
            }
            Ok(specs)
        }
    }
}

pub fn plan_json(plan: &SyncPlan) -> Value {
    json!({
        "create": plan.create.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "update": plan.update.iter().map(|(name, spec, changes)| json!({"name": name, "new_name": spec.name, "changes": changes})).collect::<Vec<_>>(),
        "decommission": plan.decommission,
        "unchanged": plan.unchanged,
        "active": plan.active,
        "decommission_share": plan.decommission_share(),
    })
}

/// The plan as lines for a terminal.
pub fn plan_text(plan: &SyncPlan) -> String {
    let mut out = String::new();
    for spec in &plan.create {
        out.push_str(&format!("+ create        {}\n", spec.name));
    }
    for (name, _, changes) in &plan.update {
        out.push_str(&format!("~ update        {name} ({})\n", changes.join(", ")));
    }
    for name in &plan.decommission {
        out.push_str(&format!("- decommission  {name}\n"));
    }
    out.push_str(&format!(
        "{} to create, {} to update, {} to decommission ({:.0}% of {} active), {} unchanged\n",
        plan.create.len(),
        plan.update.len(),
        plan.decommission.len(),
        plan.decommission_share() * 100.0,
        plan.active,
        plan.unchanged
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_inventories() {
        let csv = b"name,kind,owner_team,owner_email,service,environment,identifiers,spiffe_id,profile\n\
            web-1,host,web,web@example.org,shop,prod,\"web1.example.org; 10.0.0.7 dns:*.web.example.org\",,week\n";
        let specs = parse_inventory(csv, Format::Csv).unwrap();
        assert_eq!(
            specs[0].identifiers,
            vec![
                ("dns".to_string(), "web1.example.org".to_string()),
                ("ip".to_string(), "10.0.0.7".to_string()),
                ("dns".to_string(), "*.web.example.org".to_string()),
            ]
        );
        assert_eq!(specs[0].profile.as_deref(), Some("week"));
        assert_eq!(specs[0].spiffe_id, None);
        assert!(parse_inventory(b"name,kind\nx,host\n", Format::Csv).unwrap_err().contains("owner_team"));
        let json = br#"{"assets": [{"name": "a", "kind": "host", "owner_team": "t", "owner_email": "t@e.org",
            "service": "s", "environment": "e", "identifiers": [{"type": "dns", "value": "a.e.org"}]}]}"#;
        assert_eq!(parse_inventory(json, Format::Json).unwrap()[0].name, "a");
        assert!(parse_inventory(b"[{\"name\": 1}]", Format::Json).is_err());
    }
}
