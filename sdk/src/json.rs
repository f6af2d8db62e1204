//! Small JSON helpers for building provider requests from the host's typed values.

use serde_json::Value;

/// A `--set name=value` value as JSON: a number, boolean, array, object or quoted string when
/// the text reads as JSON, else the text itself as a string (`K_EULER`, `16:9`).
pub fn value_from_text(text: &str) -> Value {
    serde_json::from_str::<Value>(text.trim()).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// An `f32` as the user wrote it (`3.3`), not the `3.299999952316284` it widens to as `f64`;
/// `null` for NaN or infinity.
pub fn short_float(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_is_json_when_it_reads_as_json() {
        assert_eq!(value_from_text("4"), json!(4));
        assert_eq!(value_from_text(" 0.8 "), json!(0.8));
        assert_eq!(value_from_text("true"), json!(true));
        assert_eq!(value_from_text("\"1\""), json!("1"));
        assert_eq!(value_from_text("[\"a\"]"), json!(["a"]));
        assert_eq!(value_from_text("K_EULER"), json!("K_EULER"));
        assert_eq!(value_from_text("16:9"), json!("16:9"));
    }

    #[test]
    fn floats_keep_their_short_form() {
        assert_eq!(short_float(3.3), json!(3.3));
        assert_eq!(short_float(7.5), json!(7.5));
        assert_eq!(short_float(f32::NAN), Value::Null);
    }
}
