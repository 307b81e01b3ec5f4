//! The torchrun environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`),
//! which torchrun, Slurm wrappers, Kubernetes operators and `pt launch` all set.

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: u64,
    pub world_size: u64,
    pub local_rank: u64,
    pub master_addr: String,
    pub master_port: u16,
}

impl DistEnv {
    /// `None` for a single process (no `WORLD_SIZE`, or 1 without `MASTER_ADDR`); an error
    /// naming the variable when the environment is half set or malformed.
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let number = |key: &str| -> Result<Option<u64>> {
            match get(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                    Error::Config(format!("environment variable {key}={v:?} is not a non-negative integer"))
                }),
            }
        };
        // A launcher (torchrun, `pt launch`) sets MASTER_ADDR even for one process, which then
        // forms a group of one: the same code path as many ranks (NCCL on one GPU, say).
        let launched = get("MASTER_ADDR").is_some_and(|v| !v.is_empty());
        let world_size = match number("WORLD_SIZE")? {
            None => return Ok(None),
            Some(1) if !launched => return Ok(None),
            Some(0) => return Err(Error::Config("environment variable WORLD_SIZE=0: it must be at least 1".into())),
            Some(w) => w,
        };
        let missing = |key: &str| {
            Error::Config(format!(
                "WORLD_SIZE={world_size} but {key} is not set: start pt with torchrun or `pt launch`, or set RANK, \
                 LOCAL_RANK, MASTER_ADDR and MASTER_PORT for every process"
            ))
        };
        let rank = number("RANK")?.ok_or_else(|| missing("RANK"))?;
        if rank >= world_size {
            return Err(Error::Config(format!("RANK={rank} is not below WORLD_SIZE={world_size}")));
        }
        let local_rank = number("LOCAL_RANK")?.unwrap_or(rank);
        let master_addr = get("MASTER_ADDR").filter(|v| !v.is_empty()).ok_or_else(|| missing("MASTER_ADDR"))?;
        let port = number("MASTER_PORT")?.ok_or_else(|| missing("MASTER_PORT"))?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| Error::Config(format!("MASTER_PORT={port} is not a TCP port (1-65535)")))?;
        Ok(Some(DistEnv { rank, world_size, local_rank, master_addr, master_port }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DistEnv::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_torchrun_variables_and_names_what_is_wrong() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        let one = [("WORLD_SIZE", "1"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
        assert_eq!(parse(&one).unwrap().unwrap().world_size, 1);
        let env = parse(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((env.rank, env.world_size, env.local_rank, env.master_port), (3, 4, 1, 29500));
        let err = |vars: &[(&str, &str)]| parse(vars).unwrap_err().to_string();
        assert!(err(&[("WORLD_SIZE", "2")]).contains("RANK is not set"));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "2")]).contains("not below WORLD_SIZE"));
        assert!(err(&[("WORLD_SIZE", "two")]).contains("WORLD_SIZE=\"two\""));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h")]).contains("MASTER_PORT is not set"));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")])
            .contains("not a TCP port"));
    }
}
