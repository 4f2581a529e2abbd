//! The served OpenAPI document against what the API really answers: every
//! route of the router is documented (the unit test in `routes::openapi`),
//! and here every field of every answer below is a documented property of
//! its response's schema, every required property is there, and each value
//! has the documented type. A field added to an answer without the document
//! changing fails here; so does a schema that says "any object" where the
//! answer has fields.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};

/// Walks `value` against `schema` (of `doc`), pushing what does not match.
struct Conformance<'a> {
    doc: &'a Value,
    problems: Vec<String>,
}

impl<'a> Conformance<'a> {
    fn new(doc: &'a Value) -> Self {
        Self {
            doc,
            problems: Vec::new(),
        }
    }

    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                let target = &self.doc["components"]["schemas"][name];
                assert!(target.is_object(), "{reference} is not in the document");
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// Every property `schema` names for `value`, its own and its `allOf`
    /// parts' (of a `oneOf` part, the variant that takes `value`), with
    /// the required ones; `None` for a schema that names none.
    #[allow(clippy::type_complexity)]
    fn properties(
        &self,
        schema: &'a Value,
        value: &Value,
    ) -> Option<(Vec<(&'a str, &'a Value)>, Vec<&'a str>)> {
        let schema = self.resolve(schema);
        let mut properties = Vec::new();
        let mut required = Vec::new();
        let mut named = false;
        if let Some(own) = schema["properties"].as_object() {
            named = true;
            properties.extend(own.iter().map(|(k, v)| (k.as_str(), v)));
        }
        if let Some(own) = schema["required"].as_array() {
            required.extend(own.iter().filter_map(Value::as_str));
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            if let Some((p, r)) = self.properties(part, value) {
                named = true;
                properties.extend(p);
                required.extend(r);
            }
        }
        let variant = schema["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|choice| {
                let (p, r) = self.properties(choice, value)?;
                let map = value.as_object()?;
                let fits = r.iter().all(|name| map.contains_key(*name))
                    && p.iter().all(|(name, property)| match map.get(*name) {
                        Some(item) => {
                            let mut trial = Conformance::new(self.doc);
                            trial.check(name, property, item);
                            trial.problems.is_empty()
                        }
                        None => true,
                    });
                fits.then_some((p, r))
            });
        if let Some((p, r)) = variant {
            named = true;
            properties.extend(p);
            required.extend(r);
        }
        named.then_some((properties, required))
    }

    fn check(&mut self, at: &str, schema: &'a Value, value: &Value) {
        let schema = self.resolve(schema);
        if let Some(choices) = schema["oneOf"].as_array() {
            // The variant that takes the value without a problem.
            for choice in choices {
                let mut trial = Conformance::new(self.doc);
                trial.check(at, choice, value);
                if trial.problems.is_empty() {
                    return;
                }
            }
            self.problems
                .push(format!("{at}: {value} matches none of its oneOf"));
            return;
        }
        if let Some(parts) = schema["allOf"].as_array() {
            if value.is_object() {
                return self.object(at, schema, value);
            }
            for part in parts {
                self.check(at, part, value);
            }
            return;
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return, // any value
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !fits {
            self.problems.push(format!(
                "{at}: a {actual} where the document says {types:?}"
            ));
            return;
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !value.is_null() && !allowed.contains(value) {
                self.problems
                    .push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(&format!("{at}[{i}]"), &schema["items"], item);
                }
            }
            Value::Object(_) => self.object(at, schema, value),
            _ => {}
        }
    }

    fn object(&mut self, at: &str, schema: &'a Value, value: &Value) {
        let Some(map) = value.as_object() else { return };
        if schema["additionalProperties"].is_object() {
            for (key, item) in map {
                self.check(
                    &format!("{at}.{key}"),
                    &schema["additionalProperties"],
                    item,
                );
            }
            return;
        }
        let Some((properties, required)) = self.properties(schema, value) else {
            // "Any object": only where the document means it (an audit
            // entry's detail), never an answer's fields.
            if !at.ends_with(".detail") {
                self.problems.push(format!(
                    "{at}: the document says any object; the answer has {:?}",
                    map.keys().collect::<Vec<_>>()
                ));
            }
            return;
        };
        for (key, item) in map {
            match properties.iter().find(|(name, _)| name == key) {
                Some((_, property)) => self.check(&format!("{at}.{key}"), property, item),
                None => self
                    .problems
                    .push(format!("{at}.{key}: not in the document")),
            }
        }
        for name in required {
            if !map.contains_key(name) {
                self.problems
                    .push(format!("{at}.{name}: required, and missing"));
            }
        }
    }
}

