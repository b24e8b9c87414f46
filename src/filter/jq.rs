//! jq through jaq: compiling (with the checks jaq does not make) and running under a [`Budget`].
//!
//! - The interpreter runs with [`Metered`] data: jaq asks its data for the program's lookup table at every term
//!   it evaluates, and that is where [`Budget::tick`] runs. A runaway filter (`last(range(1e12))`,
//!   `until(false; .)`, `[repeat(1)]`) therefore stops at its time limit, a deep one before the stack runs out,
//!   and one that hoards memory at the memory limit; none of them can be caught by `try`, since the budget
//!   unwinds instead of raising a jq error.
//! - Two built-ins are replaced: `range/3` (jaq's own yields numbers without evaluating a term, so
//!   `last(range(1e12))` would never tick) ticks at every number, and `fromjson` refuses text nested deeper than
//!   [`MAX_FROMJSON_DEPTH`] before parsing it (jaq's parser recurses once per level).
//! - `halt` and `halt_error` stop a jq process; here they are run-time errors of the filter (jaq's own helper
//!   would exit the daemon).
//! - Recursive definitions are refused at compile time: non-tail recursion such as `def f: 1 + f; f` would only
//!   stop at the depth guard on every event.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use jaq_core::load::parse::Def;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{Fun, v};
use jaq_core::{Ctx, DataT, Exn, ValX, ValXs, Vars};
use jaq_json::Val;

use super::budget::Budget;
use super::output::{OutputError, Outputs};
use super::{CompileError, Language};

/// A compiled jq program.
pub type Program = jaq_core::compile::Filter<jaq_core::Native<Metered>>;
type Lut = jaq_core::compile::Lut<jaq_core::Native<Metered>>;

/// The data jaq runs with: the program and the evaluation's budget.
pub struct Metered;

impl DataT for Metered {
    type V<'a> = Val;
    type Data<'a> = &'a Run<'a>;
}

/// One evaluation's program and budget.
pub struct Run<'a> {
    lut: &'a Lut,
    budget: &'a Budget<'a>,
}

impl<'a> jaq_core::data::HasLut<'a, Metered> for &'a Run<'a> {
    /// jaq's interpreter calls this at every term it evaluates: one step of the budget.
    #[inline]
    fn lut(&self) -> &'a Lut {
        self.budget.tick();
        self.lut
    }
}

/// The deepest text `fromjson` parses.
pub const MAX_FROMJSON_DEPTH: usize = 10_000;

/// Why a jq evaluation failed (limits excepted: those unwind).
#[derive(Debug)]
pub enum JqError {
    /// The program raised an error (`error("...")`, a type error).
    Raised(String),
    /// The program called `halt` or `halt_error`.
    Halted(i32),
    /// An output broke an output limit.
    Output(OutputError),
}

/// Compiles `source`, refusing recursive definitions.
pub fn compile(source: &str) -> Result<Program, CompileError> {
    compile_with(source, false)
}

/// Compiles `source` with every library definition, used or not: what [`compile`] did before it kept only the
/// reachable ones, so tests can compare the two.
#[cfg(test)]
pub fn compile_with_whole_library(source: &str) -> Result<Program, CompileError> {
    compile_with(source, true)
}

fn compile_with(source: &str, whole_library: bool) -> Result<Program, CompileError> {
    let error = |message: String| CompileError {
        language: Language::Jq,
        message,
    };
    let parsed: Option<jaq_core::load::parse::Term<&str>> =
        jaq_core::load::parse(source, |p| p.term());
    if let Some(name) = parsed.as_ref().and_then(recursive_definition) {
        return Err(error(format!(
            "`def {name}` calls itself: recursive definitions are refused in filters, because one that recurses \
             without end would only stop at the evaluation's depth guard, on every event (jq's own functions such \
             as `recurse`, `until`, `repeat` and `range` are fine)"
        )));
    }
    let program = File {
        code: source,
        path: (),
    };
    // Only the library definitions the filter can reach are compiled into its program (a program holds every
    // definition it was compiled with); a filter that does not parse gets them all, and the loader's error.
    let loader = Loader::new(match &parsed {
        Some(term) if !whole_library => Prelude::get().reachable_from(term),
        _ => Prelude::get().all(),
    });
    let arena = Arena::default();
    let modules = loader.load(&arena, program).map_err(|errors| {
        let messages: Vec<String> = errors
            .into_iter()
            .flat_map(|(_file, error)| load_error_messages(source, error))
            .collect();
        error(messages.join("; "))
    })?;
    jaq_core::Compiler::default()
        .with_funs(natives())
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

/// jaq's native built-ins, with `range/3` and `fromjson` replaced by budgeted ones.
fn natives() -> impl Iterator<Item = Fun<Metered>> {
    let replaced = |name: &str, arity: usize| {
        (name == "range" && arity == 3) || (name == "fromjson" && arity == 0)
    };
    jaq_core::funs::<Metered>()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(move |(name, args, _)| !replaced(name, args.len()))
        .chain([
            ("range", v(3), jaq_core::Native::<Metered>::new(range)),
            ("fromjson", v(0), jaq_core::Native::<Metered>::new(fromjson)),
        ])
}

/// `range($from; $to; $by)`, as jaq's, with one tick per number.
fn range<'a>(mut cv: jaq_core::Cv<'a, Metered>) -> ValXs<'a, Val> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let run: &'a Run<'a> = cv.0.data();
    let direction = by.partial_cmp(&Val::from(0isize)).unwrap_or(Equal);
    let mut next: ValX<'a, Val> = Ok(from);
    Box::new(std::iter::from_fn(move || {
        run.budget.tick();
        match next.clone() {
            Ok(x) => {
                let more = match direction {
                    Greater => x < to,
                    Less => x > to,
                    Equal => x != to,
                };
                more.then(|| std::mem::replace(&mut next, (x + by.clone()).map_err(Exn::from)))
            }
            error @ Err(_) => {
                next = Ok(to.clone());
                Some(error)
            }
        }
    }))
}

