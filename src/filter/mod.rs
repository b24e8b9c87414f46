//! Trigger filters: jq (through jaq) or JMESPath, behind one [`Filter`] type (pure).
//!
//! A filter runs on an event envelope and yields the payloads to push, in order; no output means the event is
//! not pushed for this trigger. jq keeps BaaS semantics (every output is pushed; both `.a.[0]` and `.a[0]` are
//! accepted). JMESPath yields at most one payload: `null`, `false`, an empty array or an empty object mean "not
//! pushed", `true` pushes the envelope unchanged, anything else is pushed as is (an empty string too: the spec
//! names only those four as "not pushed").

use std::fmt;
use std::sync::OnceLock;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use serde::Deserialize as _;
use serde_json::Value;

/// The language a filter is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// jq, the language of BaaS filters (the default, so BaaS filters move over unchanged).
    #[default]
    Jq,
    /// JMESPath, the language named in the design.
    Jmespath,
}

impl Language {
    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Jq => "jq",
            Language::Jmespath => "jmespath",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{language} filter does not compile: {message}")]
pub struct CompileError {
    /// Which parser refused it, so the operator knows which manual to open.
    pub language: Language,
    /// What was expected and where (1-based line and column inside the filter text).
    pub message: String,
}

/// A filter that failed while running on an event: a configuration error for the trigger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{language} filter failed at run time: {message}")]
pub struct FilterError {
    /// Which language's run time failed.
    pub language: Language,
    /// The interpreter's own message.
    pub message: String,
}

/// A compiled filter: compile once at configuration load, apply to every event (Send + Sync).
pub struct Filter {
    /// Kept so the filter can be shown back to the operator (admin API, logs).
    source: String,
    compiled: Compiled,
}

enum Compiled {
    Jq(jaq_core::compile::Filter<jaq_core::Native<JqData>>),
    Jmespath(jmespath::Expression<'static>),
}

type JqData = data::JustLut<Val>;

/// The most payloads one event may yield: past it the filter is taken to be endless (`repeat`, `range(infinite)`)
/// and fails, instead of filling memory.
pub const MAX_OUTPUTS: usize = 10_000;

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("language", &self.language())
            .field("source", &self.source)
            .finish()
    }
}

impl Filter {
    /// Compiles `source` in `language`.
    pub fn compile(language: Language, source: &str) -> Result<Filter, CompileError> {
        let compiled = match language {
            Language::Jq => Compiled::Jq(compile_jq(source)?),
            Language::Jmespath => {
                Compiled::Jmespath(jmespath::compile(source).map_err(|e| CompileError {
                    language,
                    message: format!(
                        "{} at line {}, column {}",
                        e.reason,
                        e.line + 1,
                        e.column + 1
                    ),
                })?)
            }
        };
        Ok(Filter {
            source: source.to_owned(),
            compiled,
        })
    }

    /// The language this filter is written in.
    pub fn language(&self) -> Language {
        match self.compiled {
            Compiled::Jq(_) => Language::Jq,
            Compiled::Jmespath(_) => Language::Jmespath,
        }
    }

    /// The filter's text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the filter on an event envelope and returns the payloads to push, in order.
    pub fn apply(&self, envelope: &Value) -> Result<Vec<Value>, FilterError> {
        match &self.compiled {
            Compiled::Jq(filter) => apply_jq(filter, to_jq(envelope)?),
            Compiled::Jmespath(expression) => {
                apply_jmespath(expression, &to_jmespath(envelope)?, envelope)
            }
        }
    }

    /// Runs the filter on a prepared envelope: the conversion to the language's own values is shared by every
    /// filter that runs on the same event.
    pub fn apply_to(&self, envelope: &Envelope) -> Result<Vec<Value>, FilterError> {
        match &self.compiled {
            Compiled::Jq(filter) => apply_jq(filter, envelope.jq()?.clone()),
            Compiled::Jmespath(expression) => {
                apply_jmespath(expression, envelope.jmespath()?, envelope.json())
            }
        }
    }
}

