//! Where each key's value sits in a config text, by its dotted path (`server.tcp_idle_timeout`,
//! `policy[1].clients[0]`, `lists.tiktok.files[2]`), so that a problem found after deserialising
//! (a value out of range, two keys that contradict each other) points at the line the operator
//! has to change, not at the top of the file. Built from toml's spanned document, in the same
//! parse that deserialises the config.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The byte span of every value of a config text, by path.
#[derive(Clone, Debug, Default)]
pub(super) struct KeySpans {
    /// Path → span of the value; for a table, of its `[header]` where it has one.
    spans: HashMap<String, Range<usize>>,
}

impl KeySpans {
    /// Indexes a parsed document.
    pub(super) fn index(document: &DeTable<'_>) -> KeySpans {
        let mut keys = KeySpans::default();
        keys.table("", document);
        keys
    }

    fn table(&mut self, path: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = if path.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{path}.{}", key.get_ref())
            };
            self.value(path, value);
        }
    }

    fn value(&mut self, path: String, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::Table(table) => self.table(&path, table),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    self.value(format!("{path}[{i}]"), item);
                }
            }
            _ => {}
        }
        self.spans.insert(path, value.span());
    }

    /// The span of the value at `path`; where the key is not in the text (its default applies),
    /// the span of the nearest table around it that is (its `[section]` header), or the start of
    /// the file.
    pub(super) fn of(&self, path: &str) -> Range<usize> {
        let mut path = path;
        loop {
            if let Some(span) = self.spans.get(path) {
                return span.clone();
            }
            match path.rfind(['.', '[']) {
                Some(end) => path = &path[..end],
                None => return 0..0,
            }
        }
    }
}
