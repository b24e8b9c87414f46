//! Trigger filters: jq (through jaq) or JMESPath, behind one [`Filter`] type, and the pool that runs them.
//!
//! A filter runs on an event envelope and yields the payloads to push, in order; no output means the event is
//! not pushed for this trigger. jq keeps BaaS semantics (every output is pushed; both `.a.[0]` and `.a[0]` are
//! accepted). JMESPath yields at most one payload: `null`, `false`, an empty array or an empty object mean "not
//! pushed", `true` pushes the envelope unchanged, anything else is pushed as is (an empty string too: the spec
//! names only those four as "not pushed").
//!
//! Containment (a filter is configuration, and configuration can be hostile or simply wrong):
//! - Every evaluation runs under [`Limits`]: a time limit per event (`filter_timeout`), a memory limit, a depth
//!   guard on the stack, and limits on the size, depth and number of outputs. Past any of them the evaluation
//!   fails with a [`FilterError`] (a run-time filter error: the trigger holds its position in Exception);
//!   nothing a filter does aborts the process or escapes to the caller as a panic. See `budget`.
//! - The engine runs evaluations on the [`FilterPool`]: a few threads of the machine's size with large stacks,
//!   off the async runtime, so a slow filter delays no other part of the daemon, and a caller that stops waiting
//!   gets its answer at once while the evaluation stops at its next step. See `pool` for what cannot be
//!   interrupted and how the pool stays bounded then.
//! - What can be seen before running is refused at compile time: syntax errors, undefined functions, recursive
//!   jq definitions. Endless generators (`repeat`, `range(1e12)`, `until(false; .)`) are not refused: whether they
//!   end depends on the event (`limit(3; repeat(1))` is fine), so the time limit handles them.
//!
//! | file | what |
//! |---|---|
//! | `jq` | compiling jq (with the recursion check), running it with a tick per step |
//! | `jmespath` | compiling and running JMESPath with BaaS's "not pushed" values |
//! | `budget` | the limits and the account that enforces them during an evaluation |
//! | `output` | outputs to JSON under the output limits |
//! | `meter` | the global allocator's per-thread count of what an evaluation holds |
//! | `pool` | the threads evaluations run on, their time-outs and their replacement |

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use jaq_json::Val;
use serde::Deserialize as _;
use serde_json::Value;

mod budget;
mod jmespath;
mod jq;
mod meter;
mod output;
mod pool;

pub use budget::{
    DEFAULT_TIMEOUT, Exceeded, Limits, MAX_MEMORY, MAX_OUTPUT_BYTES, MAX_OUTPUT_DEPTH, MAX_OUTPUTS,
    MAX_TIMEOUT,
};
pub use jmespath::MAX_NESTING as MAX_JMESPATH_NESTING;
pub use jq::MAX_FROMJSON_DEPTH;
pub use meter::MeteredAllocator;
pub use output::bytes_text;
pub use pool::{Answer, FilterPool, PoolStatus};

use budget::Budget;
use output::Outputs;

/// The language a filter is written in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
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
    /// What went wrong, for callers that treat some cases apart (a limit, a cancelled evaluation).
    pub kind: ErrorKind,
    /// What happened, for the operator: the interpreter's own message, or which limit was passed.
    pub message: String,
}

/// The kinds of [`FilterError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The language's own run-time error (`error("...")`, a type error, a JMESPath function misused).
    Raised,
    /// jq's `halt` or `halt_error`.
    Halted,
    /// An output broke an output limit (size, depth, count) or has no JSON form.
    Output,
    /// The evaluation ran past its time limit.
    Time,
    /// The evaluation held more memory than allowed.
    Memory,
    /// The evaluation recursed too deep for its thread's stack.
    Depth,
    /// The evaluation did not stop at its time limit (a built-in that cannot be interrupted): its thread was
    /// abandoned and replaced.
    Overrun,
    /// The pool has no thread left to run the evaluation on.
    Unavailable,
    /// The caller stopped waiting (the trigger stopped); nobody sees this one.
    Cancelled,
    /// The interpreter panicked (a bug in it): caught, and contained to this evaluation.
    Panicked,
}

