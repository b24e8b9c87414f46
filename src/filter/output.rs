//! Outputs to JSON, under the output limits (pure).
//!
//! jq and JMESPath values share their parts (`[., .] | [., .] | ...` builds a value of 2^n leaves from n small
//! steps), so an output's size is counted while it is converted, never after: the conversion stops as soon as
//! the event's outputs together pass [`Limits::output_bytes`], an output nests deeper than
//! [`Limits::output_depth`], or the event yields more than [`Limits::outputs`] outputs. The recursion of the
//! conversion is bounded by the depth limit, so it cannot overflow the stack, and neither can serialising the
//! result later (pushing it, storing it as a dead letter, showing it).

use jaq_json::Val;
use serde_json::Value;

use super::budget::Limits;

/// Why an output was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputError {
    /// The outputs of one event pass the size limit.
    TooLarge(usize),
    /// An output nests deeper than the depth limit.
    TooDeep(usize),
    /// More outputs than the count limit.
    TooMany(usize),
    /// A value JSON cannot represent (an infinite number, an object key that is not a string).
    NotJson(String),
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputError::TooLarge(limit) => write!(
                f,
                "the filter's outputs for one event pass the limit of {} of JSON",
                bytes_text(*limit)
            ),
            OutputError::TooDeep(limit) => write!(
                f,
                "an output of the filter nests deeper than the limit of {limit} levels"
            ),
            OutputError::TooMany(limit) => write!(
                f,
                "the filter yields more than {limit} outputs for one event (an endless generator such as `repeat`?)"
            ),
            OutputError::NotJson(message) => f.write_str(message),
        }
    }
}

/// `16 MiB`, `512 KiB`, `100 bytes`.
pub fn bytes_text(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// The outputs of one event, converted one by one under the limits.
pub struct Outputs<'t> {
    limits: Limits,
    /// JSON bytes still allowed for this event.
    bytes_left: usize,
    payloads: Vec<Value>,
    /// Called at every value converted: the evaluation's budget, so that converting counts against its time.
    tick: &'t dyn Fn(),
}

impl<'t> Outputs<'t> {
    pub fn new(limits: Limits, tick: &'t dyn Fn()) -> Self {
        Outputs {
            limits,
            bytes_left: limits.output_bytes,
            payloads: Vec::new(),
            tick,
        }
    }

    /// Counts one more output, before converting it.
    fn count(&mut self) -> Result<(), OutputError> {
        if self.payloads.len() >= self.limits.outputs {
            return Err(OutputError::TooMany(self.limits.outputs));
        }
        Ok(())
    }

    /// Takes `bytes` of the event's size allowance (one value converted).
    fn spend(&mut self, bytes: usize) -> Result<(), OutputError> {
        (self.tick)();
        self.bytes_left = self
            .bytes_left
            .checked_sub(bytes)
            .ok_or(OutputError::TooLarge(self.limits.output_bytes))?;
        Ok(())
    }

    fn deeper(&self, depth: usize) -> Result<usize, OutputError> {
        if depth >= self.limits.output_depth {
            return Err(OutputError::TooDeep(self.limits.output_depth));
        }
        Ok(depth + 1)
    }

    /// Adds a jq output.
    pub fn push_jq(&mut self, value: &Val) -> Result<(), OutputError> {
        self.count()?;
        let json = self.jq(value, 0)?;
        self.payloads.push(json);
        Ok(())
    }

    /// Adds a JSON value as it is (JMESPath's `true`: the envelope), counting its size.
    pub fn push_json(&mut self, value: &Value) -> Result<(), OutputError> {
        self.count()?;
        self.measure_json(value, 0)?;
        self.payloads.push(value.clone());
        Ok(())
    }

    /// Adds a JMESPath result.
    pub fn push_jmespath(&mut self, value: &::jmespath::Variable) -> Result<(), OutputError> {
        self.count()?;
        let json = self.jmespath(value, 0)?;
        self.payloads.push(json);
        Ok(())
    }

    /// The converted outputs, in order.
    pub fn finish(self) -> Vec<Value> {
        self.payloads
    }