/// An event envelope ready for filtering (Send + Sync, share it with `Arc`): its conversions to jq and JMESPath
/// values happen at most once per event, however many triggers filter it.
pub struct Envelope {
    /// The envelope itself: what a filter without a filter (or `true` in JMESPath) pushes.
    json: Value,
    jq: OnceLock<Result<Val, String>>,
    jmespath: OnceLock<Result<jmespath::Rcvar, String>>,
}

impl Envelope {
    /// Wraps an envelope; nothing is converted until a filter needs it.
    pub fn new(json: Value) -> Self {
        Envelope {
            json,
            jq: OnceLock::new(),
            jmespath: OnceLock::new(),
        }
    }

    /// The envelope as JSON.
    pub fn json(&self) -> &Value {
        &self.json
    }

    fn jq(&self) -> Result<&Val, FilterError> {
        self.jq
            .get_or_init(|| to_jq(&self.json).map_err(|e| e.message))
            .as_ref()
            .map_err(|message| FilterError {
                language: Language::Jq,
                message: message.clone(),
            })
    }

    fn jmespath(&self) -> Result<&jmespath::Rcvar, FilterError> {
        self.jmespath
            .get_or_init(|| to_jmespath(&self.json).map_err(|e| e.message))
            .as_ref()
            .map_err(|message| FilterError {
                language: Language::Jmespath,
                message: message.clone(),
            })
    }
}

fn to_jq(json: &Value) -> Result<Val, FilterError> {
    Val::deserialize(json).map_err(|e| FilterError {
        language: Language::Jq,
        message: e.to_string(),
    })
}

fn to_jmespath(json: &Value) -> Result<jmespath::Rcvar, FilterError> {
    jmespath::Variable::try_from(json)
        .map(jmespath::Rcvar::new)
        .map_err(|e| FilterError {
            language: Language::Jmespath,
            message: e.to_string(),
        })
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Envelope").field(&self.json).finish()
    }
}

fn compile_jq(
    source: &str,
) -> Result<jaq_core::compile::Filter<jaq_core::Native<JqData>>, CompileError> {
    let error = |message: String| CompileError {
        language: Language::Jq,
        message,
    };
    if let Some(name) = recursive_definition(source) {
        return Err(error(format!(
            "`def {name}` calls itself: recursive definitions are refused in filters, because one that recurses \
             without end overflows the stack and would take the whole daemon down (jq's own functions such as \
             `recurse`, `until`, `repeat` and `range` are fine)"
        )));
    }
    let program = File {
        code: source,
        path: (),
    };
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader.load(&arena, program).map_err(|errors| {
        let messages: Vec<String> = errors
            .into_iter()
            .flat_map(|(_file, error)| load_error_messages(source, error))
            .collect();
        error(messages.join("; "))
    })?;
    jaq_core::Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| {
            let messages: Vec<String> = errors
                .into_iter()
                .flat_map(|(_file, undefined)| undefined)
                .map(|(name, kind)| {
                    format!(
                        "undefined {} `{name}` at {}",
                        kind.as_str(),
                        position(source, name)
                    )
                })
                .collect();
            error(messages.join("; "))
        })
}

/// The name of a user-defined function that can call itself, directly or through other user definitions.
///
/// jaq evaluates non-tail recursion on the native stack: `def f: 1 + f; f` compiles, then overflows the stack on
/// the first event and aborts the process, and check-config cannot tell. Functions are matched by name, whatever
/// their scope or arity, which can only refuse more than needed. A program that does not parse returns `None`: the
/// loader then reports the syntax error.
fn recursive_definition(source: &str) -> Option<String> {
    use jaq_core::load::parse::Term;

    let term: Term<&str> = jaq_core::load::parse(source, |p| p.term())?;
    let mut graph: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut top_level_calls = Vec::new();
    collect_calls(&term, &mut top_level_calls, &mut graph);

    let defined: std::collections::HashSet<&str> = graph.iter().map(|(name, _)| *name).collect();
    let callees = |name: &str| -> Vec<&str> {
        graph
            .iter()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, calls)| calls.iter().copied())
            .filter(|callee| defined.contains(callee))
            .collect()
    };
    for (start, _) in &graph {
        let mut seen = std::collections::HashSet::new();
        let mut stack = callees(start);
        while let Some(name) = stack.pop() {
            if name == *start {
                return Some((*start).to_owned());
            }
            if seen.insert(name) {
                stack.extend(callees(name));
            }
        }
    }
    None
}

