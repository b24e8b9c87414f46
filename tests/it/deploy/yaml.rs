//! Just enough YAML to read the deploy files: block mappings and sequences, single-line flow mappings and
//! sequences, plain, single- and double-quoted scalars, comments and `---` between documents. Scalars stay
//! strings (`8650` is `"8650"`). Anything else (anchors, block scalars, multi-line flow collections, tabs) is
//! refused with the line, so a deploy file that leaves this subset fails its test instead of being misread.

use serde_json::{Map, Value};

/// One line of content: its indentation and its text without the comment.
struct Line {
    number: usize,
    indent: usize,
    text: String,
}

/// Every document of `text`.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = vec![Vec::new()];
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.trim_end() == "---" {
            docs.push(Vec::new());
            continue;
        }
        let content = strip_comment(raw);
        if content.trim().is_empty() {
            continue;
        }
        if content.starts_with('\t') {
            return Err(format!("line {number}: tab indentation"));
        }
        let indent = content.len() - content.trim_start().len();
        docs.last_mut().expect("one document at least").push(Line {
            number,
            indent,
            text: content.trim().to_owned(),
        });
    }
    docs.into_iter()
        .filter(|lines| !lines.is_empty())
        .map(|mut lines| {
            let mut at = 0;
            let indent = lines[0].indent;
            let value = block(&mut lines, &mut at, indent)?;
            match lines.get(at) {
                Some(line) => Err(format!("line {}: unexpected indentation", line.number)),
                None => Ok(value),
            }
        })
        .collect()
}

/// The line without its comment (a `#` at its start or after a space, outside quotes), right-trimmed.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return line[..at].trim_end(),
            None => {}
        }
        previous = c;
    }
    line.trim_end()
}

/// The node whose lines start at `lines[*at]`, indented by `indent`.
fn block(lines: &mut Vec<Line>, at: &mut usize, indent: usize) -> Result<Value, String> {
    let first = &lines[*at];
    if first.text == "-" || first.text.starts_with("- ") {
        let mut items = Vec::new();
        while let Some(line) = lines.get(*at) {
            if line.indent != indent || !(line.text == "-" || line.text.starts_with("- ")) {
                break;
            }
            let rest = line.text[1..].trim_start().to_owned();
            if rest.is_empty() {
                *at += 1;
                items.push(child(lines, at, indent)?);
            } else {
                // `- key: value` starts a node two columns in: read the item as if it stood there.
                let line = &mut lines[*at];
                line.indent = indent + 2;
                line.text = rest;
                items.push(block(lines, at, indent + 2)?);
            }
        }
        return Ok(Value::Array(items));
    }
    if split_key(&first.text).is_none() {
        let value = inline(&first.text, first.number)?;
        *at += 1;
        return Ok(value);
    }
    let mut map = Map::new();
    while let Some(line) = lines.get(*at) {
        if line.indent != indent {
            if line.indent > indent {
                return Err(format!("line {}: unexpected indentation", line.number));
            }
            break;
        }
        let number = line.number;
        let Some((key, rest)) = split_key(&line.text) else {
            return Err(format!("line {number}: expected `key: value`"));
        };
        let key = unquote(&key, number)?;
        *at += 1;
        let value = if rest.is_empty() {
            match lines.get(*at) {
                // A sequence may sit at its key's own indentation.
                Some(next) if next.indent == indent && next.text.starts_with('-') => {
                    block(lines, at, indent)?
                }
                _ => child(lines, at, indent)?,
            }
        } else {
            inline(&rest, number)?
        };
        if map.insert(key.clone(), value).is_some() {
            return Err(format!("line {number}: duplicate key {key:?}"));
        }
    }
    Ok(Value::Object(map))
}

/// The node indented deeper than `indent` at `lines[*at]`, or null when there is none.
fn child(lines: &mut Vec<Line>, at: &mut usize, indent: usize) -> Result<Value, String> {
    match lines.get(*at) {
        Some(next) if next.indent > indent => {
            let indent = next.indent;
            block(lines, at, indent)
        }
        _ => Ok(Value::Null),
    }
}