/// A compiled filter: compile once at configuration load, apply to every event (Send + Sync; cloning it is
/// cheap and shares the compiled program).
///
/// Filters with the same text in the same language share one compiled program, however many triggers use it
/// (see [`Filter::compile`]); what happens to one trigger's filter (an overrun) stays with that trigger.
#[derive(Clone)]
pub struct Filter {
    inner: Arc<Compiled>,
    /// Set when an evaluation of this filter overran its time limit and its thread was abandoned: why. Shared
    /// by the clones of one compiled filter (one trigger), not by other filters with the same program.
    overran: Arc<OnceLock<String>>,
}

struct Compiled {
    /// Kept so the filter can be shown back to the operator (admin API, logs).
    source: String,
    program: Program,
}

/// Compiled programs by language and text; see [`compiled_programs`].
type ProgramsByText = HashMap<(Language, String), Weak<Compiled>>;

/// Compiled programs by language and text, so identical filters share one (a program is immutable once
/// compiled). Weak: a program no trigger uses any more (a reload changed it) is freed, and its entry dropped the
/// next time a filter is compiled.
fn compiled_programs() -> &'static std::sync::Mutex<ProgramsByText> {
    static PROGRAMS: OnceLock<std::sync::Mutex<ProgramsByText>> = OnceLock::new();
    PROGRAMS.get_or_init(Default::default)
}

/// The compiled program for `source` in `language`, if a filter alive somewhere holds one.
fn shared_program(language: Language, source: &str) -> Option<Arc<Compiled>> {
    let programs = compiled_programs()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    programs
        .get(&(language, source.to_owned()))
        .and_then(Weak::upgrade)
}

/// Keeps `compiled` for later filters with the same text, unless another thread kept one meanwhile: that one is
/// returned then, so every filter with this text shares one program.
fn share_program(language: Language, compiled: Compiled) -> Arc<Compiled> {
    let mut programs = compiled_programs()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (language, compiled.source.clone());
    if let Some(kept) = programs.get(&key).and_then(Weak::upgrade) {
        return kept;
    }
    programs.retain(|_, program| program.strong_count() > 0);
    let compiled = Arc::new(compiled);
    programs.insert(key, Arc::downgrade(&compiled));
    compiled
}

enum Program {
    Jq(jq::Program),
    Jmespath(jmespath::Program),
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("language", &self.language())
            .field("source", &self.inner.source)
            .finish()
    }
}

impl Filter {
    /// Compiles `source` in `language`.
    ///
    /// Both parsers recurse once per level of nesting (up to 13 KiB of stack per level in a debug build): the
    /// text is limited to [`MAX_SOURCE_BYTES`] and compiled on a thread of its own with a stack sized for it, so a
    /// deeply nested filter is refused or compiled, never a stack overflow, whichever thread loads the
    /// configuration.
    ///
    /// A filter with the same text and language as one compiled before (and still used) shares that one's program
    /// and is not compiled again: 1,000 triggers with one filter hold one program. Only the jq library definitions
    /// the filter can reach are compiled into its program (see `jq`).
    pub fn compile(language: Language, source: &str) -> Result<Filter, CompileError> {
        if let Some(inner) = shared_program(language, source) {
            return Ok(Filter {
                inner,
                overran: Arc::default(),
            });
        }
        let error = |message: String| CompileError { language, message };
        if source.len() > MAX_SOURCE_BYTES {
            return Err(error(format!(
                "the filter is {} long; at most {} are accepted",
                bytes_text(source.len()),
                bytes_text(MAX_SOURCE_BYTES)
            )));
        }
        let stack = source
            .len()
            .saturating_mul(COMPILE_STACK_PER_BYTE)
            .saturating_add(1 << 20);
        let compiled = std::thread::scope(|scope| {
            let compiling = std::thread::Builder::new()
                .name("filter-compile".to_owned())
                .stack_size(stack)
                .spawn_scoped(scope, || match language {
                    Language::Jq => jq::compile(source).map(Program::Jq),
                    Language::Jmespath => jmespath::compile(source).map(Program::Jmespath),
                })
                .map_err(|e| error(format!("cannot start a thread to compile it: {e}")))?;
            compiling.join().unwrap_or_else(|payload| {
                Err(error(format!(
                    "the {language} compiler failed on it ({})",
                    panic_text(payload.as_ref())
                )))
            })
        })?;
        let inner = share_program(
            language,
            Compiled {
                source: source.to_owned(),
                program: compiled,
            },
        );
        Ok(Filter {
            inner,
            overran: Arc::default(),
        })
    }

