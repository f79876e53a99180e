//! Describing JSON that has the wrong shape, without quoting it: the JSON the connector parses
//! is often a secret (an integration's credentials, a secret store's configuration).

/// The kind of a JSON value as a message names it: `null`, `a boolean`, `a number`,
/// `a string`, `an array` or `an object`.
///
/// ```
/// use apono_core::json::json_type;
/// assert_eq!(format!("expected an object, found {}", json_type(&serde_json::json!([1]))),
///            "expected an object, found an array");
/// ```
pub fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A JSON error by category and position only — `is not valid JSON (line 1, column 2)` — to
/// follow the name of what was parsed (`"value {}"`). `serde_json`'s own message can quote
/// the input, and the input may be a secret.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Io => "could not be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "has an unexpected JSON type",
        serde_json::error::Category::Eof => "is truncated JSON",
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_named() {
        for (text, name) in [
            ("null", "null"),
            ("true", "a boolean"),
            ("1.5", "a number"),
            (r#""s""#, "a string"),
            ("[]", "an array"),
            ("{}", "an object"),
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(json_type(&value), name);
        }
    }

    #[test]
    fn errors_name_category_and_position_but_never_the_input() {
        for (text, described) in [
            (
                "{\"password\": hunter2}",
                "is not valid JSON (line 1, column 14)",
            ),
            (
                "{\"password\": \"hunter2\"",
                "is truncated JSON (line 1, column 22)",
            ),
        ] {
            let error = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
            assert_eq!(describe_json_error(&error), described);
        }
        let error = serde_json::from_str::<Vec<u8>>("{\"password\": \"hunter2\"}").unwrap_err();
        let described = describe_json_error(&error);
        assert!(
            described.starts_with("has an unexpected JSON type"),
            "{described}"
        );
        assert!(!described.contains("hunter2"));
    }
}
