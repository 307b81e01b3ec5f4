//! `--set` on the command line: `a.b.c=VALUE` sets a key (VALUE parsed as TOML — number, bool,
//! array, quoted string — else taken as a bare string); `~a.b.c` removes one, so the component's
//! default applies again (torchtune's syntax).

use crate::{Error, Result};
use toml::{Table, Value};

/// Applies one `--set` to the recipe's TOML tree.
pub fn apply_override(root: &mut Table, spec: &str) -> Result<()> {
    let mut tree = Value::Table(std::mem::take(root));
    let result = apply_to(&mut tree, spec);
    if let Value::Table(t) = tree {
        *root = t;
    }
    result
}

fn apply_to(tree: &mut Value, spec: &str) -> Result<()> {
    if let Some(path) = spec.strip_prefix('~') {
        let parts = split_path(path, spec)?;
        return remove_at(tree, &parts, &parts, spec);
    }
    let (path, raw) = spec.split_once('=').ok_or_else(|| {
        Error::Config(format!("--set '{spec}': expected KEY=VALUE (e.g. --set optim.lr=1e-3) or ~KEY to remove a key"))
    })?;
    let value = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    set_path(tree, &split_path(path, spec)?, value, spec)
}

fn split_path<'a>(path: &'a str, spec: &str) -> Result<Vec<&'a str>> {
    let parts: Vec<&str> = path.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Config(format!("--set '{spec}': empty key segment")));
    }
    Ok(parts)
}

/// Removes `parts` below `cur`: a table's key, or an array's element by index (`~eval.1` drops
/// the second `[[eval]]`).
fn remove_at(cur: &mut Value, parts: &[&str], all: &[&str], spec: &str) -> Result<()> {
    let (head, rest) = parts.split_first().expect("split_path gives at least one part");
    let walked = &all[..all.len() - parts.len()];
    let missing = || Error::Config(format!("--set '{spec}': the recipe sets no '{}' to remove", all.join(".")));
    match cur {
        Value::Table(t) if rest.is_empty() => t.remove(*head).map(drop).ok_or_else(missing),
        Value::Table(t) => remove_at(t.get_mut(*head).ok_or_else(missing)?, rest, all, spec),
        Value::Array(a) => {
            let len = a.len();
            let index = head.parse::<usize>().ok().filter(|i| *i < len).ok_or_else(|| {
                Error::Config(format!("--set '{spec}': '{head}' is not an index below {len} of [{}]", walked.join(".")))
            })?;
            match rest.is_empty() {
                true => drop(a.remove(index)),
                false => remove_at(&mut a[index], rest, all, spec)?,
            }
            Ok(())
        }
        other => Err(Error::Config(format!(
            "--set '{spec}': [{}] is a {}, with no '{head}' inside",
            walked.join("."),
            other.type_str()
        ))),
    }
}

fn set_path(cur: &mut Value, parts: &[&str], value: Value, spec: &str) -> Result<()> {
    let Some((head, rest)) = parts.split_first() else {
        return Ok(());
    };
    match cur {
        Value::Table(t) => {
            if rest.is_empty() {
                t.insert(head.to_string(), value);
                return Ok(());
            }
            let next = t.entry(head.to_string()).or_insert_with(|| Value::Table(Table::new()));
            set_path(next, rest, value, spec)
        }
        Value::Array(a) => {
            let len = a.len();
            let slot = head
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| Error::Config(format!("--set '{spec}': '{head}' is not an index below {len}")))?;
            if rest.is_empty() {
                *slot = value;
                Ok(())
            } else {
                set_path(slot, rest, value, spec)
            }
        }
        other => Err(Error::Config(format!("--set '{spec}': '{head}' is inside a {}, not a table", other.type_str()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_removes_keys() {
        let mut t: Table = toml::from_str("[optim]\nlr = 1.0\nname = \"sgd\"\n[[eval]]\nname = \"knn\"\n").unwrap();
        apply_override(&mut t, "optim.lr=3e-4").unwrap();
        apply_override(&mut t, "eval.0.k=5").unwrap();
        apply_override(&mut t, "data.files=[\"a\", \"b\"]").unwrap();
        assert_eq!(t["optim"]["lr"].as_float(), Some(3e-4));
        assert_eq!(t["eval"][0]["k"].as_integer(), Some(5));
        assert_eq!(t["data"]["files"].as_array().map(Vec::len), Some(2));
        apply_override(&mut t, "~optim.name").unwrap();
        assert!(t["optim"].get("name").is_none());
        let e = apply_override(&mut t, "~optim.name").unwrap_err().to_string();
        assert!(e.contains("sets no 'optim.name'"), "{e}");
        let e = apply_override(&mut t, "~nothing.here").unwrap_err().to_string();
        assert!(e.contains("sets no 'nothing.here'"), "{e}");
        let e = apply_override(&mut t, "~optim.lr.x").unwrap_err().to_string();
        assert!(e.contains("[optim.lr] is a float"), "{e}");
        // Inside and of an array of tables: a key of one evaluator, then the evaluator itself.
        apply_override(&mut t, "~eval.0.k").unwrap();
        assert!(t["eval"][0].get("k").is_none() && t["eval"][0].get("name").is_some());
        let e = apply_override(&mut t, "~eval.1").unwrap_err().to_string();
        assert!(e.contains("'1' is not an index below 1 of [eval]"), "{e}");
        apply_override(&mut t, "~eval.0").unwrap();
        assert_eq!(t["eval"].as_array().map(Vec::len), Some(0));
    }
}
