//! Loading TOML config files for the daemons.
//!
//! SPs carry config files between versions and from damocles itself, so a key
//! this version does not know must not stop a daemon; it is reported by name
//! for the caller to warn about. A key of the wrong type or with a bad value is
//! an error that names the key (`Miners[0].Actor`), never a bare "invalid type".

use serde::de::DeserializeOwned;

/// A parsed config and the keys it held that the type has no place for.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    /// Dotted paths, e.g. `Common.API.Foo`, `processors.pc1.0.weight`.
    pub unknown_keys: Vec<String>,
}

/// A config that does not parse: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Dotted path of the key (`.` for a syntax error before any key).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key {}: {}", self.key, self.message)
    }
}

impl std::error::Error for KeyError {}

/// Parses `text` as `T`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<Loaded<T>, KeyError> {
    let mut unknown_keys = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown_keys.push(path.to_string());
    let de = toml::Deserializer::new(text);
    let de = serde_ignored::Deserializer::new(de, &mut record);
    let config: T = serde_path_to_error::deserialize(de).map_err(|e| KeyError {
        key: e.path().to_string(),
        message: e.into_inner().message().trim().to_string(),
    })?;
    Ok(Loaded {
        config,
        unknown_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Inner {
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    struct Cfg {
        server: Inner,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[test]
    fn unknown_keys_are_collected_and_bad_values_named() {
        let l: Loaded<Cfg> =
            parse("[server]\nport = 1\nextra = 2\n[[items]]\nport = 3\nmore = true\n").unwrap();
        assert_eq!(l.config.server.port, 1);
        assert_eq!(l.config.items[0].port, 3);
        assert_eq!(l.unknown_keys, vec!["server.extra", "items.0.more"]);
        let e = parse::<Cfg>("[server]\nport = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "server.port");
        let e = parse::<Cfg>("[server]\nport = 1\n[[items]]\nport = 70000\n").unwrap_err();
        assert_eq!(e.key, "items[0].port");
        assert!(parse::<Cfg>("[server\n").is_err());
    }
}