    /// jaq values have no `Serialize`: convert by hand (objects keep their key order).
    fn jq(&mut self, value: &Val, depth: usize) -> Result<Value, OutputError> {
        Ok(match value {
            Val::Null => {
                self.spend(4)?;
                Value::Null
            }
            Val::Bool(b) => {
                self.spend(5)?;
                Value::Bool(*b)
            }
            Val::Num(n) => {
                let text = n.to_string();
                self.spend(text.len())?;
                number_to_json(&text).map_err(OutputError::NotJson)?
            }
            Val::BStr(bytes) | Val::TStr(bytes) => {
                self.spend(bytes.len().saturating_add(2))?;
                Value::String(String::from_utf8_lossy(bytes).into_owned())
            }
            Val::Arr(items) => {
                let depth = self.deeper(depth)?;
                self.spend(items.len().saturating_add(1))?;
                let mut array = Vec::with_capacity(items.len().min(1024));
                for item in items.iter() {
                    array.push(self.jq(item, depth)?);
                }
                Value::Array(array)
            }
            Val::Obj(map) => {
                let depth = self.deeper(depth)?;
                self.spend(map.len().saturating_mul(2).saturating_add(1))?;
                let mut object = serde_json::Map::with_capacity(map.len().min(1024));
                for (key, item) in map.iter() {
                    let key = match key {
                        Val::TStr(bytes) | Val::BStr(bytes) => {
                            self.spend(bytes.len().saturating_add(2))?;
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                        other => {
                            return Err(OutputError::NotJson(format!(
                                "object key {} is not a string",
                                short(&other.to_string())
                            )));
                        }
                    };
                    let item = self.jq(item, depth)?;
                    object.insert(key, item);
                }
                Value::Object(object)
            }
        })
    }

    fn jmespath(
        &mut self,
        value: &::jmespath::Variable,
        depth: usize,
    ) -> Result<Value, OutputError> {
        use ::jmespath::Variable;
        Ok(match value {
            Variable::Null => {
                self.spend(4)?;
                Value::Null
            }
            Variable::Bool(b) => {
                self.spend(5)?;
                Value::Bool(*b)
            }
            Variable::Number(n) => {
                self.spend(n.to_string().len())?;
                Value::Number(n.clone())
            }
            Variable::String(text) => {
                self.spend(text.len().saturating_add(2))?;
                Value::String(text.clone())
            }
            Variable::Array(items) => {
                let depth = self.deeper(depth)?;
                self.spend(items.len().saturating_add(1))?;
                let mut array = Vec::with_capacity(items.len().min(1024));
                for item in items {
                    array.push(self.jmespath(item, depth)?);
                }
                Value::Array(array)
            }
            Variable::Object(map) => {
                let depth = self.deeper(depth)?;
                self.spend(map.len().saturating_mul(2).saturating_add(1))?;
                let mut object = serde_json::Map::with_capacity(map.len().min(1024));
                for (key, item) in map {
                    self.spend(key.len().saturating_add(2))?;
                    let item = self.jmespath(item, depth)?;
                    object.insert(key.clone(), item);
                }
                Value::Object(object)
            }
            Variable::Expref(_) => {
                return Err(OutputError::NotJson(
                    "the filter yields an expression reference (`&expr`), which has no JSON form"
                        .to_owned(),
                ));
            }
        })
    }

    /// Counts a JSON value against the limits without copying it.
    fn measure_json(&mut self, value: &Value, depth: usize) -> Result<(), OutputError> {
        match value {
            Value::Null => self.spend(4),
            Value::Bool(_) => self.spend(5),
            Value::Number(n) => self.spend(n.to_string().len()),
            Value::String(text) => self.spend(text.len().saturating_add(2)),
            Value::Array(items) => {
                let depth = self.deeper(depth)?;
                self.spend(items.len().saturating_add(1))?;
                items
                    .iter()
                    .try_for_each(|item| self.measure_json(item, depth))
            }
            Value::Object(map) => {
                let depth = self.deeper(depth)?;
                self.spend(map.len().saturating_mul(2).saturating_add(1))?;
                map.iter().try_for_each(|(key, item)| {
                    self.spend(key.len().saturating_add(2))?;
                    self.measure_json(item, depth)
                })
            }
        }
    }
}

/// At most 60 characters of `text`, for error messages.
fn short(text: &str) -> String {
    if text.chars().count() <= 60 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(60).collect::<String>())
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits(output_bytes: usize, output_depth: usize, outputs: usize) -> Limits {
        Limits {
            output_bytes,
            output_depth,
            outputs,
            ..Limits::default()
        }
    }

    #[test]
    fn json_outputs_are_measured_against_every_limit() {
        let value = json!({"a": [1, 2, {"b": "text"}], "c": null});
        let mut outputs = Outputs::new(Limits::default(), &|| {});
        outputs.push_json(&value).expect("within the limits");
        assert_eq!(outputs.finish(), vec![value.clone()]);

        let mut small = Outputs::new(limits(10, 512, 10), &|| {});
        assert_eq!(small.push_json(&value), Err(OutputError::TooLarge(10)));
        let mut shallow = Outputs::new(limits(1 << 20, 2, 10), &|| {});
        assert_eq!(shallow.push_json(&value), Err(OutputError::TooDeep(2)));
        let mut few = Outputs::new(limits(1 << 20, 512, 1), &|| {});
        few.push_json(&json!(1)).expect("the first output");
        assert_eq!(few.push_json(&json!(2)), Err(OutputError::TooMany(1)));
    }

    #[test]
    fn the_size_counts_every_output_of_the_event() {
        let mut outputs = Outputs::new(limits(100, 512, 100), &|| {});
        for _ in 0..3 {
            outputs
                .push_json(&json!("a string of thirty characters!"))
                .expect("fits");
        }
        assert_eq!(
            outputs.push_json(&json!("a string of thirty characters!")),
            Err(OutputError::TooLarge(100))
        );
    }

    #[test]
    fn limits_read_well() {
        assert_eq!(bytes_text(16 << 20), "16 MiB");
        assert_eq!(bytes_text(512 << 10), "512 KiB");
        assert_eq!(bytes_text(100), "100 bytes");
        assert_eq!(
            OutputError::TooLarge(16 << 20).to_string(),
            "the filter's outputs for one event pass the limit of 16 MiB of JSON"
        );
    }
}
