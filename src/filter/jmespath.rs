//! JMESPath: compiling and running, with BaaS's "not pushed" values.
//!
//! JMESPath has no loops, no recursion and no generators: an evaluation's work is bounded by the expression and
//! the event, and its nesting by the expression's. What can still blow up is the size of a result (`[@, @]`
//! shares its parts, so a chain of them doubles the result's size per step); outputs are therefore converted
//! under the output limits, and the evaluation itself runs on the filter pool, whose hard limits stop a thread
//! that allocates past them.

use serde_json::Value;

use super::output::{OutputError, Outputs};
use super::{CompileError, Language};

/// A compiled expression.
pub type Program = jmespath::Expression<'static>;

/// Why a JMESPath evaluation failed.
#[derive(Debug)]
pub enum JmespathError {
    /// The expression failed on this event (a function given the wrong type, ...).
    Raised(String),
    /// The result broke an output limit.
    Output(OutputError),
}

/// The deepest expression accepted: the compiled expression is a tree that is dropped (and evaluated)
/// recursively, on whatever thread holds it.
pub const MAX_NESTING: usize = 256;

/// Compiles `source`, refusing expressions nested deeper than [`MAX_NESTING`].
pub fn compile(source: &str) -> Result<Program, CompileError> {
    let error = |message: String| CompileError {
        language: Language::Jmespath,
        message,
    };
    let program = jmespath::compile(source).map_err(|e| {
        error(format!(
            "{} at line {}, column {}",
            e.reason,
            e.line + 1,
            e.column + 1
        ))
    })?;
    let depth = nesting(program.as_ast());
    if depth > MAX_NESTING {
        return Err(error(format!(
            "the expression nests {depth} levels deep; at most {MAX_NESTING} are accepted"
        )));
    }
    Ok(program)
}

/// How deep an expression's tree is.
fn nesting(ast: &jmespath::ast::Ast) -> usize {
    use jmespath::ast::Ast;
    1 + match ast {
        Ast::Comparison { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => nesting(lhs).max(nesting(rhs)),
        Ast::Condition {
            predicate, then, ..
        } => nesting(predicate).max(nesting(then)),
        Ast::Expref { ast, .. } => nesting(ast),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            nesting(node)
        }
        Ast::Function { args, .. } | Ast::MultiList { elements: args, .. } => {
            args.iter().map(nesting).max().unwrap_or(0)
        }
        Ast::MultiHash { elements, .. } => elements
            .iter()
            .map(|pair| nesting(&pair.value))
            .max()
            .unwrap_or(0),
        Ast::Identity { .. } | Ast::Field { .. } | Ast::Index { .. } | Ast::Literal { .. } => 0,
        Ast::Slice { .. } => 0,
    }
}

/// Runs `program` on `input`; `null`, `false`, `[]` and `{}` push nothing, `true` pushes `envelope`, anything
/// else is pushed as it is.
pub fn run(
    program: &Program,
    input: &jmespath::Rcvar,
    envelope: &Value,
    outputs: &mut Outputs<'_>,
) -> Result<(), JmespathError> {
    use jmespath::Variable;
    let result = program
        .search(input)
        .map_err(|e| JmespathError::Raised(e.to_string()))?;
    let pushed = match &*result {
        Variable::Null | Variable::Bool(false) => Ok(()),
        Variable::Array(items) if items.is_empty() => Ok(()),
        Variable::Object(fields) if fields.is_empty() => Ok(()),
        Variable::Bool(true) => super::meter::paused(|| outputs.push_json(envelope)),
        other => super::meter::paused(|| outputs.push_jmespath(other)),
    };
    pushed.map_err(JmespathError::Output)
}