    /// Whether `self` and `other` run one compiled program (same language and text).
    pub fn shares_program_with(&self, other: &Filter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The language this filter is written in.
    pub fn language(&self) -> Language {
        match self.inner.program {
            Program::Jq(_) => Language::Jq,
            Program::Jmespath(_) => Language::Jmespath,
        }
    }

    /// The filter's text as written.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Why the filter is no longer run, when an evaluation of it overran its time limit on the pool.
    pub fn overran(&self) -> Option<&str> {
        self.overran.get().map(String::as_str)
    }

    /// Records that an evaluation of this filter overran (the first reason is kept).
    fn mark_overran(&self, reason: String) {
        let _ = self.overran.set(reason);
    }

    /// Runs the filter on an event envelope under the default [`Limits`], on the current thread, and returns the
    /// payloads to push, in order.
    pub fn apply(&self, envelope: &Value) -> Result<Vec<Value>, FilterError> {
        let input = match &self.inner.program {
            Program::Jq(_) => Input::Jq(to_jq(envelope)?),
            Program::Jmespath(_) => Input::Jmespath(to_jmespath(envelope)?, envelope),
        };
        self.run(input, &Limits::default(), &|| false)
    }

    /// Runs the filter on a prepared envelope under the default [`Limits`], on the current thread: the conversion
    /// to the language's own values is shared by every filter that runs on the same event.
    pub fn apply_to(&self, envelope: &Envelope) -> Result<Vec<Value>, FilterError> {
        self.evaluate(envelope, &Limits::default(), &|| false)
    }

    /// Runs the filter on a prepared envelope under `limits`, on the current thread, until it ends, passes a limit,
    /// or `cancelled` says the caller gave up (asked every few hundred microseconds of jq evaluation).
    ///
    /// A limit is enforced as well as the thread allows: the stack guard knows the current thread's stack, the
    /// memory limit counts this thread's allocations. What only a pool thread can enforce (stopping a JMESPath
    /// evaluation or a single huge allocation) needs [`FilterPool`].
    pub fn evaluate(
        &self,
        envelope: &Envelope,
        limits: &Limits,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<Value>, FilterError> {
        // Converting the event is shared by every trigger of its channel and is not the filter's doing: it
        // happens before the budget starts.
        let input = match &self.inner.program {
            Program::Jq(_) => Input::Jq(envelope.jq()?),
            Program::Jmespath(_) => {
                let converted = envelope.jmespath()?.clone();
                let json = envelope.json().map_err(|message| FilterError {
                    language: Language::Jmespath,
                    kind: ErrorKind::Raised,
                    message,
                })?;
                Input::Jmespath(converted, json)
            }
        };
        self.run(input, limits, cancelled)
    }

    /// Runs the filter on `input`, the event converted to its language; see [`Filter::evaluate`].
    fn run(
        &self,
        input: Input<'_>,
        limits: &Limits,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<Value>, FilterError> {
        let language = self.language();
        let fail = |kind: ErrorKind, message: String| FilterError {
            language,
            kind,
            message,
        };
        let budget = Budget::start(*limits, cancelled);
        // Converting outputs counts against the time limit too (it is bounded by the output limits anyway).
        let tick = || budget.tick();
        let mut outputs = Outputs::new(*limits, &tick);
        meter::start();
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            match (&self.inner.program, input) {
                (Program::Jq(program), Input::Jq(input)) => {
                    jq::run(program, input, &budget, &mut outputs).map_err(|error| match error {
                        jq::JqError::Raised(message) => fail(ErrorKind::Raised, message),
                        jq::JqError::Halted(code) => fail(
                            ErrorKind::Halted,
                            format!(
                                "it called `halt` or `halt_error` (exit code {code}), which ends a jq process; a filter \
                                 cannot stop the daemon, so this is an error"
                            ),
                        ),
                        jq::JqError::Output(error) => fail(ErrorKind::Output, error.to_string()),
                    })
                }
                (Program::Jmespath(program), Input::Jmespath(input, json)) => {
                    jmespath::run(program, &input, json, &mut outputs).map_err(|error| {
                        match error {
                            jmespath::JmespathError::Raised(message) => {
                                fail(ErrorKind::Raised, message)
                            }
                            jmespath::JmespathError::Output(error) => {
                                fail(ErrorKind::Output, error.to_string())
                            }
                        }
                    })?;
                    // JMESPath cannot be interrupted: a limit passed is seen once it is done.
                    if let Some(exceeded) = budget.over() {
                        return Err(exceeded_error(language, exceeded));
                    }
                    Ok(())
                }
                _ => unreachable!("the input is converted for the filter's own language"),
            }
        }));
        meter::stop();
        match ran {
            Ok(Ok(())) => Ok(outputs.finish()),
            Ok(Err(error)) => Err(error),
            Err(payload) => Err(match payload.downcast::<Exceeded>() {
                Ok(exceeded) => exceeded_error(language, *exceeded),
                Err(payload) => fail(
                    ErrorKind::Panicked,
                    format!(
                        "the {language} interpreter failed ({}); the evaluation was stopped and nothing else \
                         is affected",
                        panic_text(payload.as_ref())
                    ),
                ),
            }),
        }
    }
}

