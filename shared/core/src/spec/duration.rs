//! Serde helpers for durations written by people: `600` (seconds, `1.5` too) or a
//! humantime string (`"10m"`, `"1h 30m"`, `"500ms"`). They serialize as
//! humantime strings, which read back exactly, so stored JSON round-trips.
//!
//! Every deserializer here is a hand-written visitor rather than an untagged
//! enum: untagged enums replace the real error ("unknown time unit") with a
//! vague "did not match any variant", and lose its location.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serializer};

use super::RetryPolicy;

/// Parses a duration as the YAML format reads one from a string: seconds
/// (`600`) or humantime (`10m`, `30d`), with an error that quotes the input
/// (for flags and API fields, e.g. `ork gc --older-than`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

fn parse<E: de::Error>(s: &str) -> Result<Duration, E> {
    parse_duration(s).map_err(E::custom)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a duration: seconds (600) or a string like "10m", "1h 30m", "500ms""#)
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format_args!("invalid duration {secs}: it is negative")))
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(secs)
            .map_err(|e| E::custom(format_args!("invalid duration {secs}: {e}")))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
        parse(s)
    }
}

/// `#[serde(with = "duration::required")]` for `Duration` fields.
pub mod required {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// `#[serde(with = "duration::option")]` for `Option<Duration>` fields.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::required::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct OptionVisitor;
        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                DurationVisitor.expecting(f)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::required::deserialize(d).map(Some)
            }
        }
        d.deserialize_option(OptionVisitor)
    }
}

/// A `Duration` deserialized with [`required::deserialize`], for use inside visitors.
struct Human(Duration);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        required::deserialize(d).map(Human)
    }
}

/// What `retries:` may be written as: a bare count, or a map with `count`
/// and optional `backoff` / `max_backoff` (defaults: 1s and 5m).
pub struct RetryRepr(RetryPolicy);

impl From<RetryRepr> for RetryPolicy {
    fn from(r: RetryRepr) -> Self {
        r.0
    }
}

impl<'de> Deserialize<'de> for RetryRepr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RetryVisitor).map(RetryRepr)
    }
}

/// Keys of the long form; derived so an unknown key is reported at its own line.
#[derive(Deserialize, PartialEq)]
#[serde(field_identifier, rename_all = "snake_case")]
enum RetryField {
    Count,
    Backoff,
    MaxBackoff,
}

struct RetryVisitor;

impl RetryVisitor {
    fn count<E: de::Error>(n: u64) -> Result<RetryPolicy, E> {
        let count = u32::try_from(n)
            .map_err(|_| E::custom(format_args!("retry count {n} is too large")))?;
        Ok(RetryPolicy {
            count,
            ..RetryPolicy::default()
        })
    }
}

impl<'de> Visitor<'de> for RetryVisitor {
    type Value = RetryPolicy;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a retry count (3) or a map like {count: 3, backoff: 10s, max_backoff: 5m}")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<RetryPolicy, E> {
        Self::count(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<RetryPolicy, E> {
        let n =
            u64::try_from(n).map_err(|_| E::custom(format_args!("retry count {n} is negative")))?;
        Self::count(n)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RetryPolicy, A::Error> {
        let mut count: Option<u32> = None;
        let mut policy = RetryPolicy::default();
        let mut seen = Vec::new();
        while let Some(key) = map.next_key::<RetryField>()? {
            match key {
                RetryField::Count => count = Some(map.next_value()?),
                RetryField::Backoff => policy.backoff = map.next_value::<Human>()?.0,
                RetryField::MaxBackoff => policy.max_backoff = map.next_value::<Human>()?.0,
            }
            if seen.contains(&key) {
                return Err(de::Error::custom("a key is given twice"));
            }
            seen.push(key);
        }
        policy.count = count.ok_or_else(|| de::Error::missing_field("count"))?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::RetryPolicy;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(default, with = "super::option")]
        d: Option<Duration>,
    }

    fn t(yaml: &str) -> Result<T, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_seconds_and_humantime() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(t("d: 600").unwrap().d, secs(600));
        assert_eq!(t("d: 10m").unwrap().d, secs(600));
        assert_eq!(t("d: 1h 30m").unwrap().d, secs(5400));
        assert_eq!(t("d: '500ms'").unwrap().d, Some(Duration::from_millis(500)));
        assert_eq!(t("d: ~").unwrap().d, None);
        assert_eq!(t("{}").unwrap().d, None);
    }

    #[test]
    fn errors_quote_the_input() {
        let e = t("d: 10 parsecs").unwrap_err();
        assert!(
            e.starts_with(r#"d: invalid duration "10 parsecs": unknown time unit"#),
            "{e}"
        );
        assert!(t("d: [1]").unwrap_err().contains(r#"a string like "10m""#));
    }

    #[test]
    fn serializes_as_humantime() {
        let v = T {
            d: Some(Duration::from_millis(90_250)),
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"d":"1m 30s 250ms"}"#
        );
        let p = RetryPolicy {
            count: 2,
            ..RetryPolicy::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"count":2,"backoff":"1s","max_backoff":"5m"}"#);
        assert_eq!(serde_json::from_str::<RetryPolicy>(&json).unwrap(), p);
    }
}
