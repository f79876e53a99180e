//! `docs/configuration.md` is kept true by this test, against the JSON Schema that
//! `apono-connector config-schema` prints (derived from the structs the configuration is parsed
//! into):
//!
//! * every key in the schema is in the reference's tables, and every key in the tables is in
//!   the schema, per section (`[connector]`, `[[users]]`, `[[integrations]]`, each integration
//!   type's `config`, `[[access_flows]]`, `[[notifications]]`); a key is the first column's `` `code` `` of a table row
//!   under the section's heading;
//! * a default the schema knows (a number, string, boolean or list) opens the row's default
//!   column;
//! * the reference's TOML examples, put together, pass `apono-connector check-config`;
//! * the integration types with a `config` schema are the registry's built-in types;
//! * the schema-only copies of `SecretStoreRef` and `AccountNaming` (their own modules carry no
//!   schema) have the keys serde accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apono-connector");

/// A section's keys, each with the schema's default when it has one.
type Keys = BTreeMap<String, Option<Value>>;

fn reference_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")
}

fn reference() -> String {
    std::fs::read_to_string(reference_path()).expect("reading docs/configuration.md")
}

fn schema() -> Value {
    let out = Command::new(BIN)
        .arg("config-schema")
        .env_clear()
        .output()
        .expect("running apono-connector config-schema");
    assert!(
        out.status.success(),
        "config-schema failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("config-schema prints JSON")
}

/// Follows `$ref`s within the document.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            let target = root
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {pointer}"));
            resolve(root, target)
        }
        None => node,
    }
}

/// Every key under `node`, joined with dots: its properties and theirs, through `$ref`, array
/// `items` and `oneOf`/`anyOf` (enums, `Option`). A map (`additionalProperties` without
/// `properties`) is one key; `allOf` (the per-type `config` rules) is left to the caller.
fn keys(root: &Value, node: &Value, prefix: &str, out: &mut Keys) {
    let node = resolve(root, node);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let path = format!("{prefix}{name}");
            out.insert(path.clone(), property.get("default").cloned());
            keys(root, property, &format!("{path}."), out);
        }
    }
    if let Some(items) = node.get("items") {
        keys(root, items, prefix, out);
    }
    for combinator in ["oneOf", "anyOf"] {
        for alternative in node
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            keys(root, alternative, prefix, out);
        }
    }
}

/// The integration types with a `config` schema, each with its `config` node.
fn typed_configs(root: &Value) -> BTreeMap<String, Value> {
    let rules = root
        .pointer("/$defs/Integration/allOf")
        .and_then(Value::as_array)
        .expect("$defs.Integration.allOf holds a rule per integration type");
    rules
        .iter()
        .map(|rule| {
            let name = rule
                .pointer("/if/properties/type/const")
                .and_then(Value::as_str)
                .expect("a rule names its type");
            let config = rule
                .pointer("/then/properties/config")
                .expect("a rule gives a config schema");
            (name.to_owned(), config.clone())
        })
        .collect()
}

/// The schema's sections, named as [`section_names`] names the reference's headings.
fn schema_sections(root: &Value) -> BTreeMap<String, Keys> {
    let top: BTreeSet<&str> = root["properties"]
        .as_object()
        .expect("the root has properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        top,
        BTreeSet::from([
            "connector",
            "users",
            "integrations",
            "access_flows",
            "notifications",
            "identity_providers"
        ]),
        "the file's sections changed: update docs/configuration.md and this test"
    );
    let mut sections = BTreeMap::new();
    for name in top {
        let mut section = Keys::new();
        keys(root, &root["properties"][name], "", &mut section);
        sections.insert(name.to_owned(), section);
    }
    for (name, config) in typed_configs(root) {
        let mut section = Keys::new();
        keys(root, &config, "", &mut section);
        sections.insert(format!("config of type {name}"), section);
    }
    sections
}

/// The sections a heading of the reference opens: `` `[connector]` ``, `` `[[users]]` ``, … or
/// each `type = "…"` it names; none for other headings.
fn section_names(heading: &str) -> Vec<String> {
    let types: Vec<String> = heading
        .split("type = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| format!("config of type {name}"))
        .collect();
    if !types.is_empty() {
        return types;
    }
    [
        "connector",
        "users",
        "integrations",
        "access_flows",
        "notifications",
        "identity_providers",
    ]
    .into_iter()
    .filter(|name| {
        heading.contains(&format!("`[{name}]`")) || heading.contains(&format!("`[[{name}]]`"))
    })
    .map(str::to_owned)
    .collect()
}

/// The reference's sections: for each key, the text of its default column.
fn documented_sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = Vec::new();
    let mut in_code = false;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code {
            continue;
        } else if line.starts_with('#') {
            current = section_names(line);
        } else if let Some(row) = line.strip_prefix("| `") {
            let key = row.split('`').next().unwrap_or_default();
            let default = row.split('|').nth(2).unwrap_or_default().trim();
            assert!(
                !current.is_empty(),
                "docs/configuration.md:{}: key `{key}` under no section heading",
                number + 1
            );
            for section in &current {
                let previous = sections
                    .entry(section.clone())
                    .or_default()
                    .insert(key.to_owned(), default.to_owned());
                assert!(
                    previous.is_none(),
                    "docs/configuration.md:{}: `{key}` is listed twice in {section}",
                    number + 1
                );
            }
        }
    }
    sections
}