/// `fromjson`, refusing text nested deeper than [`MAX_FROMJSON_DEPTH`] before parsing it.
fn fromjson<'a>(cv: jaq_core::Cv<'a, Metered>) -> ValXs<'a, Val> {
    let fail = |message: String| -> ValXs<'a, Val> {
        Box::new(std::iter::once(Err(Exn::from(jaq_core::Error::str(
            message,
        )))))
    };
    let bytes = match &cv.1 {
        Val::TStr(bytes) | Val::BStr(bytes) => bytes.clone(),
        other => {
            return fail(format!(
                "cannot parse {} as JSON: not a string",
                bounded_display(other, 200)
            ));
        }
    };
    let depth = nesting_depth(&bytes);
    if depth > MAX_FROMJSON_DEPTH {
        return fail(format!(
            "cannot parse a text nested {depth} levels deep as JSON: `fromjson` stops at {MAX_FROMJSON_DEPTH}"
        ));
    }
    let values: Vec<ValX<'a, Val>> = jaq_json::read::parse_many(&bytes)
        .map(|parsed| {
            parsed.map_err(|e| {
                Exn::from(jaq_core::Error::str(format!(
                    "cannot parse {} as JSON: {e}",
                    bounded_display(&cv.1, 200)
                )))
            })
        })
        .collect();
    Box::new(values.into_iter())
}

/// The deepest nesting of `[` and `{` in JSON text, outside strings (an upper bound for text that is not JSON).
fn nesting_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Runs `program` on `input`, adding each output to `outputs`. Past a limit of the budget this unwinds (see
/// `budget`); the caller catches it.
pub fn run(
    program: &Program,
    input: Val,
    budget: &Budget<'_>,
    outputs: &mut Outputs<'_>,
) -> Result<(), JqError> {
    let run = Run {
        lut: &program.lut,
        budget,
    };
    let ctx = Ctx::<Metered>::new(&run, Vars::new([]));
    for output in program.id.run((ctx, input)) {
        match output {
            Ok(value) => {
                super::meter::paused(|| outputs.push_jq(&value)).map_err(JqError::Output)?
            }
            Err(exception) => return Err(exception_error(exception)),
        }
    }
    Ok(())
}

fn exception_error(exception: Exn<'_, Val>) -> JqError {
    match exception.get_err() {
        Ok(error) => JqError::Raised(match error.into_val() {
            // `error("text")` reads better without JSON quotes.
            Val::TStr(text) => bounded_text(&String::from_utf8_lossy(&text), ERROR_TEXT),
            other => bounded_display(&other, ERROR_TEXT),
        }),
        Err(exception) => match exception.get_halt() {
            Ok(code) => JqError::Halted(code),
            // Labels and tail calls never escape a compiled program.
            Err(other) => JqError::Raised(bounded_text(&format!("{other:?}"), ERROR_TEXT)),
        },
    }
}

/// The longest error text kept from a filter (its message is stored and shown with the trigger).
const ERROR_TEXT: usize = 1000;

/// `text`, cut at `max` bytes (on a character boundary) with an ellipsis.
fn bounded_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A value's display, cut at `max` bytes: writing stops there, so a huge or deep value costs no more than that.
pub fn bounded_display(value: &impl fmt::Display, max: usize) -> String {
    struct Bounded {
        text: String,
        max: usize,
    }
    impl fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = self.max.saturating_sub(self.text.len());
            if s.len() <= room {
                self.text.push_str(s);
                Ok(())
            } else {
                let mut end = room;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                self.text.push_str(&s[..end]);
                Err(fmt::Error)
            }
        }
    }
    let mut out = Bounded {
        text: String::new(),
        max,
    };
    if fmt::write(&mut out, format_args!("{value}")).is_err() {
        out.text.push('…');
    }
    out.text
}

