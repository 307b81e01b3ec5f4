use crate::{Error, Result};

/// The closest candidate to `key`, if it is close enough to be a likely typo.
pub fn suggest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(c, key), c))
        .filter(|(s, _)| *s > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Errors on the first key of `table` not in `known`, naming the section and suggesting a fix.
pub fn check_keys(section: &str, table: &toml::Table, known: &[&str]) -> Result<()> {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            let hint = suggest(key, known.iter().copied()).map(|k| format!(" Did you mean '{k}'?")).unwrap_or_default();
            return Err(Error::Config(format!(
                "unknown key '{key}' in [{section}].{hint} Accepted keys: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}