#[test]
fn every_key_in_the_code_is_in_the_reference_and_the_other_way_round() {
    let root = schema();
    let in_code = schema_sections(&root);
    let documented = documented_sections(&reference());
    let mut problems = Vec::new();
    let names: BTreeSet<&String> = in_code.keys().chain(documented.keys()).collect();
    for name in names {
        let code: BTreeSet<&String> = in_code
            .get(name)
            .into_iter()
            .flat_map(|k| k.keys())
            .collect();
        let docs: BTreeSet<&String> = documented
            .get(name)
            .into_iter()
            .flat_map(|k| k.keys())
            .collect();
        for key in code.difference(&docs) {
            problems.push(format!(
                "{name}: `{key}` is in the code but not in the reference"
            ));
        }
        for key in docs.difference(&code) {
            problems.push(format!(
                "{name}: `{key}` is in the reference but not in the code"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md and the configuration's schema disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn documented_defaults_are_the_codes() {
    let root = schema();
    let in_code = schema_sections(&root);
    let documented = documented_sections(&reference());
    let mut problems = Vec::new();
    for (name, section) in &in_code {
        for (key, default) in section {
            // `null` is "none", a table's default is described in words.
            let Some(default) = default.as_ref().filter(|d| !d.is_null() && !d.is_object()) else {
                continue;
            };
            let expected = format!("`{default}`");
            let Some(cell) = documented.get(name).and_then(|s| s.get(key)) else {
                continue; // reported by the other test
            };
            if !cell.starts_with(&expected) {
                problems.push(format!(
                    "{name}: `{key}` defaults to {expected}, the reference says {cell}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reference_examples_together_pass_check_config() {
    let text = reference();
    let mut file = String::new();
    let mut in_toml = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_toml = line == "```toml";
        } else if in_toml {
            file.push_str(line);
            file.push('\n');
        }
    }
    assert!(file.contains("[connector]"), "no TOML example found");
    let path = std::env::temp_dir().join(format!(
        "apono-config-reference-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, &file).expect("writing the examples");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env_clear()
        .output()
        .expect("running apono-connector check-config");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "the examples of docs/configuration.md do not pass check-config:\n{}\n{file}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_builtin_integration_type_has_a_config_schema() {
    let registry = apono_runtime::ProvisionerRegistry::with_builtin();
    let registered: BTreeSet<String> = registry.types().map(str::to_owned).collect();
    let with_schema: BTreeSet<String> = typed_configs(&schema()).into_keys().collect();
    assert_eq!(registered, with_schema);
}

/// The names serde lists after "expected" in an unknown-variant or unknown-field error.
fn serde_expected(error: &serde_json::Error) -> BTreeSet<String> {
    let message = error.to_string();
    let (_, expected) = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("no list of expected names in {message:?}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The keys directly below `prefix` in a section.
fn children(section: &Keys, prefix: &str) -> BTreeSet<String> {
    section
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter(|k| !k.contains('.'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn schema_copies_have_the_keys_serde_accepts() {
    let sections = schema_sections(&schema());

    let integrations = &sections["integrations"];
    let stores = serde_json::from_value::<apono_core::SecretStoreRef>(
        serde_json::json!({"no_such_store": {}}),
    )
    .unwrap_err();
    let store_names = serde_expected(&stores);
    assert_eq!(children(integrations, "secret_store."), store_names);
    for store in &store_names {
        let error = serde_json::from_value::<apono_core::SecretStoreRef>(
            serde_json::json!({ store: {"no_such_key": 1} }),
        )
        .unwrap_err();
        assert_eq!(
            children(integrations, &format!("secret_store.{store}.")),
            serde_expected(&error),
            "secret_store.{store}"
        );
    }

    let error =
        serde_json::from_value::<apono_core::AccountNaming>(serde_json::json!({"no_such_key": 1}))
            .unwrap_err();
    let naming = serde_expected(&error);
    let mut users = 0;
    for (name, section) in &sections {
        if section.contains_key("account_naming") {
            users += 1;
            assert_eq!(
                children(section, "account_naming."),
                naming,
                "{name}: account_naming"
            );
        }
    }
    assert!(
        users >= 2,
        "account_naming is in rdp and apono-vault's config"
    );
}
