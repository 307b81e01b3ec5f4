//! Where things are: config paths with `~`, `{data}` and `$PT_DATA`, and the data directory.

use pt_sdk::{CreateCtx, PtError, Result};
use std::path::PathBuf;

/// The data directory: the host's `CreateCtx.data_dir`, else `$PT_DATA`, else `~/.cache/pt/data`.
pub fn data_dir(ctx: &CreateCtx) -> Result<PathBuf> {
    if !ctx.data_dir.is_empty() {
        return Ok(PathBuf::from(&ctx.data_dir));
    }
    if let Some(dir) = std::env::var_os("PT_DATA").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::home_dir()
        .map(|h| h.join(".cache/pt/data"))
        .ok_or_else(|| PtError::config("no data directory: set $PT_DATA (no home directory found)"))
}

/// Expands a configured path: `{data}/x`, `$PT_DATA/x` and `${PT_DATA}/x` are under the data
/// directory, `{run}/x` under the run directory, `~/x` under the home directory; anything else
/// is taken as written. (The host expands `{data}` and `{run}` in recipes already; this serves
/// configs that reach a plugin another way.)
pub fn expand(path: &str, ctx: &CreateCtx) -> Result<PathBuf> {
    if let Some(rest) = path.strip_prefix("{run}") {
        if ctx.run_dir.is_empty() {
            return Err(PtError::config(format!("cannot expand '{path}': no run directory here")));
        }
        return Ok(PathBuf::from(&ctx.run_dir).join(rest.trim_start_matches('/')));
    }
    for prefix in ["{data}", "${PT_DATA}", "$PT_DATA"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                return Ok(data_dir(ctx)?.join(rest.trim_start_matches('/')));
            }
        }
    }
    if let Some(rest) = path.strip_prefix('~') {
        if rest.is_empty() || rest.starts_with('/') {
            let home = dirs::home_dir()
                .ok_or_else(|| PtError::config(format!("cannot expand '{path}': no home directory")))?;
            return Ok(home.join(rest.trim_start_matches('/')));
        }
    }
    Ok(PathBuf::from(path))
}

/// Where this plugin keeps token caches.
pub fn cache_dir(ctx: &CreateCtx) -> Result<PathBuf> {
    Ok(data_dir(ctx)?.join("cache"))
}

/// `<run_dir>/assets/tokenizer.json`, or `None` outside a run.
pub fn run_tokenizer(ctx: &CreateCtx) -> Option<PathBuf> {
    (!ctx.run_dir.is_empty()).then(|| PathBuf::from(&ctx.run_dir).join("assets").join("tokenizer.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_data_prefixes_and_home() {
        let ctx = CreateCtx { data_dir: "/d".into(), ..Default::default() };
        assert_eq!(expand("{data}/text/a.txt", &ctx).unwrap(), PathBuf::from("/d/text/a.txt"));
        assert_eq!(expand("$PT_DATA/a", &ctx).unwrap(), PathBuf::from("/d/a"));
        assert_eq!(expand("${PT_DATA}/a", &ctx).unwrap(), PathBuf::from("/d/a"));
        assert_eq!(expand("/abs/a", &ctx).unwrap(), PathBuf::from("/abs/a"));
        assert_eq!(expand("rel/a", &ctx).unwrap(), PathBuf::from("rel/a"));
        assert!(expand("{run}/a", &ctx).is_err());
        let in_run = CreateCtx { run_dir: "/r".into(), ..Default::default() };
        assert_eq!(expand("{run}/assets/t.json", &in_run).unwrap(), PathBuf::from("/r/assets/t.json"));
        assert_eq!(expand("$PT_DATAX/a", &ctx).unwrap(), PathBuf::from("$PT_DATAX/a"));
        let home = dirs::home_dir().unwrap();
        assert_eq!(expand("~/x", &ctx).unwrap(), home.join("x"));
    }
}
