//! Bad input never panics and always yields a clear error: `SecretValue` parsing and
//! `HASHICORP_VAULT_CONFIG` parsing, over arbitrary and structured-but-hostile inputs.

use apono_core::{ErrorKind, SecretValue};
use proptest::prelude::*;

const CANARY: &str = "canary-5e0b7d21";

/// JSON-ish values, some of which carry the canary.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-zA-Z0-9:/._-]{0,12}".prop_map(serde_json::Value::String),
        Just(serde_json::Value::String(CANARY.into())),
        Just(serde_json::Value::String(format!(
            "https://{CANARY}.example:8200"
        ))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys, mostly the ones the vault configuration knows, in any case.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "address",
            "token",
            "ca_cert_base64",
            "skip_verify",
            "namespace",
            "secret_engine",
            "secret_engines",
            "from_secret_store",
            "REGION",
            "SECRET_ID",
            "PROJECT",
            "AZURE_KEY_VAULT_URL",
            "NAMESPACE",
            "name",
            "SECRET_NAME",
            "url",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn secret_value_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = SecretValue::from_json(&bytes) {
            prop_assert_eq!(e.kind(), ErrorKind::Malformed);
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn secret_value_from_hostile_json(value in json_value(), cut in any::<prop::sample::Index>()) {
        let text = value.to_string();
        for input in [text.as_str(), &text[..cut.index(text.len() + 1).min(text.len())]] {
            // Cut on a char boundary only.
            if !text.is_char_boundary(input.len()) { continue; }
            match SecretValue::from_json(input.as_bytes()) {
                Ok(parsed) => {
                    let shown = format!("{parsed:?}");
                    prop_assert!(!shown.contains(CANARY));
                }
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::Malformed);
                    let shown = format!("{e} {e:?}");
                    prop_assert!(!shown.contains(CANARY), "{}", shown);
                }
            }
        }
    }
}

#[cfg(feature = "hashicorp")]
mod vault_config {
    use super::*;
    use apono_secrets::VaultConfig;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            if let Err(e) = VaultConfig::from_json(text.as_bytes()) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = VaultConfig::from_json(&bytes);
        }

        #[test]
        fn hostile_entries_give_clear_errors(entries in prop::collection::vec(json_value(), 0..4), trailing in any::<bool>()) {
            let mut text = serde_json::Value::Array(entries).to_string();
            if trailing && text.len() > 2 {
                text.insert(text.len() - 1, ',');
            }
            match VaultConfig::from_json(text.as_bytes()) {
                Ok(config) => {
                    prop_assert!(!config.entries().is_empty());
                    let shown = format!("{config:?}");
                    let canary_address = format!("https://{CANARY}");
                    let ok = !shown.contains(CANARY) || text.contains(&canary_address);
                    prop_assert!(ok, "{}", shown);
                }
                Err(e) => {
                    let shown = format!("{e} {e:?}");
                    prop_assert!(!shown.is_empty());
                    prop_assert!(!shown.contains(CANARY), "{}", shown);
                }
            }
        }

        #[test]
        fn plausible_entries_parse_or_name_the_key(
            address in prop_oneof![Just("https://vault:8200".to_owned()), "[a-z:/]{0,12}"],
            token in prop_oneof![Just(CANARY.to_owned()), "[a-z]{0,6}"],
            skip in prop_oneof![Just("\"true\"".to_owned()), Just("false".to_owned()), Just("\"maybe\"".to_owned()), Just("3".to_owned())],
        ) {
            let text = format!(r#"[{{"ADDRESS":"{address}","Token":"{token}","skip_verify":{skip}}}]"#);
            match VaultConfig::from_json(text.as_bytes()) {
                Ok(config) => prop_assert_eq!(config.entries().len(), 1),
                Err(e) => {
                    let shown = e.to_string();
                    prop_assert!(shown.contains('`'), "names the key: {}", shown);
                    prop_assert!(!shown.contains(CANARY));
                }
            }
        }
    }
}
