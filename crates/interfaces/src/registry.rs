//! OML's registry sections, `{name: <registry name>, args: {...}}`: the one wire type every
//! config of a registry object (miner, criterion, sampler, extractor, pairwise model, optimizer,
//! transforms, …) is read from, and the one way to read a variant's arguments.
//!
//! A registry's config enum deserialises through [`Named`] and picks its variant by name, reading
//! the variant's arguments with [`Named::args_as`]:
//!
//! ```
//! use oml_interfaces::registry::{ArgsError, Named};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct StepArgs {
//!     step_size: usize,
//! }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! #[serde(try_from = "Named", into = "Named")]
//! enum Scheduler {
//!     Step(StepArgs),
//!     Constant,
//! }
//!
//! impl TryFrom<Named> for Scheduler {
//!     type Error = String;
//!     fn try_from(n: Named) -> Result<Self, String> {
//!         let err = |e: ArgsError| e.in_registry("scheduler");
//!         match n.name.as_str() {
//!             "step" => n.args_as().map(Scheduler::Step).map_err(err),
//!             "constant" => n.args_as::<serde::de::IgnoredAny>().map(|_| Scheduler::Constant).map_err(err),
//!             other => Err(format!("unknown scheduler `{other}`")),
//!         }
//!     }
//! }
//!
//! impl From<Scheduler> for Named {
//!     fn from(s: Scheduler) -> Named {
//!         match s {
//!             Scheduler::Step(a) => Named::new("step", a),
//!             Scheduler::Constant => Named::new("constant", ()),
//!         }
//!     }
//! }
//!
//! let s: Scheduler = serde_json::from_str(r#"{"name": "step", "args": {"step_size": 3}}"#)?;
//! assert_eq!(s, Scheduler::Step(StepArgs { step_size: 3 }));
//! assert_eq!(serde_json::to_string(&Scheduler::Constant)?, r#"{"name":"constant"}"#);
//! let e = serde_json::from_str::<Scheduler>(r#"{"name": "step", "args": {"step_size": "x"}}"#)
//!     .unwrap_err()
//!     .to_string();
//! assert!(e.starts_with("scheduler `step`: args.step_size: invalid type"), "{e}");
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// A registry section as written in configs: `{name: <registry name>, args: {...}}`.
///
/// Unknown keys next to `name` and `args` are errors. `args` absent or `null` means no
/// arguments; it is not written out then. Mapping keys inside `args` are read as strings (YAML's
/// `{0: a}` becomes `{"0": "a"}`, which the argument types that take integer keys accept), and a
/// non-finite number there is an error rather than JSON's silent `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    /// The registry name.
    pub name: String,
    /// The arguments of the named object: a mapping; `null` means none.
    #[serde(
        default,
        deserialize_with = "deserialize_args",
        skip_serializing_if = "serde_json::Value::is_null"
    )]
    pub args: Value,
}

impl Named {
    /// `{name, args}` with `args` serialised to JSON; empty arguments (`null`, `{}`) are left
    /// out. Arguments that do not serialise to JSON (a map with non-scalar keys) are left out
    /// too: the registries' argument types always serialise.
    pub fn new(name: impl Into<String>, args: impl Serialize) -> Named {
        let args = serde_json::to_value(args)
            .ok()
            .filter(|v| !matches!(v, Value::Object(m) if m.is_empty()))
            .unwrap_or(Value::Null);
        Named {
            name: name.into(),
            args,
        }
    }

    /// The arguments, `{}` when absent.
    pub fn args_object(&self) -> Value {
        if self.args.is_null() {
            Value::Object(Map::new())
        } else {
            self.args.clone()
        }
    }

    /// The arguments as `T` (absent or `null` arguments read as `{}`). The error carries the
    /// path inside `args` of the offending value, and the registry name.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T, ArgsError> {
        let empty = Value::Object(Map::new());
        let args = if self.args.is_null() {
            &empty
        } else {
            &self.args
        };
        serde_path_to_error::deserialize(args).map_err(|e| {
            let path = e.path().to_string();
            ArgsError {
                name: self.name.clone(),
                path: if path == "." { String::new() } else { path },
                message: e.into_inner().to_string(),
            }
        })
    }
}

/// Arguments that do not fit the named object's argument type ([`Named::args_as`]).
///
/// Displays as `args.<path>: <message>` (`args: <message>` when the arguments as a whole are
/// wrong); callers prefix the registry kind and [`name`](Self::name), as in
/// ``criterion `triplet`: args.margin: invalid type: string "x", expected f64``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.key())]
pub struct ArgsError {
    /// The registry name whose arguments were read.
    pub name: String,
    /// Path of the offending value inside `args` (`n_positive`, `mlp_features[1]`); empty for
    /// the arguments as a whole. A nested registry section (a criterion's `miner`) is one step of
    /// the path; its own error, with its own path, is in the message.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl ArgsError {
    /// `args` or `args.<path>`: where the error is, relative to the section.
    pub fn key(&self) -> String {
        if self.path.is_empty() {
            "args".to_string()
        } else {
            format!("args.{}", self.path)
        }
    }

    /// The error as a registry config's `TryFrom<Named>` reports it, naming its registry
    /// `kind`: ``{kind} `{name}`: args.<path>: <message>``. Serde carries it as text;
    /// [`split_registry_error`] reads the path back.
    pub fn in_registry(&self, kind: &str) -> String {
        format!("{kind} `{}`: {self}", self.name)
    }
}

