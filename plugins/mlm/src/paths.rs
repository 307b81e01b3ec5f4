//! Where things are: config paths with `~`, `{data}` and `$PT_DATA`, and the data directory.

use pt_sdk::{CreateCtx, PtError, Result};
use std::path::PathBuf;

/// The data directory: the host's `CreateCtx.data_dir`, else pt's default (`$PT_DATA`, else
/// `~/.cache/pt/data`).
pub fn data_dir(ctx: &CreateCtx) -> Result<PathBuf> {
    Ok(if ctx.data_dir.is_empty() { pt_sdk::default_data_dir() } else { PathBuf::from(&ctx.data_dir) })
}

/// Expands a configured path by pt's one rule ([`pt_sdk::expand_setting`]: `{data}`, `{run}`,
/// `$PT_DATA`, `~`); `{run}` outside a run is an error.
pub fn expand(path: &str, ctx: &CreateCtx) -> Result<PathBuf> {
    if path.contains("{run}") && ctx.run_dir.is_empty() {
        return Err(PtError::config(format!("cannot expand '{path}': no run directory here")));
    }
    let data = data_dir(ctx)?;
    Ok(PathBuf::from(pt_sdk::expand_setting(path, &data.display().to_string(), &ctx.run_dir)))
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
