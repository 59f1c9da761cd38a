//! Structured logs: one JSON object per line with the function, the
//! correlation id and an event name. Callers pass only fields that are safe to
//! keep; secrets and signatures never reach here.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy)]
pub struct Log<'a> {
    pub function: &'a str,
    pub correlation_id: &'a str,
}

impl<'a> Log<'a> {
    pub fn new(function: &'a str, correlation_id: &'a str) -> Self {
        Log {
            function,
            correlation_id,
        }
    }

    pub fn info(&self, event: &str, fields: Value) {
        emit(false, &self.line("info", event, fields));
    }

    pub fn warn(&self, event: &str, fields: Value) {
        emit(true, &self.line("warn", event, fields));
    }

    pub fn error(&self, event: &str, fields: Value) {
        emit(true, &self.line("error", event, fields));
    }

    pub fn line(&self, level: &str, event: &str, fields: Value) -> String {
        let mut record = Map::new();
        record.insert("level".into(), json!(level));
        record.insert("fn".into(), json!(self.function));
        record.insert("event".into(), json!(event));
        record.insert("correlation_id".into(), json!(self.correlation_id));
        if let Value::Object(extra) = fields {
            for (key, value) in extra {
                record.entry(key).or_insert(value);
            }
        }
        Value::Object(record).to_string()
    }
}

fn emit(to_stderr: bool, line: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        if to_stderr {
            worker::console_error!("{line}");
        } else {
            worker::console_log!("{line}");
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = to_stderr;
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_whose_base_fields_cannot_be_overridden() {
        let log = Log::new("odoo-webhook", "cid-9");
        let line = log.line(
            "warn",
            "rejected",
            json!({ "code": "invalid_signature", "fn": "spoof" }),
        );
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["fn"], "odoo-webhook");
        assert_eq!(value["correlation_id"], "cid-9");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["event"], "rejected");
        assert_eq!(value["code"], "invalid_signature");
    }
}