/// The schema the document gives for `method path` answering `status`.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let mut response = &doc["paths"][path][method.to_lowercase()]["responses"][status.to_string()];
    if let Some(reference) = response["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/responses/");
        response = &doc["components"]["responses"][name];
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema in the document"
    );
    schema
}

#[test]
fn every_answer_is_as_documented() {
    let server = start(100);
    let doc = server.call("GET", "/api/v1/openapi.json", None, None).body;
    let admin = server.token("boss", ADMIN_PASSWORD);
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    let mut expect = |method: &str,
                      path: &str,
                      documented: &str,
                      token: Option<&str>,
                      body: Option<Value>,
                      status: u16| {
        let reply = server.call(method, path, token, body);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        let mut walk = Conformance::new(&doc);
        walk.check(
            &format!("{method} {path}"),
            response_schema(&doc, method, documented, status),
            &reply.body,
        );
        problems.extend(walk.problems);
        checked.push(format!("{method} {documented} {status}"));
        reply
    };

    expect("GET", "/healthz", "/healthz", None, None, 200);
    expect(
        "POST",
        "/api/v1/auth/login",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "boss", "password": ADMIN_PASSWORD})),
        200,
    );
    expect("GET", "/api/v1/me", "/api/v1/me", None, None, 401);
    expect("GET", "/api/v1/me", "/api/v1/me", Some(&admin), None, 200);
    let added = expect(
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        Some(&admin),
        Some(
            json!({"username": "ann", "password": "ann password 1", "system_account": false,
                    "cpu": 1.5, "memory": "2G", "email": "ann@example.org", "expires": "2099-01-01"}),
        ),
        201,
    );
    assert_eq!(added.body["user"]["username"], "ann");
    expect(
        "GET",
        "/api/v1/users",
        "/api/v1/users",
        Some(&admin),
        None,
        200,
    );
    let shown = expect(
        "GET",
        "/api/v1/users/ann",
        "/api/v1/users/{name}",
        Some(&admin),
        None,
        200,
    );
    assert!(shown.body["audit"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    expect(
        "PATCH",
        "/api/v1/users/ann",
        "/api/v1/users/{name}",
        Some(&admin),
        Some(json!({"full_name": "Ann Example", "cpu": "50%"})),
        200,
    );
    expect(
        "POST",
        "/api/v1/users/ann/apply",
        "/api/v1/users/{name}/apply",
        Some(&admin),
        None,
        200,
    );
    expect(
        "POST",
        "/api/v1/users/ann/unlock",
        "/api/v1/users/{name}/unlock",
        Some(&admin),
        None,
        200,
    );
    expect(
        "GET",
        "/api/v1/usage",
        "/api/v1/usage",
        Some(&admin),
        None,
        200,
    );
    expect(
        "GET",
        "/api/v1/users/ann/history",
        "/api/v1/users/{name}/history",
        Some(&admin),
        None,
        200,
    );
    expect(
        "GET",
        "/api/v1/history",
        "/api/v1/history",
        Some(&admin),
        None,
        200,
    );
    let user = server.token("ann", "ann password 1");
    expect(
        "GET",
        "/api/v1/users",
        "/api/v1/users",
        Some(&user),
        None,
        403,
    );
    expect(
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        Some(&admin),
        Some(json!({"username": "bob", "password": "bob password 1", "colour": "blue"})),
        422,
    );
    expect(
        "DELETE",
        "/api/v1/users/ann",
        "/api/v1/users/{name}",
        Some(&admin),
        None,
        200,
    );
    expect(
        "DELETE",
        "/api/v1/users/ann",
        "/api/v1/users/{name}",
        Some(&admin),
        None,
        404,
    );
    assert!(
        problems.is_empty(),
        "checked {checked:#?}\nproblems: {problems:#?}"
    );
}

/// The checker itself fails where it should: an undocumented field, a
/// missing required one, a wrong type, and "any object" for an answer.
#[test]
fn the_checker_can_fail() {
    let doc = json!({"components": {"schemas": {
        "T": {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}},
        "Any": {"type": "object"},
    }}});
    let reference = json!({"$ref": "#/components/schemas/T"});
    let any = json!({"$ref": "#/components/schemas/Any"});
    for (schema, value, expected) in [
        (&reference, json!({"a": 1}), 0),
        (&reference, json!({"a": 1, "b": 2}), 1),
        (&reference, json!({}), 1),
        (&reference, json!({"a": "one"}), 1),
        (&any, json!({"a": 1}), 1),
    ] {
        let mut walk = Conformance::new(&doc);
        walk.check("x", schema, &value);
        assert_eq!(
            walk.problems.len(),
            expected,
            "{value}: {:?}",
            walk.problems
        );
    }
}
