//! A trigger's definition, ready to run: its configuration entry with the filter compiled and the target resolved
//! (secrets read). Built once per (re)load; a worker and the admin API share it read-only.

use crate::config::{self, ChannelName, FailureThreshold, FcEndpoint, TriggerName};
use crate::dispatch::{self, EmbeddedRuntime};
use crate::events::EventType;
use crate::filter::{Filter, Limits};

use super::window::ChainEvent;

/// Why a configured trigger cannot run.
#[derive(Debug, thiserror::Error)]
#[error("trigger `{trigger}`: {message}")]
pub struct DefinitionError {
    /// The trigger's name.
    pub trigger: String,
    /// What is wrong (a filter that does not compile, a secret that cannot be read).
    pub message: String,
}

/// A trigger's configuration, ready to run.
#[derive(Debug)]
pub struct TriggerDef {
    /// Its name: the store's key and every log line's.
    pub name: TriggerName,
    /// The channel it listens to.
    pub channel: ChannelName,
    /// The event types it receives.
    pub selector: config::EventSelector,
    /// Whether it receives Contract events of invalid transactions.
    pub include_invalid: bool,
    /// Its filter; `None` pushes every event whole.
    pub filter: Option<Filter>,
    /// What one evaluation of the filter may spend (`filter_timeout` and the fixed limits).
    pub filter_limits: Limits,
    /// Where it pushes (secrets read).
    pub target: dispatch::Target,
    /// The target without secrets, for status pages.
    pub target_label: String,
    /// Attempts and delays of each push.
    pub retry: config::RetryPolicy,
    /// Discards tolerated before Failed.
    pub threshold: FailureThreshold,
    /// Where it starts when the store has no record of it.
    pub start: config::StartPosition,
    /// Whether it starts Running (else Disabled) when the store has no record of it.
    pub enabled: bool,
    /// The configuration entry it was built from: a reload restarts the trigger only when the new entry differs
    /// (compared as values, source locations aside, so moving an entry in the file is not a change).
    pub source: config::Trigger,
}

impl TriggerDef {
    /// Builds a configured trigger: compiles its filter, resolves its target (`embedded` needs the bundled
    /// runtime's address and key).
    pub fn build(
        trigger: &config::Trigger,
        embedded: Option<&EmbeddedRuntime>,
    ) -> Result<TriggerDef, DefinitionError> {
        let name = trigger.name.get_ref().clone();
        let fail = |message: String| DefinitionError {
            trigger: name.to_string(),
            message,
        };
        let filter = trigger.compile_filter().map_err(|e| fail(e.to_string()))?;
        let target = dispatch::Target::resolve(&trigger.target, embedded)
            .map_err(|e| fail(e.to_string()))?;
        Ok(TriggerDef {
            name: name.clone(),
            channel: trigger.channel.get_ref().clone(),
            selector: trigger.event,
            include_invalid: *trigger.include_invalid.get_ref(),
            filter,
            filter_limits: trigger.filter_limits(),
            target,
            target_label: target_label(&trigger.target),
            retry: trigger.retry,
            threshold: trigger.failure_threshold,
            start: trigger.start,
            enabled: trigger.enabled,
            source: trigger.clone(),
        })
    }

    /// Whether an event goes to this trigger (before its filter): its type is selected, and a Contract event of
    /// an invalid transaction only when the trigger asked for those.
    pub fn receives(&self, event: &ChainEvent) -> bool {
        receives(self.selector, self.include_invalid, event)
    }
}

/// Whether an event goes to a trigger of `selector` and `include_invalid` (before its filter); shared by the
/// worker and the filter tester, so the tester answers what the worker does.
pub fn receives(
    selector: config::EventSelector,
    include_invalid: bool,
    event: &ChainEvent,
) -> bool {
    selector.matches(event.event_type)
        && (event.valid_transaction || include_invalid || event.event_type != EventType::Contract)
}

/// The target as operators see it, without secrets: `fc:embedded/demo/echo`, `http:POST https://host/path`.
pub fn target_label(target: &config::Target) -> String {
    match target {
        config::Target::FunctionCompute(fc) => {
            let endpoint = match fc.endpoint.get_ref() {
                FcEndpoint::Embedded => "embedded".to_owned(),
                FcEndpoint::Url(url) => url.host_str().unwrap_or("?").to_owned(),
            };
            let qualifier = fc
                .qualifier
                .as_ref()
                .map(|q| format!(".{q}"))
                .unwrap_or_default();
            format!("fc:{endpoint}/{}{qualifier}/{}", fc.service, fc.function)
        }
        config::Target::Http(http) => {
            let mut url = http.url.clone();
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.set_query(None);
            let method = match http.method {
                config::HttpMethod::Get => "GET",
                config::HttpMethod::Post => "POST",
            };
            format!("http:{method} {url}")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const CHANNEL: &str = r#"
instance_id = "t"
database = "state.sqlite"
[admin]
token = { env = "TOKEN" }
[runtime]
enabled = true
[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = "cert.pem"
key = "key.pem"
[[channels.peers]]
address = "peer0:7051"
plaintext = true
"#;

    const FIRST: &str = r#"
[[triggers]]
name = "first"
channel = "mychannel"
event = "Tx"
filter = 'select(.content.state == "VALID")'
[triggers.target.http]
url = "https://user:pass@hooks.example.com/tx?key=secret"
"#;

    const SECOND: &str = r#"
[[triggers]]
name = "second"
channel = "mychannel"
event = "*"
[triggers.target.function_compute]
endpoint = "embedded"
service = "demo"
function = "echo"
qualifier = "prod"
"#;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/ct/test.toml")).expect("a valid configuration")
    }

    fn trigger<'a>(config: &'a Config, name: &str) -> &'a config::Trigger {
        config
            .triggers
            .iter()
            .find(|t| t.name.get_ref().as_str() == name)
            .expect("the trigger is configured")
    }

    #[test]
    fn moving_a_trigger_in_the_file_is_not_a_change_editing_it_is() {
        let before = parse(&format!("{CHANNEL}{FIRST}{SECOND}"));
        let moved = parse(&format!("{CHANNEL}{SECOND}{FIRST}"));
        let edited = parse(&format!(
            "{CHANNEL}{}{SECOND}",
            FIRST.replace("VALID", "MVCC_READ_CONFLICT")
        ));
        for name in ["first", "second"] {
            assert_eq!(trigger(&before, name), trigger(&moved, name), "{name}");
        }
        assert_ne!(trigger(&before, "first"), trigger(&edited, "first"));
        assert_eq!(trigger(&before, "second"), trigger(&edited, "second"));
    }

    #[test]
    fn target_labels_name_the_target_without_secrets() {
        let config = parse(&format!("{CHANNEL}{FIRST}{SECOND}"));
        assert_eq!(
            target_label(&trigger(&config, "first").target),
            "http:POST https://hooks.example.com/tx"
        );
        assert_eq!(
            target_label(&trigger(&config, "second").target),
            "fc:embedded/demo.prod/echo"
        );
    }
}