/// `key: rest` split at the first `:` followed by a space or the end, outside quotes and brackets.
fn split_key(text: &str) -> Option<(String, String)> {
    if text.starts_with(['{', '[']) {
        return None;
    }
    let at = top_level(text, ':', |after| {
        after.is_empty() || after.starts_with(' ')
    })?;
    Some((
        text[..at].trim().to_owned(),
        text[at + 1..].trim().to_owned(),
    ))
}

/// The first `sep` at depth 0 outside quotes for which `accept(what follows)` holds.
fn top_level(text: &str, sep: char, accept: impl Fn(&str) -> bool) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '{' | '[' => depth += 1,
                '}' | ']' => depth = depth.saturating_sub(1),
                c if c == sep && depth == 0 && accept(&text[at + c.len_utf8()..]) => {
                    return Some(at);
                }
                _ => {}
            },
        }
    }
    None
}

/// A value written on one line: a flow mapping or sequence, or a scalar.
fn inline(text: &str, number: usize) -> Result<Value, String> {
    let text = text.trim();
    if text.starts_with(['|', '>', '&', '*', '!']) {
        return Err(format!(
            "line {number}: {text:?} is outside the YAML this test reads"
        ));
    }
    if let Some(inner) = text.strip_prefix('{') {
        let inner = inner
            .strip_suffix('}')
            .ok_or_else(|| format!("line {number}: a flow mapping must close on its line"))?;
        let mut map = Map::new();
        for item in items(inner) {
            let (key, value) = split_key(&item)
                .ok_or_else(|| format!("line {number}: expected `key: value` in {text:?}"))?;
            map.insert(unquote(&key, number)?, inline(&value, number)?);
        }
        return Ok(Value::Object(map));
    }
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("line {number}: a flow sequence must close on its line"))?;
        return items(inner)
            .iter()
            .map(|item| inline(item, number))
            .collect::<Result<_, _>>()
            .map(Value::Array);
    }
    if text.is_empty() || text == "~" || text == "null" {
        return Ok(Value::Null);
    }
    unquote(text, number).map(Value::String)
}

/// The comma-separated items of a flow collection's inside.
fn items(inner: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = inner;
    while let Some(at) = top_level(rest, ',', |_| true) {
        out.push(rest[..at].trim().to_owned());
        rest = &rest[at + 1..];
    }
    if !rest.trim().is_empty() {
        out.push(rest.trim().to_owned());
    }
    out
}

/// A scalar's value: quotes removed (`\"`, `\\` and `\n` read in double quotes, `''` in single quotes).
fn unquote(text: &str, number: usize) -> Result<String, String> {
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("line {number}: unterminated string {text:?}"))?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(c @ ('"' | '\\')) => out.push(c),
                    other => return Err(format!("line {number}: escape \\{other:?} in {text:?}")),
                }
            } else {
                out.push(c);
            }
        }
        return Ok(out);
    }
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| format!("line {number}: unterminated string {text:?}"))?;
        return Ok(inner.replace("''", "'"));
    }
    Ok(text.to_owned())
}

#[test]
fn reads_the_subset_the_deploy_files_use() {
    let text = "# c\na: 1\nb:\n  - x\n  - {k: v, n: [\"1\", '2']}  # c\n  - m: 1\n    n: 'it''s'\nc:\n- q\nd: \"u # v\"\n---\ne: {}\n";
    let docs = documents(text).unwrap();
    assert_eq!(
        docs[0],
        serde_json::json!({
            "a": "1",
            "b": ["x", {"k": "v", "n": ["1", "2"]}, {"m": "1", "n": "it's"}],
            "c": ["q"],
            "d": "u # v"
        })
    );
    assert_eq!(docs[1], serde_json::json!({"e": {}}));
    assert!(documents("a: |\n  x\n").is_err());
    assert!(documents("a: [1,\n  2]\n").is_err());
    assert!(documents("a: 1\na: 2\n").is_err());
}