/// The longest filter text accepted (16 KiB): far above any real filter, and what bounds the stack compiling needs.
pub const MAX_SOURCE_BYTES: usize = 16 << 10;
/// Stack reserved for compiling, per byte of filter text: the parsers need up to 13 KiB per level of nesting in
/// a debug build (2.7 KiB optimised), and a level takes at least one byte.
const COMPILE_STACK_PER_BYTE: usize = 16 << 10;

/// The event in the filter's language (JMESPath's with the envelope's JSON, which its `true` pushes).
enum Input<'a> {
    Jq(Val),
    Jmespath(::jmespath::Rcvar, &'a Value),
}

/// The error for an evaluation that passed a limit.
fn exceeded_error(language: Language, exceeded: Exceeded) -> FilterError {
    let (kind, message) = match exceeded {
        Exceeded::Time(limit) => (
            ErrorKind::Time,
            format!(
                "it ran longer than its time limit of {} on this event (`filter_timeout`); an endless loop \
                 such as `last(range(1e12))` or `until(false; .)`?",
                duration_text(limit)
            ),
        ),
        Exceeded::Memory(limit) => (
            ErrorKind::Memory,
            format!(
                "it held more than {} of memory on this event (the limit of one evaluation)",
                bytes_text(limit)
            ),
        ),
        Exceeded::Depth => (
            ErrorKind::Depth,
            "it nests too deep (recursion or a deeply nested value): the evaluation was stopped before \
             its thread's stack would run out"
                .to_owned(),
        ),
        Exceeded::Cancelled => (
            ErrorKind::Cancelled,
            "the evaluation was abandoned: nobody waits for it any more".to_owned(),
        ),
    };
    FilterError {
        language,
        kind,
        message,
    }
}