/// The key path inside a section and the rest of an error written by
/// [`ArgsError::in_registry`], through nested sections: ``criterion `t`: args.miner: miner `m`:
/// args.n: too small`` gives `args.miner.args.n` and ``too small (criterion `t`, miner `m`)``.
/// `None` for any other text.
pub fn split_registry_error(text: &str) -> Option<(String, String)> {
    let (mut path, mut names) = (Vec::new(), Vec::new());
    let mut rest = text;
    while let Some((head, tail)) = parse_registry_prefix(rest) {
        names.push(head);
        let (key, message) = match tail.split_once(": ") {
            Some((key, message)) if key == "args" || key.starts_with("args.") => (key, message),
            _ => break,
        };
        path.push(key.to_string());
        rest = message;
    }
    if path.is_empty() {
        return None;
    }
    Some((path.join("."), format!("{rest} ({})", names.join(", "))))
}

/// ``{kind} `{name}`: `` at the start of `text`: the prefix and what follows it.
fn parse_registry_prefix(text: &str) -> Option<(&str, &str)> {
    let (kind, after) = text.split_once(" `")?;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let (name, after) = after.split_once("`: ")?;
    Some((&text[..kind.len() + name.len() + 3], after))
}

/// Deserialises a section's `args` as a JSON value: mapping keys become strings (YAML allows
/// integer and boolean keys), non-finite numbers are errors. [`Named::args`] is read this way;
/// use it for other types that carry registry arguments (`#[serde(deserialize_with = …)]`).
pub fn deserialize_args<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    ArgsValue.deserialize(d)
}

/// A JSON value from any self-describing format (see [`deserialize_args`]).
struct ArgsValue;

impl<'de> DeserializeSeed<'de> for ArgsValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for ArgsValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(i), _) => Ok(Value::Number(i.into())),
            (_, Ok(u)) => Ok(Value::Number(u.into())),
            _ => Err(E::custom(format!("integer {v} is out of range"))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v)
            .map(|u| Value::Number(u.into()))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the number {v} is not supported here (not finite)")))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(ArgsValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(ArgsKey)? {
            let v = map.next_value_seed(ArgsValue)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key inside `args`, as a string.
struct ArgsKey;

impl<'de> DeserializeSeed<'de> for ArgsKey {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for ArgsKey {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, integer or boolean key")
    }

    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i128<E>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u128<E>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_read_back_as_key_paths() {
        let inner = ArgsError {
            name: "n_hard_triplets".into(),
            path: "n_positive".into(),
            message: "must be at least 1".into(),
        };
        let outer = ArgsError {
            name: "triplet_with_miner".into(),
            path: "miner".into(),
            message: inner.in_registry("miner"),
        };
        let (key, rest) = split_registry_error(&outer.in_registry("criterion")).unwrap();
        assert_eq!(key, "args.miner.args.n_positive");
        assert_eq!(
            rest,
            "must be at least 1 (criterion `triplet_with_miner`, miner `n_hard_triplets`)"
        );
        assert_eq!(
            split_registry_error("unknown miner `x`: expected one of a, b"),
            None
        );
        assert_eq!(split_registry_error("invalid type: string \"big\""), None);
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        k: usize,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        #[serde(default)]
        a: f64,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<u32>,
    }

    fn named(json: &str) -> Named {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn absent_and_null_args_read_as_empty_mappings() {
        for text in [r#"{"name": "x"}"#, r#"{"name": "x", "args": null}"#] {
            let n = named(text);
            assert_eq!(n.args, Value::Null);
            assert_eq!(n.args_object(), serde_json::json!({}));
            let a: Args = n.args_as().unwrap();
            assert_eq!(a.a, 0.0);
            assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"name":"x"}"#);
        }
        let n = named(r#"{"name": "x", "args": {"a": 2}}"#);
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"name":"x","args":{"a":2}}"#
        );
        assert!(serde_json::from_str::<Named>(r#"{"name": "x", "arg": {}}"#).is_err());
    }

    #[test]
    fn args_errors_carry_the_path_inside_args() {
        let e = named(r#"{"name": "x", "args": {"inner": {"k": -1}}}"#)
            .args_as::<Args>()
            .unwrap_err();
        assert_eq!((e.name.as_str(), e.path.as_str()), ("x", "inner.k"));
        assert!(
            e.to_string().starts_with("args.inner.k: invalid value"),
            "{e}"
        );
        let e = named(r#"{"name": "x", "args": {"list": [1, "b"]}}"#)
            .args_as::<Args>()
            .unwrap_err();
        assert_eq!(e.key(), "args.list[1]");
        let e = named(r#"{"name": "x", "args": {"b": 1}}"#)
            .args_as::<Args>()
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `b`"), "{e}");
        let e = named(r#"{"name": "x", "args": "s"}"#)
            .args_as::<Args>()
            .unwrap_err();
        assert!(e.to_string().starts_with("args: invalid type"), "{e}");
    }

    #[test]
    fn new_drops_empty_args() {
        assert_eq!(Named::new("x", ()).args, Value::Null);
        assert_eq!(Named::new("x", Map::new()).args, Value::Null);
        assert_eq!(
            Named::new("x", serde_json::json!({"a": 1})).args,
            serde_json::json!({"a": 1})
        );
    }

    /// The key and number handling of [`deserialize_args`], through a self-describing format
    /// with integer keys and non-finite numbers (serde's own value deserializers).
    #[test]
    fn integer_keys_become_strings_and_non_finite_numbers_are_errors() {
        use serde::de::value::{Error, MapDeserializer};
        let map = MapDeserializer::<_, Error>::new([(0i64, "a"), (7, "b")].into_iter());
        assert_eq!(
            ArgsValue.deserialize(map).unwrap(),
            serde_json::json!({"0": "a", "7": "b"})
        );
        let map = MapDeserializer::<_, Error>::new([("m", f64::INFINITY)].into_iter());
        let e = ArgsValue.deserialize(map).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
    }
}
