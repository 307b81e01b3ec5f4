//! `[run] init_from` (`--init-from`): weights a run starts from, each `[ROLE=]PATH`.

use super::{Archs, RunConfig};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// One source of starting weights: into the whole model, or into the architecture under one
/// role (e.g. a SimCLR encoder into CLIP's `image` tower, an MLM encoder into ELECTRA's
/// `discriminator`).
#[derive(Clone, Debug, PartialEq)]
pub struct InitFrom {
    pub role: Option<String>,
    pub path: PathBuf,
}

impl InitFrom {
    /// `ROLE=PATH` when what precedes `=` is a role-like name (letters, digits, `_`, `-`) and
    /// no such file exists; else all of it is the path.
    pub fn parse(arg: &str) -> InitFrom {
        if let Some((role, path)) = arg.split_once('=') {
            let role_like = !role.is_empty() && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if role_like && !path.is_empty() && !Path::new(arg).exists() {
                return InitFrom { role: Some(role.to_string()), path: PathBuf::from(path) };
            }
        }
        InitFrom { role: None, path: PathBuf::from(arg) }
    }

    /// The same source with its path absolute (against the working directory), written back
    /// as `[ROLE=]PATH`: a saved config must name it wherever the run is resumed from.
    fn absolute(&self) -> Result<String> {
        let path = std::path::absolute(&self.path)
            .map_err(|e| Error::Config(format!("[run] init_from '{}': {e}", self.path.display())))?;
        Ok(match &self.role {
            Some(role) => format!("{role}={}", path.display()),
            None => path.display().to_string(),
        })
    }
}

impl RunConfig {
    /// `init_from`, parsed.
    pub fn init_sources(&self) -> Vec<InitFrom> {
        self.init_from.iter().map(|a| InitFrom::parse(a)).collect()
    }

    /// Every `init_from` path made absolute (the plan keeps them so).
    pub fn absolute_init_from(&mut self) -> Result<()> {
        self.init_from = self.init_sources().iter().map(InitFrom::absolute).collect::<Result<_>>()?;
        Ok(())
    }
}

/// Each source's role names one of the recipe's architectures, and a source without one goes
/// to a recipe with a single architecture or to every role at once.
pub(super) fn check_init_roles(run: &RunConfig, arch: &Archs) -> Result<()> {
    let roles: Vec<String> = arch.iter().into_iter().filter_map(|(r, _)| r.map(str::to_string)).collect();
    for (given, init) in run.init_from.iter().zip(run.init_sources()) {
        if init.path.as_os_str().is_empty() || (init.role.is_none() && given.ends_with('=')) {
            return Err(Error::Config(format!("[run] init_from '{given}': give [ROLE=]PATH, with a path")));
        }
        let Some(role) = &init.role else { continue };
        if !roles.contains(role) {
            let fix = match roles.is_empty() {
                true => format!("the recipe trains one architecture: drop '{role}='"),
                false => format!("the recipe's roles are {}", roles.join(", ")),
            };
            return Err(Error::Config(format!(
                "[run] init_from '{given}': no architecture has the role '{role}' ({fix}; if '{given}' is a file, it does not exist)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_from_takes_a_role_before_the_first_equals_sign() {
        let role = |r: &str, p: &str| InitFrom { role: Some(r.into()), path: PathBuf::from(p) };
        assert_eq!(InitFrom::parse("image=runs/simclr"), role("image", "runs/simclr"));
        assert_eq!(InitFrom::parse("text=/a/b=c"), role("text", "/a/b=c"));
        let whole = |p: &str| InitFrom { role: None, path: PathBuf::from(p) };
        assert_eq!(InitFrom::parse("runs/mlm"), whole("runs/mlm"));
        assert_eq!(InitFrom::parse("/tmp/x=y"), whole("/tmp/x=y"), "a path before '=' is no role");
        assert_eq!(InitFrom::parse("=x"), whole("=x"));
    }

    #[test]
    fn paths_become_absolute_and_roles_must_exist() {
        let mut run = RunConfig { init_from: vec!["discriminator=runs/mlm".into()], ..RunConfig::default() };
        run.absolute_init_from().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(run.init_from, [format!("discriminator={}", cwd.join("runs/mlm").display())]);
        let one: Archs = Archs::parse(toml::from_str("name = \"bert\"").unwrap()).unwrap();
        let e = check_init_roles(&run, &one).unwrap_err().to_string();
        assert!(e.contains("'discriminator'") && e.contains("drop 'discriminator='"), "{e}");
        let two: Archs =
            Archs::parse(toml::from_str("[generator]\nname = \"bert\"\n[discriminator]\nname = \"bert\"").unwrap())
                .unwrap();
        check_init_roles(&run, &two).unwrap();
        run.init_from = vec!["image=x".into()];
        let e = check_init_roles(&run, &two).unwrap_err().to_string();
        assert!(e.contains("roles are discriminator, generator"), "{e}");
    }
}