/// `1s`, `250ms`, as in the configuration file.
pub fn duration_text(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// An event that writes its envelope in each form a filter reads, when asked (see [`Envelope::for_one`]).
pub trait Render: Send + Sync {
    /// The envelope as compact JSON text.
    fn text(&self) -> Vec<u8>;
    /// The envelope as a jq value: exactly what parsing [`Render::text`] gives.
    fn jq(&self) -> Val;
}

/// An event envelope ready for filtering (Send + Sync, share it with `Arc`): its conversions to jq and JMESPath
/// values happen at most once per event, however many triggers filter it.
///
/// An envelope given as JSON text (what the daemon does for the channel's shared blocks: [`Envelope::from_text`])
/// is parsed straight into the language a filter needs: a jq filter never has a `serde_json::Value` built at all,
/// which halves what building and dropping the event's tree costs; the `Value` is parsed only for JMESPath (whose
/// `true` pushes it). An envelope only one filter reads ([`Envelope::for_one`]: a catch-up stream's events) keeps
/// no jq value at all.
pub struct Envelope {
    /// Where the envelope comes from.
    source: Source,
    /// The envelope itself: what JMESPath's `true` pushes. Given, or parsed from the text on first use.
    json: OnceLock<Result<Value, String>>,
    jq: OnceLock<Result<Val, String>>,
    jmespath: OnceLock<Result<::jmespath::Rcvar, String>>,
}

/// Where an [`Envelope`] comes from.
enum Source {
    /// Given as a value (held in `json`).
    Value,
    /// Given as compact JSON text.
    Text(Box<[u8]>),
    /// Written by the event on demand. Its jq value is written for each evaluation and dropped on the thread that
    /// ran it, never kept: its many small allocations are freed where they were made, a block held read ahead
    /// holds no tree, and no text is written and parsed in between.
    Render(Arc<dyn Render>),
}

impl Envelope {
    /// Wraps an envelope; nothing is converted until a filter needs it.
    pub fn new(json: Value) -> Self {
        Envelope {
            source: Source::Value,
            json: OnceLock::from(Ok(json)),
            jq: OnceLock::new(),
            jmespath: OnceLock::new(),
        }
    }

    /// Wraps an envelope written as JSON text; nothing is parsed until a filter needs it. Text that is not JSON
    /// fails each filter that reads it, with the parser's message.
    pub fn from_text(text: Vec<u8>) -> Self {
        Envelope {
            source: Source::Text(text.into_boxed_slice()),
            json: OnceLock::new(),
            jq: OnceLock::new(),
            jmespath: OnceLock::new(),
        }
    }

    /// Wraps an event one filter reads, most likely once (a catch-up stream's): its jq value is written for each
    /// evaluation, straight from the event, and dropped on the thread that ran it, never kept; its text is written
    /// only for JMESPath.
    pub fn for_one(event: Arc<dyn Render>) -> Self {
        Envelope {
            source: Source::Render(event),
            json: OnceLock::new(),
            jq: OnceLock::new(),
            jmespath: OnceLock::new(),
        }
    }

    /// The envelope as a JSON value (parsed now if it was not given as one).
    pub fn json(&self) -> Result<&Value, String> {
        self.json
            .get_or_init(|| match &self.source {
                Source::Text(text) => serde_json::from_slice(text).map_err(|e| e.to_string()),
                Source::Render(event) => {
                    serde_json::from_slice(&event.text()).map_err(|e| e.to_string())
                }
                Source::Value => Err("an envelope holds JSON or its text".to_owned()),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The envelope as a jq value: kept from the first call, or (written on demand) made for this call.
    fn jq(&self) -> Result<Val, FilterError> {
        let parsed = match &self.source {
            Source::Render(event) => Ok(event.jq()),
            Source::Text(text) => self
                .jq
                .get_or_init(|| serde_json::from_slice::<Val>(text).map_err(|e| e.to_string()))
                .clone(),
            Source::Value => self
                .jq
                .get_or_init(|| {
                    self.json()
                        .and_then(|json| to_jq(json).map_err(|e| e.message))
                })
                .clone(),
        };
        parsed.map_err(|message| FilterError {
            language: Language::Jq,
            kind: ErrorKind::Raised,
            message,
        })
    }

    fn jmespath(&self) -> Result<&::jmespath::Rcvar, FilterError> {
        self.jmespath
            .get_or_init(|| {
                self.json()
                    .and_then(|json| to_jmespath(json).map_err(|e| e.message))
            })
            .as_ref()
            .map_err(|message| FilterError {
                language: Language::Jmespath,
                kind: ErrorKind::Raised,
                message: message.clone(),
            })
    }
}

fn to_jq(json: &Value) -> Result<Val, FilterError> {
    Val::deserialize(json).map_err(|e| FilterError {
        language: Language::Jq,
        kind: ErrorKind::Raised,
        message: e.to_string(),
    })
}

fn to_jmespath(json: &Value) -> Result<::jmespath::Rcvar, FilterError> {
    ::jmespath::Variable::try_from(json)
        .map(::jmespath::Rcvar::new)
        .map_err(|e| FilterError {
            language: Language::Jmespath,
            kind: ErrorKind::Raised,
            message: e.to_string(),
        })
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Text(text) => f
                .debug_tuple("Envelope")
                .field(&String::from_utf8_lossy(text))
                .finish(),
            Source::Render(event) => f
                .debug_tuple("Envelope")
                .field(&String::from_utf8_lossy(&event.text()))
                .finish(),
            Source::Value => f.debug_tuple("Envelope").field(&self.json).finish(),
        }
    }
}

#[cfg(test)]
mod tests;
