//! `[optim]`: the learning rate, parameter groups (`freeze`, `lr_mult`) and the optimizer
//! (`name` = adamw | sgd | lars and its own keys), typed at parse time.

use super::keys::check_keys;
use super::section::{keys_of, Check};
use crate::Result;
use pt_optim::{GroupRules, LrMultRule, OptimizerConfig};
use toml::{Table, Value};

const HOST_KEYS: [&str; 3] = ["lr", "freeze", "lr_mult"];

#[derive(Clone, Debug, PartialEq)]
pub struct OptimSettings {
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    /// Parameter-name prefixes that are not trained.
    pub freeze: Vec<String>,
    /// Learning-rate multipliers by parameter-name prefix.
    pub lr_mult: Vec<LrMultRule>,
    pub optimizer: OptimizerConfig,
}

impl Default for OptimSettings {
    fn default() -> Self {
        OptimSettings { lr: 1e-3, freeze: Vec::new(), lr_mult: Vec::new(), optimizer: OptimizerConfig::default() }
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_float().or(v.as_integer().map(|i| i as f64))
}

impl OptimSettings {
    pub fn parse(mut t: Table) -> Result<Self> {
        let c = Check::new("optim");
        let lr = match t.remove("lr") {
            None => 1e-3,
            Some(v) => number(&v).ok_or_else(|| c.error(&format!("lr = {v}: expected a number")))?,
        };
        c.float("lr", lr, "a finite number ≥ 0", |v| v >= 0.0)?;
        let freeze: Vec<String> = match t.remove("freeze") {
            None => Vec::new(),
            Some(v) => v.try_into().map_err(|_| c.error("freeze must be a list of parameter-name prefixes"))?,
        };
        let lr_mult = match t.remove("lr_mult") {
            None => Vec::new(),
            Some(Value::Table(m)) => m
                .into_iter()
                .map(|(prefix, v)| {
                    let mult =
                        number(&v).ok_or_else(|| c.error(&format!("lr_mult.\"{prefix}\" = {v}: expected a number")))?;
                    c.float(&format!("lr_mult.\"{prefix}\""), mult, "a finite number ≥ 0", |m| m >= 0.0)?;
                    Ok(LrMultRule { prefix, lr_mult: mult })
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(c.error("lr_mult must be a table of prefix = multiplier")),
        };
        t.entry("name").or_insert_with(|| Value::String("adamw".into()));
        // Unknown keys get a did-you-mean against the chosen optimizer's own keys.
        let name: Table = t.iter().filter(|(k, _)| *k == "name").map(|(k, v)| (k.clone(), v.clone())).collect();
        let defaults: OptimizerConfig = Value::Table(name).try_into().map_err(|e: toml::de::Error| {
            c.error(&format!("name = {}: {}", t["name"], e.message().replace("variant", "optimizer")))
        })?;
        let mut known: Vec<String> = HOST_KEYS.iter().map(|k| k.to_string()).collect();
        known.extend(keys_of(&defaults));
        check_keys("optim", &t, &known.iter().map(String::as_str).collect::<Vec<_>>())?;
        for (key, value) in t.iter().filter(|(k, _)| *k != "name") {
            let one: Table =
                [("name".to_string(), t["name"].clone()), (key.clone(), value.clone())].into_iter().collect();
            if let Err(e) = Value::Table(one).try_into::<OptimizerConfig>() {
                return Err(c.error(&format!("{key} = {value}: {}", e.message())));
            }
        }
        let optimizer: OptimizerConfig =
            Value::Table(t).try_into().map_err(|e: toml::de::Error| c.error(e.message()))?;
        optimizer.validate().map_err(|e| c.error(e.message.as_str()))?;
        let settings = OptimSettings { lr, freeze, lr_mult, optimizer };
        settings.rules().validate().map_err(|e| c.error(e.message.as_str()))?;
        Ok(settings)
    }

    /// The parameter-group rules pt-optim builds groups from.
    pub fn rules(&self) -> GroupRules {
        GroupRules {
            weight_decay: self.optimizer.weight_decay(),
            lr_mult: self.lr_mult.clone(),
            freeze: self.freeze.clone(),
        }
    }

    /// Every key, defaults included (what `config.toml` and `--print-config` show).
    pub fn to_table(&self) -> Table {
        let mut t = super::section::to_table(&self.optimizer);
        t.insert("lr".into(), Value::Float(self.lr));
        t.insert("freeze".into(), Value::Array(self.freeze.iter().map(|f| Value::String(f.clone())).collect()));
        let mult: Table = self.lr_mult.iter().map(|r| (r.prefix.clone(), Value::Float(r.lr_mult))).collect();
        t.insert("lr_mult".into(), Value::Table(mult));
        t
    }
}
