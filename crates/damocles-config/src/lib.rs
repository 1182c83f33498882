//! Loading TOML config files for the daemons.
//!
//! SPs carry config files between versions and from damocles itself, so a key
//! this version does not know must not stop a daemon; it is reported by name
//! for the caller to warn about. A key of the wrong type or with a bad value is
//! an error that names the key (`Miners[0].Actor`), never a bare "invalid type".

use std::path::Path;

use serde::de::DeserializeOwned;

/// Checks a parsed config needs beyond its types; errors name the key.
pub trait Validate {
    fn validate(&self) -> anyhow::Result<()>;
}

/// Reads and parses `path`, then validates; errors name the file and the key.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> anyhow::Result<Loaded<T>> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read config {}", path.display()))?;
    parse_valid(&text).with_context(|| format!("config {}", path.display()))
}

/// Parses `text`, then validates.
pub fn parse_valid<T: DeserializeOwned + Validate>(text: &str) -> anyhow::Result<Loaded<T>> {
    let loaded = parse::<T>(text)?;
    loaded.config.validate()?;
    Ok(loaded)
}

/// A size as configs write it: `2048`, `2KiB`, `32GiB` → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 2KiB or 32GiB"))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("{s:?}: unknown unit {other:?} (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

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
    /// 1-based line and column of the error in the text, when known.
    pub at: Option<(usize, usize)>,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.key.as_str(), self.at) {
            // A syntax error names no key: the line is what helps.
            ("." | "", Some((line, col))) => {
                write!(f, "line {line}, column {col}: {}", self.message)
            }
            (key, Some((line, _))) => write!(f, "key {key} (line {line}): {}", self.message),
            (key, None) => write!(f, "key {key}: {}", self.message),
        }
    }
}

/// 1-based (line, column) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl std::error::Error for KeyError {}

/// Parses `text` as `T`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<Loaded<T>, KeyError> {
    let mut unknown_keys = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown_keys.push(path.to_string());
    let de = toml::Deserializer::new(text);
    let de = serde_ignored::Deserializer::new(de, &mut record);
    let config: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        KeyError {
            key,
            message: inner.message().trim().to_string(),
            at: inner.span().map(|span| line_col(text, span.start)),
        }
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
        let e = parse::<Cfg>("[server]\nport = 1\n[server\n").unwrap_err();
        assert_eq!(e.at.map(|(line, _)| line), Some(3), "{e}");
        assert!(e.to_string().starts_with("line 3, column"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("32GiB"), Ok(32 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("2KB").is_err());
        assert!(parse_size("x").is_err());
    }
}