/// Adds the functions `term` calls to `calls`, and every definition inside it to `graph` with its own calls.
fn collect_calls<'s>(
    term: &jaq_core::load::parse::Term<&'s str>,
    calls: &mut Vec<&'s str>,
    graph: &mut Vec<(&'s str, Vec<&'s str>)>,
) {
    use jaq_core::load::lex::StrPart;
    use jaq_core::load::parse::{BinaryOp, Pattern, Term};
    use jaq_core::path::Part;

    fn pattern<'s>(
        p: &Pattern<&'s str>,
        calls: &mut Vec<&'s str>,
        graph: &mut Vec<(&'s str, Vec<&'s str>)>,
    ) {
        match p {
            Pattern::Var(_) => {}
            Pattern::Arr(items) => items.iter().for_each(|p| pattern(p, calls, graph)),
            Pattern::Obj(entries) => {
                for (key, value) in entries {
                    collect_calls(key, calls, graph);
                    pattern(value, calls, graph);
                }
            }
        }
    }

    let mut each = |t: &Term<&'s str>| collect_calls(t, calls, graph);
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
        Term::Str(_, parts) => {
            for part in parts {
                if let StrPart::Term(t) = part {
                    each(t);
                }
            }
        }
        Term::Arr(inner) => inner.iter().for_each(|t| each(t)),
        Term::Obj(entries) => {
            for (key, value) in entries {
                each(key);
                value.iter().for_each(&mut each);
            }
        }
        Term::Neg(t) | Term::Label(_, t) => each(t),
        Term::BinOp(l, op, r) => {
            each(l);
            each(r);
            if let BinaryOp::Pipe(Some(p)) = op {
                pattern(p, calls, graph);
            }
        }
        Term::Fold(_, xs, p, args) => {
            each(xs);
            args.iter().for_each(&mut each);
            pattern(p, calls, graph);
        }
        Term::TryCatch(body, catch) => {
            each(body);
            catch.iter().for_each(|t| each(t));
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                each(cond);
                each(then);
            }
            otherwise.iter().for_each(|t| each(t));
        }
        Term::Def(defs, rest) => {
            for def in defs {
                let mut own = Vec::new();
                collect_calls(&def.body, &mut own, graph);
                graph.push((def.name, own));
            }
            collect_calls(rest, calls, graph);
        }
        Term::Call(name, args) => {
            calls.push(name);
            for arg in args {
                collect_calls(arg, calls, graph);
            }
        }
        Term::Path(t, path) => {
            each(t);
            for (part, _) in &path.0 {
                match part {
                    Part::Index(i) => each(i),
                    Part::Range(from, to) => {
                        from.iter().for_each(&mut each);
                        to.iter().for_each(&mut each);
                    }
                }
            }
        }
    }
}

fn load_error_messages(source: &str, error: jaq_core::load::Error<&str>) -> Vec<String> {
    use jaq_core::load::Error;
    match error {
        Error::Io(errors) => errors
            .into_iter()
            .map(|(path, message)| format!("cannot load module `{path}`: {message}"))
            .collect(),
        Error::Lex(errors) => errors
            .into_iter()
            .map(|(expected, found)| {
                format!(
                    "expected {} at {}",
                    lex_expectation(&expected),
                    position(source, found)
                )
            })
            .collect(),
        Error::Parse(errors) => errors
            .into_iter()
            .map(|(expected, found)| {
                let found_text = if found.is_empty() {
                    "end of input".to_owned()
                } else {
                    format!("`{}`", found.chars().take(20).collect::<String>())
                };
                format!(
                    "expected {}, found {found_text} at {}",
                    expected.as_str(),
                    position(source, found)
                )
            })
            .collect(),
    }
}

