//! Config flattening as OML does it (`oml.utils.misc.flatten_dict`), with values rendered as
//! Python's `str()` renders them, so MLflow params read as they do for OML runs.

use serde_json::Value;

/// Flattens nested objects into `(key, value)` pairs, joining keys with `sep`
/// (OML uses `"/"` for MLflow and `"|"` for Neptune).
///
/// As in OML's `flatten_dict`: only objects are descended into (an empty object disappears);
/// arrays and scalars are values. Values are rendered like Python's `str()`: strings as they
/// are, `true` → `True`, `null` → `None`, floats as `repr(float)` (`1e-05`, `0.1`, `3.0`),
/// arrays as Python lists (`['a', 1]`). A root that is not an object yields no pairs. Pairs
/// come in the order of the JSON map's keys.
///
/// ```
/// let cfg = serde_json::json!({"optimizer": {"name": "adam", "args": {"lr": 1e-5}}, "tags": ["a"]});
/// let flat = oml_logging::flatten_config(&cfg, "/");
/// let flat: std::collections::BTreeMap<_, _> = flat.into_iter().collect();
/// assert_eq!(flat["optimizer/name"], "adam");
/// assert_eq!(flat["optimizer/args/lr"], "1e-05");
/// assert_eq!(flat["tags"], "['a']");
/// ```
pub fn flatten_config(config: &Value, sep: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(map) = config {
        for (k, v) in map {
            walk(k.clone(), v, sep, &mut out);
        }
    }
    out
}

fn walk(key: String, v: &Value, sep: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                walk(format!("{key}{sep}{k}"), child, sep, out);
            }
        }
        other => out.push((key, python_str(other))),
    }
}

/// Python's `str(value)` for a JSON value loaded by `yaml`/`json` in Python.
pub fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                python_float_repr(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => python_str_repr(s),
        Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_str_repr(k), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in `-4..16`, otherwise `d.ddde±XX`.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digit count; among strings of that length
    // Python takes the one nearest the exact value (ties to even), which exact-precision
    // formatting gives, e.g. 951875491618047.25 -> "951875491618047.2", not ".3".
    let shortest = format!("{:e}", f.abs());
    let n = shortest
        .split('e')
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .count()
        .max(1);
    let nearest = format!("{:.*e}", n - 1, f.abs());
    let sci = if nearest.parse::<f64>() == Ok(f.abs()) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let (int_part, frac) = if digits.len() > int_len {
                (digits[..int_len].to_string(), digits[int_len..].to_string())
            } else {
                (
                    format!("{digits}{}", "0".repeat(int_len - digits.len())),
                    "0".to_string(),
                )
            };
            format!("{sign}{int_part}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let rest = &digits[1..];
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{}{frac}e{esign}{:02}", &digits[..1], exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected strings printed by CPython 3.11: `repr(x)` / `str(x)`.
    #[test]
    fn floats_render_as_python() {
        let cases = [
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.1, "0.1"),
            (3.0, "3.0"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (-2.5e22, "-2.5e+22"),
            (0.3, "0.3"),
            (2.0 / 3.0, "0.6666666666666666"),
            (1e100, "1e+100"),
            // A tie: exactly halfway between ...047.2 and ...047.3.
            (951_875_491_618_047.0 + 0.25, "951875491618047.2"),
        ];
        for (x, py) in cases {
            assert_eq!(python_float_repr(x), py, "{x}");
        }
    }

    /// Finite doubles spread over all exponents (an LCG over the bit patterns).
    fn sample_doubles(n: usize) -> Vec<f64> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let x = f64::from_bits(state);
            if x.is_finite() && x != 0.0 {
                out.push(x);
                // Also values near the fixed/scientific switch and with few digits.
                out.push((x.abs().log2().fract() * 1e4).round() / 16.0);
            }
        }
        out
    }

    #[test]
    fn floats_match_a_live_python_when_present() {
        use std::io::Write;
        let xs = sample_doubles(3000);
        let input: String = xs.iter().map(|x| format!("{x:e}\n")).collect();
        let child = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys\nfor l in sys.stdin: print(repr(float(l)))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            println!("SKIP floats_match_a_live_python_when_present: python3 not found");
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), xs.len());
        for (x, py) in xs.iter().zip(lines) {
            assert_eq!(python_float_repr(*x), py, "bits {:#x}", x.to_bits());
        }
    }

    #[test]
    fn flattens_like_oml() {
        let cfg = json!({
            "a": {"b": {"c": 1}, "d": [1, "x", null, true, 0.5], "empty": {}},
            "e": null,
            "f": "it's",
            "g": {"h": false}
        });
        let flat = flatten_config(&cfg, "/");
        // Python: flatten_dict(cfg, sep="/") then str(v) for each value.
        let expected = vec![
            ("a/b/c", "1"),
            ("a/d", "[1, 'x', None, True, 0.5]"),
            ("e", "None"),
            ("f", "it's"),
            ("g/h", "False"),
        ];
        let got: Vec<(&str, &str)> = flat.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);
        assert_eq!(
            python_repr(&json!(["it's", "a\"b'c", {"k": 1}])),
            r#"["it's", 'a"b\'c', {'k': 1}]"#
        );
        assert!(flatten_config(&json!([1, 2]), "/").is_empty());
    }
}