/// The name of a user-defined function that can call itself, directly or through other user definitions.
///
/// jaq evaluates non-tail recursion on the native stack: `def f: 1 + f; f` compiles, then recurses until the
/// depth guard stops it, on every event, and check-config cannot tell. Functions are matched by name, whatever
/// their scope or arity, which can only refuse more than needed. A program that does not parse returns `None`: the
/// loader then reports the syntax error.
fn recursive_definition(term: &jaq_core::load::parse::Term<&str>) -> Option<String> {
    let mut graph: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut top_level_calls = Vec::new();
    collect_calls(term, &mut top_level_calls, &mut graph);

    let defined: HashSet<&str> = graph.iter().map(|(name, _)| *name).collect();
    let callees = |name: &str| -> Vec<&str> {
        graph
            .iter()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, calls)| calls.iter().copied())
            .filter(|callee| defined.contains(callee))
            .collect()
    };
    for (start, _) in &graph {
        let mut seen = HashSet::new();
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

/// The jq library definitions (jaq's core, standard and JSON definitions, in the order jq sees them), parsed once
/// per process, with the names each one calls.
///
/// Compiling a filter against the whole library puts every library definition into the filter's program: about
/// 120 KiB per filter, the same for `select(.a)` as for a long program. A filter gets only the definitions it can
/// reach instead: those named by a function it calls, then those named by a function they call, and so on. That
/// changes nothing the filter can observe: a name is resolved among the definitions before it with that name
/// (and then the native functions), and every definition with a name that is called anywhere on the way is kept,
/// in its order, whatever its arity; only definitions nothing can call are left out.
struct Prelude {
    /// The definitions in library order.
    defs: Vec<Def<&'static str>>,
    /// The names each definition calls (anywhere in its body, local definitions included), by index in `defs`.
    calls: Vec<Vec<&'static str>>,
}

impl Prelude {
    fn get() -> &'static Prelude {
        static PRELUDE: OnceLock<Prelude> = OnceLock::new();
        PRELUDE.get_or_init(|| {
            let defs: Vec<Def<&'static str>> = jaq_core::defs()
                .chain(jaq_std::defs())
                .chain(jaq_json::defs())
                .collect();
            let calls = defs.iter().map(|def| calls_anywhere(&def.body)).collect();
            Prelude { defs, calls }
        })
    }

    /// The definitions `term` can reach, in library order.
    fn reachable_from<'s>(&self, term: &jaq_core::load::parse::Term<&'s str>) -> Vec<Def<&'s str>> {
        let mut wanted: Vec<&str> = calls_anywhere(term);
        let mut seen: HashSet<&str> = HashSet::new();
        let mut kept = vec![false; self.defs.len()];
        while let Some(name) = wanted.pop() {
            if !seen.insert(name) {
                continue;
            }
            for (index, def) in self.defs.iter().enumerate() {
                if def.name == name && !kept[index] {
                    kept[index] = true;
                    wanted.extend(self.calls[index].iter().copied());
                }
            }
        }
        self.defs
            .iter()
            .zip(kept)
            .filter(|(_, kept)| *kept)
            .map(|(def, _)| -> Def<&'s str> { def.clone() })
            .collect()
    }

    /// Every definition, in library order.
    // The closure's return type is what shortens each definition's lifetime to the caller's.
    #[allow(clippy::map_clone)]
    fn all<'s>(&self) -> Vec<Def<&'s str>> {
        self.defs
            .iter()
            .map(|def| -> Def<&'s str> { def.clone() })
            .collect()
    }
}

/// The name and arity of every library definition, in library order.
#[cfg(test)]
pub fn library_signatures() -> Vec<(&'static str, usize)> {
    Prelude::get()
        .defs
        .iter()
        .map(|def| (def.name, def.args.len()))
        .collect()
}

/// Every name `term` calls, its local definitions' calls included.
fn calls_anywhere<'s>(term: &jaq_core::load::parse::Term<&'s str>) -> Vec<&'s str> {
    let mut calls = Vec::new();
    let mut graph = Vec::new();
    collect_calls(term, &mut calls, &mut graph);
    calls.extend(graph.into_iter().flat_map(|(_, own)| own));
    calls
}

/// Adds the functions `term` calls to `calls` (string formats such as `@base64` included), and every definition
/// inside it to `graph` with its own calls.
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
        Term::Str(format, parts) => {
            calls.extend(format.iter().copied());
            for part in parts {
                if let StrPart::Term(t) = part {
                    collect_calls(t, calls, graph);
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
pub fn position(source: &str, part: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_skips_strings() {
        assert_eq!(nesting_depth(br#"{"a": [1, [2, {"b": "[[[["}]]}"#), 4);
        assert_eq!(nesting_depth(br#""\"[[[""#), 0);
        assert_eq!(nesting_depth(b"[[[]]][[]]"), 3);
        assert_eq!(nesting_depth(b"]]]["), 1);
    }

    #[test]
    fn displays_are_cut_at_their_bound() {
        assert_eq!(bounded_display(&"short", 10), "short");
        assert_eq!(bounded_display(&"0123456789abc", 10), "0123456789…");
        assert_eq!(bounded_text("ééé", 3), "é…");
    }
}
