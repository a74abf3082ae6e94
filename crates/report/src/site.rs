//! A bottleneck's layer as the report reads it from a row's params JSON: an integer block or
//! `"embeddings"`, which sorts before every block (the report depends on no m2ib crate, so it
//! keeps its own copy of m2ib_clip::Layer's two forms).
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    Embeddings,
    Block(i64),
}

impl Site {
    pub fn from_json(v: &Value) -> Option<Site> {
        match v {
            Value::String(s) if s == "embeddings" => Some(Site::Embeddings),
            v => v.as_i64().map(Site::Block),
        }
    }

    /// The value as a TOML literal.
    pub fn to_toml(&self) -> String {
        match self {
            Site::Embeddings => "\"embeddings\"".into(),
            Site::Block(l) => l.to_string(),
        }
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Site::Embeddings => f.write_str("embeddings"),
            Site::Block(l) => write!(f, "{l}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embeddings_sort_first_and_print_as_toml() {
        let mut v: Vec<Site> = [json!(2), json!("embeddings"), json!(0)]
            .iter()
            .filter_map(Site::from_json)
            .collect();
        v.sort();
        assert_eq!(v, [Site::Embeddings, Site::Block(0), Site::Block(2)]);
        assert_eq!(v[0].to_toml(), "\"embeddings\"");
        assert_eq!(v[2].to_toml(), "2");
        assert_eq!(Site::from_json(&json!("embedding")), None);
    }
}
