//! Loading: built-in defaults, then the TOML file, then `COGNITO_GATE_*` variables
//! (figment layering), with every unknown key and every value of the wrong type
//! collected, so that one run reports them all; then [`super::validate`].

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};

use super::*;

impl Config {
    /// Loads defaults, then `file`, then the environment. A missing file is an error:
    /// running on defaults alone by accident would hide a typo in `--config`.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        if !file.is_file() {
            return Err(ConfigError::config(vec![format!(
                "config file {} does not exist",
                file.display()
            )]));
        }
        let mut config = Config::from_figment(
            Figment::from(Serialized::defaults(RawConfig::default()))
                .merge(Toml::file(file))
                .merge(env_provider()),
        )?;
        config.source = Some(file.to_path_buf());
        Ok(config)
    }

    /// Defaults, then TOML text; the environment is not read. For tests and the demo.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_figment(
            Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(text)),
        )
    }

    /// Every unknown key is reported (not only the first, as serde would), together
    /// with every problem of the known ones.
    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut unknown = Vec::new();
        let mut data = figment.data().map_err(|e| ConfigError::config(errors(e)))?;
        let mut merged = data.remove(&figment::Profile::Default).unwrap_or_default();
        let schema = raw::schema();
        drop_unknown(&mut merged, &schema, "", &mut unknown);
        let mut problems: Vec<String> = unknown
            .into_iter()
            .map(|key| format!("{key}: unknown key"))
            .collect();
        // serde stops at the first value of the wrong type: note it, drop that key
        // (its default applies), and extract again, so that every one is reported.
        let mut wrong_types = 0;
        let raw = loop {
            match Figment::from(Serialized::defaults(merged.clone())).extract::<RawConfig>() {
                Ok(raw) => break Some(raw),
                Err(e) => {
                    let path = e.path.clone();
                    problems.extend(errors(e));
                    wrong_types += 1;
                    if path.is_empty() || wrong_types > 64 || !remove_path(&mut merged, &path) {
                        break None;
                    }
                }
            }
        };
        match raw.map(Config::try_from) {
            Some(Ok(config)) if problems.is_empty() => Ok(config),
            Some(Err(e)) => {
                problems.extend(e.problems);
                Err(ConfigError::config(problems))
            }
            _ => Err(ConfigError::config(problems)),
        }
    }
}

/// Removes the value at `path` (keys, and indexes into arrays); whether it was there.
fn remove_path(dict: &mut figment::value::Dict, path: &[String]) -> bool {
    use figment::value::Value;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut current = dict;
    let mut parents = parents.iter();
    while let Some(key) = parents.next() {
        let next = match current.get_mut(key) {
            Some(Value::Dict(_, inner)) => inner,
            Some(Value::Array(_, items)) => {
                let item = parents
                    .next()
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| items.get_mut(i));
                match item {
                    Some(Value::Dict(_, inner)) => inner,
                    _ => return false,
                }
            }
            _ => return false,
        };
        current = next;
    }
    current.remove(last).is_some()
}

/// Figment's errors as `key: problem` lines.
fn errors(e: figment::Error) -> Vec<String> {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let mut e = e;
            e.path.clear();
            e.profile = None;
            e.metadata = None;
            match key.is_empty() {
                true => e.to_string(),
                false => format!("{key}: {e}"),
            }
        })
        .collect()
}

/// Removes, and records with their key paths, the keys of `value` that `schema` does
/// not have. Lists of tables (`pools`) are checked entry by entry.
fn drop_unknown(
    value: &mut figment::value::Dict,
    schema: &figment::value::Dict,
    prefix: &str,
    unknown: &mut Vec<String>,
) {
    use figment::value::Value;
    let keys: Vec<String> = value.keys().cloned().collect();
    for key in keys {
        let path = match prefix {
            "" => key.clone(),
            p => format!("{p}.{key}"),
        };
        let Some(expected) = schema.get(&key) else {
            value.remove(&key);
            unknown.push(path);
            continue;
        };
        match (value.get_mut(&key), expected) {
            // An empty table in the schema is a map the user names (`headers.claims`).
            (Some(Value::Dict(_, _)), Value::Dict(_, inner_schema)) if inner_schema.is_empty() => {}
            (Some(Value::Dict(_, inner)), Value::Dict(_, inner_schema)) => {
                drop_unknown(inner, inner_schema, &path, unknown);
            }
            (Some(Value::Array(_, items)), Value::Array(_, schema_items)) => {
                if let Some(Value::Dict(_, item_schema)) = schema_items.first() {
                    for (i, item) in items.iter_mut().enumerate() {
                        if let Value::Dict(_, inner) = item {
                            drop_unknown(inner, item_schema, &format!("{path}[{i}]"), unknown);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn env_provider() -> Env {
    // COGNITO_GATE_CONFIG names the file itself (see the CLI), it is not a key.
    Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__")
}