fn lex_expectation(expected: &jaq_core::load::lex::Expect<&str>) -> &'static str {
    use jaq_core::load::lex::Expect;
    // `Expect::as_str` panics on delimiters it does not name, so name them here.
    match expected {
        Expect::Delim("(") => "closing parenthesis",
        Expect::Delim("[") => "closing bracket",
        Expect::Delim("{") => "closing brace",
        Expect::Delim("\"") => "closing quote",
        Expect::Delim(_) => "closing delimiter",
        Expect::Digit => "digit",
        Expect::Ident => "identifier",
        Expect::Escape => "string escape sequence",
        Expect::Unicode => "4-digit hexadecimal code point",
        Expect::Token => "token",
        _ => "something else",
    }
}

/// `line L, column C` (1-based) of `part`, a sub-slice of `source` handed back by the jq parser.
fn position(source: &str, part: &str) -> String {
    let start = source.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    let offset = if at >= start && at <= start + source.len() {
        at - start
    } else {
        source.len()
    };
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    while !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn apply_jq(
    filter: &jaq_core::compile::Filter<jaq_core::Native<JqData>>,
    input: Val,
) -> Result<Vec<Value>, FilterError> {
    let error = |message: String| FilterError {
        language: Language::Jq,
        message,
    };
    let ctx = Ctx::<JqData>::new(&filter.lut, Vars::new([]));
    let mut payloads = Vec::new();
    for output in filter.id.run((ctx, input)).map(unwrap_valr) {
        if payloads.len() == MAX_OUTPUTS {
            return Err(error(format!(
                "the filter yields more than {MAX_OUTPUTS} outputs for one event (an endless generator such as `repeat`?)"
            )));
        }
        match output {
            Ok(value) => payloads.push(val_to_json(&value).map_err(error)?),
            Err(e) => {
                return Err(error(match e.into_val() {
                    // `error("text")` reads better without JSON quotes.
                    Val::TStr(text) => String::from_utf8_lossy(&text).into_owned(),
                    other => other.to_string(),
                }));
            }
        }
    }
    Ok(payloads)
}

/// jaq values have no `Serialize`: convert by hand (objects keep their key order).
fn val_to_json(value: &Val) -> Result<Value, String> {
    Ok(match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number_to_json(&n.to_string())?,
        Val::BStr(bytes) | Val::TStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(items.iter().map(val_to_json).collect::<Result<_, _>>()?),
        Val::Obj(map) => {
            let mut object = serde_json::Map::with_capacity(map.len());
            for (key, item) in map.iter() {
                let key = match key {
                    Val::TStr(bytes) | Val::BStr(bytes) => {
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                    other => return Err(format!("object key {other} is not a string")),
                };
                object.insert(key, val_to_json(item)?);
            }
            Value::Object(object)
        }
    })
}

fn number_to_json(text: &str) -> Result<Value, String> {
    match text {
        // jq prints NaN as null; infinities have no JSON form either.
        "NaN" => Ok(Value::Null),
        "Infinity" | "-Infinity" => Err(format!("the number {text} has no JSON representation")),
        _ => serde_json::from_str::<serde_json::Number>(text)
            .map(Value::Number)
            .or_else(|_| {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("the number {text} has no JSON representation"))
            }),
    }
}

fn apply_jmespath(
    expression: &jmespath::Expression<'static>,
    input: &jmespath::Rcvar,
    envelope: &Value,
) -> Result<Vec<Value>, FilterError> {
    let error = |message: String| FilterError {
        language: Language::Jmespath,
        message,
    };
    let result = expression.search(input).map_err(|e| error(e.to_string()))?;
    let value = serde_json::to_value(&*result).map_err(|e| error(e.to_string()))?;
    Ok(match value {
        Value::Null | Value::Bool(false) => Vec::new(),
        Value::Array(ref items) if items.is_empty() => Vec::new(),
        Value::Object(ref fields) if fields.is_empty() => Vec::new(),
        Value::Bool(true) => vec![envelope.clone()],
        other => vec![other],
    })
}

#[cfg(test)]
mod tests;
