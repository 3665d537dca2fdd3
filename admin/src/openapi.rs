//! The OpenAPI 3.1 description of the admin API, generated from `api::ROUTES`.

use serde_json::{json, Map, Value};

use crate::api::ROUTES;

pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let path = route.path.to_string();
        let mut parameters = Vec::new();
        for name in ["track", "serial", "name", "kid", "email", "id"] {
            if path.contains(&format!("{{{name}}}")) {
                let schema = if name == "track" {
                    json!({"type": "string", "enum": ["machine", "human"]})
                } else {
                    json!({"type": "string"})
                };
                parameters.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
            }
        }
        let mut operation = json!({
            "summary": route.summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK"},
                "401": {"description": "No valid token", "content": {"application/problem+json": {}}},
                "403": {"description": "The role may not do this", "content": {"application/problem+json": {}}},
            },
        });
        match route.permission {
            None => operation["security"] = json!([]),
            Some(p) => operation["x-dualca-permission"] = json!(format!("{p:?}")),
        }
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "dualca admin API", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    })
}
