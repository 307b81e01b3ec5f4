//! What changed between two run configurations, key by key (`optim.lr: 0.001 -> 0.002`).

use toml::{Table, Value};

/// One key whose value differs (`None`: absent on that side).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        write!(f, "{}: {} -> {}", self.key, show(&self.old), show(&self.new))
    }
}

/// Every leaf key (dotted; array entries by index) whose value differs between `old` and `new`.
pub fn changes(old: &Table, new: &Table) -> Vec<Change> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flatten("", &Value::Table(old.clone()), &mut a);
    flatten("", &Value::Table(new.clone()), &mut b);
    let mut keys: Vec<&String> = a.iter().chain(&b).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let get = |side: &[(String, Value)], k: &str| side.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
    keys.into_iter()
        .filter_map(|k| {
            let (o, n) = (get(&a, k), get(&b, k));
            (o != n).then(|| Change { key: k.clone(), old: o, new: n })
        })
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Table(t) => t.iter().for_each(|(k, x)| flatten(&join(k), x, out)),
        // Arrays of tables ([[eval]], [[objective.mix]]) by index; arrays of values are leaves.
        Value::Array(a) if a.iter().any(Value::is_table) => {
            a.iter().enumerate().for_each(|(i, x)| flatten(&join(&i.to_string()), x, out))
        }
        leaf => out.push((prefix.to_string(), leaf.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_changed_added_and_removed_keys() {
        let old: Table =
            toml::from_str("[optim]\nlr = 0.001\n[data]\nfiles = [\"a\"]\n[[eval]]\nname = \"knn\"\nk = 5\n").unwrap();
        let new: Table =
            toml::from_str("[optim]\nlr = 0.002\nname = \"sgd\"\n[data]\nfiles = [\"a\"]\n[[eval]]\nname = \"knn\"\n")
                .unwrap();
        let c: Vec<String> = changes(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(c, ["eval.0.k: 5 -> (unset)", "optim.lr: 0.001 -> 0.002", "optim.name: (unset) -> \"sgd\""]);
        assert!(changes(&old, &old).is_empty());
    }
}
