//! The checks that need more than one value of the file: duplicate names, triggers on unknown channels, filters
//! that do not compile, conflicting settings.

use std::collections::HashMap;
use std::time::Duration;

use super::load::Problem;
use super::names::{ChannelName, TriggerName};
use super::schema::{Config, EventSelector, FcEndpoint, HttpAuth, Target};
use super::{MAX_ADMIN_MAX_CONNECTIONS, names::HumanDuration};
use crate::events::EventType;
use crate::filter::{self, Filter};

impl Config {
    /// Every problem that needs more than one value to see.
    pub(super) fn semantic_problems(&self) -> Vec<Problem> {
        let source = &self.source;
        let mut problems = self.admin_problems();

        let mut channels: HashMap<&ChannelName, usize> = HashMap::new();
        for (i, channel) in self.channels.iter().enumerate() {
            if let Some(first) = channels.insert(channel.name.get_ref(), i) {
                problems.push(source.problem(
                    Some(channel.name.span()),
                    format!("channels[{i}].name"),
                    format!(
                        "channel `{}` is already declared by channels[{first}]",
                        channel.name.get_ref()
                    ),
                ));
            }
            if channel.peers.get_ref().is_empty() {
                problems.push(source.problem(
                    Some(channel.peers.span()),
                    format!("channels[{i}].peers"),
                    "a channel needs at least one peer",
                ));
            }
            problems.extend(
                channel_tuning_problems(channel, i)
                    .into_iter()
                    .map(|(span, field, message)| source.problem(Some(span), field, message)),
            );
            for (j, peer) in channel.peers.get_ref().iter().enumerate() {
                let field = |name: &str| format!("channels[{i}].peers[{j}].{name}");
                if let Err(message) = check_peer_address(peer.address.get_ref()) {
                    problems.push(source.problem(
                        Some(peer.address.span()),
                        field("address"),
                        message,
                    ));
                }
                match (&peer.tls_ca, peer.plaintext) {
                    (None, false) => problems.push(source.problem(
                        Some(peer.address.span()),
                        field("tls_ca"),
                        "a peer needs `tls_ca` (the CA of its TLS certificate), or `plaintext = true` for a test network",
                    )),
                    (Some(ca), true) => problems.push(source.problem(
                        Some(ca.span()),
                        field("plaintext"),
                        "`plaintext = true` and `tls_ca` contradict each other",
                    )),
                    _ => {}
                }
                match (&peer.client_certificate, &peer.client_key) {
                    (Some(cert), None) => problems.push(source.problem(
                        Some(cert.span()),
                        field("client_key"),
                        "`client_certificate` needs `client_key`",
                    )),
                    (None, Some(key)) => problems.push(source.problem(
                        Some(key.span()),
                        field("client_certificate"),
                        "`client_key` needs `client_certificate`",
                    )),
                    _ => {}
                }
            }
        }

        let mut triggers: HashMap<&TriggerName, usize> = HashMap::new();
        for (i, trigger) in self.triggers.iter().enumerate() {
            let field = |name: &str| format!("triggers[{i}].{name}");
            if let Some(first) = triggers.insert(trigger.name.get_ref(), i) {
                problems.push(source.problem(
                    Some(trigger.name.span()),
                    field("name"),
                    format!(
                        "trigger `{}` is already declared by triggers[{first}]",
                        trigger.name.get_ref()
                    ),
                ));
            }
            if !channels.contains_key(trigger.channel.get_ref()) {
                let known: Vec<String> = self
                    .channels
                    .iter()
                    .map(|c| c.name.get_ref().to_string())
                    .collect();
                problems.push(source.problem(
                    Some(trigger.channel.span()),
                    field("channel"),
                    format!(
                        "unknown channel `{}` (declared channels: {})",
                        trigger.channel.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            if *trigger.include_invalid.get_ref()
                && !matches!(
                    trigger.event,
                    EventSelector::All | EventSelector::Only(EventType::Contract)
                )
            {
                problems.push(source.problem(
                    Some(trigger.include_invalid.span()),
                    field("include_invalid"),
                    format!(
                        "`include_invalid` applies to Contract events only (this trigger receives {} events; Tx events always carry their state)",
                        trigger.event
                    ),
                ));
            }
            if let Some(filter) = &trigger.filter
                && let Err(e) = Filter::compile(trigger.filter_language, filter.get_ref())
            {
                problems.push(source.problem(Some(filter.span()), field("filter"), e.to_string()));
            }
            if let Some(timeout) = &trigger.filter_timeout {
                let problem = if trigger.filter.is_none() {
                    Some(
                        "`filter_timeout` needs a `filter`: a trigger without one runs no filter"
                            .to_owned(),
                    )
                } else if timeout.get_ref().0 < Duration::from_millis(1) {
                    Some("the timeout must be above 0".to_owned())
                } else if timeout.get_ref().0 > filter::MAX_TIMEOUT {
                    Some(format!(
                        "{} is above the longest filter timeout, {}: a filter that runs that long on one event \
                         holds one of the few filter threads",
                        timeout.get_ref(),
                        filter::duration_text(filter::MAX_TIMEOUT)
                    ))
                } else {
                    None
                };
                if let Some(message) = problem {
                    problems.push(source.problem(
                        Some(timeout.span()),
                        field("filter_timeout"),
                        message,
                    ));
                }
            }
            let retry = &trigger.retry;
            if retry.attempts == 0 {
                problems.push(source.problem(
                    None,
                    field("retry.attempts"),
                    "at least 1 attempt is needed (1 = no retries)",
                ));
            }
            if retry.initial_delay > retry.max_delay {
                problems.push(source.problem(
                    None,
                    field("retry.initial_delay"),
                    format!(
                        "initial_delay {} is above max_delay {}",
                        retry.initial_delay, retry.max_delay
                    ),
                ));
            }
            if retry.attempt_timeout.0 < Duration::from_millis(1) {
                problems.push(source.problem(
                    None,
                    field("retry.attempt_timeout"),
                    "the timeout must be above 0",
                ));
            }
            match &trigger.target {
                Target::FunctionCompute(fc) => {
                    if *fc.endpoint.get_ref() == FcEndpoint::Embedded {
                        if !self.runtime.enabled {
                            problems.push(source.problem(
                                Some(fc.endpoint.span()),
                                field("target.function_compute.endpoint"),
                                "`embedded` needs the bundled runtime: set `[runtime] enabled = true`",
                            ));
                        }
                    } else if fc.credentials.is_none() {
                        problems.push(source.problem(
                            Some(fc.endpoint.span()),
                            field("target.function_compute.credentials"),
                            "a Function Compute endpoint needs `credentials` (access_key_id and access_key_secret)",
                        ));
                    }
                }
                Target::Http(http) => {
                    for name in http.headers.get_ref().keys() {
                        let problem =
                            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                                Some(format!(
                                    "`{}` is not a valid header name",
                                    name.escape_debug()
                                ))
                            } else if name.eq_ignore_ascii_case(crate::dispatch::EVENT_ID_HEADER) {
                                Some(format!("`{name}` is set by the daemon for every push"))
                            } else if name.eq_ignore_ascii_case("authorization")
                                && !matches!(http.auth, HttpAuth::None)
                            {
                                Some("`Authorization` conflicts with `auth`".to_owned())
                            } else {
                                None
                            };
                        if let Some(message) = problem {
                            problems.push(source.problem(
                                Some(http.headers.span()),
                                field("target.http.headers"),
                                message,
                            ));
                        }
                    }
                    for (name, value) in http.headers.get_ref() {
                        if reqwest::header::HeaderValue::from_str(value).is_err() {
                            problems.push(source.problem(
                                Some(http.headers.span()),
                                field("target.http.headers"),
                                format!(
                                    "the value of header `{}` is not a valid header value",
                                    name.escape_debug()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        problems
    }
}

fn check_peer_address(address: &str) -> Result<(), String> {
    let (host, port) = address.rsplit_once(':').ok_or_else(|| {
        format!(
            "invalid peer address `{address}`: expected host:port, e.g. peer0.org1.example.com:7051"
        )
    })?;
    if host.is_empty() || host.contains('/') {
        return Err(format!(
            "invalid peer address `{address}`: expected host:port without a scheme, e.g. peer0.org1.example.com:7051"
        ));
    }
    port.parse::<u16>()
        .map_err(|_| format!("invalid peer address `{address}`: `{port}` is not a port number"))?;
    Ok(())
}

/// The ranges of a channel's stream settings: `(span, field, message)` for each value out of range.
fn channel_tuning_problems(
    channel: &super::schema::Channel,
    i: usize,
) -> Vec<(std::ops::Range<usize>, String, String)> {
    let mut problems = Vec::new();
    let field = |name: &str| format!("channels[{i}].{name}");
    let streams = *channel.max_catch_up_streams.get_ref();
    if !(1..=64).contains(&streams) {
        problems.push((
            channel.max_catch_up_streams.span(),
            field("max_catch_up_streams"),
            format!("{streams} is out of range: expected 1 to 64 streams"),
        ));
    }
    let durations = [
        (
            &channel.peer_timeout,
            "peer_timeout",
            Duration::from_secs(2),
            Duration::from_secs(600),
            "2s to 10m",
        ),
        (
            &channel.peer_check_interval,
            "peer_check_interval",
            Duration::from_secs(1),
            Duration::from_secs(3600),
            "1s to 1h",
        ),
    ];
    for (value, name, min, max, range) in durations {
        let duration = value.get_ref();
        if duration.0 < min || duration.0 > max {
            problems.push((
                value.span(),
                field(name),
                format!("{duration} is out of range: expected {range}"),
            ));
        }
    }
    if *channel.stale_peer_blocks.get_ref() == 0 {
        problems.push((
            channel.stale_peer_blocks.span(),
            field("stale_peer_blocks"),
            "0 would move between peers at every block: expected 1 or more blocks".to_owned(),
        ));
    }
    problems
}

/// The range an admin timeout must lie in: below it no client could make it, above it the limit protects nothing.
const ADMIN_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

impl Config {
    /// The `[admin]` settings that depend on each other: who may reach the API, and over what.
    fn admin_problems(&self) -> Vec<Problem> {
        let source = &self.source;
        let admin = &self.admin;
        let mut problems = Vec::new();
        let listen = *admin.listen.get_ref();
        if !listen.ip().is_loopback() && !*admin.allow_remote.get_ref() {
            problems.push(source.problem(
                Some(admin.listen.span()),
                "admin.listen",
                format!(
                    "{listen} is not a loopback address, and the admin API can disable and delete triggers: listen on \
                     127.0.0.1 or [::1], or serve other machines with `allow_remote = true` in [admin] together with \
                     `tls_certificate` and `tls_key`"
                ),
            ));
        }
        match (&admin.tls_certificate, &admin.tls_key) {
            (Some(certificate), None) => problems.push(source.problem(
                Some(certificate.span()),
                "admin.tls_key",
                "`tls_certificate` needs `tls_key` (the certificate's private key)",
            )),
            (None, Some(key)) => problems.push(source.problem(
                Some(key.span()),
                "admin.tls_certificate",
                "`tls_key` needs `tls_certificate` (the certificate chain to present)",
            )),
            (None, None) if *admin.allow_remote.get_ref() => problems.push(source.problem(
                Some(admin.allow_remote.span()),
                "admin.allow_remote",
                "`allow_remote = true` needs `tls_certificate` and `tls_key`: every request carries the admin token, \
                 which must not cross the network in clear (there is no plaintext remote mode)",
            )),
            _ => {}
        }
        let connections = *admin.max_connections.get_ref();
        if !(1..=MAX_ADMIN_MAX_CONNECTIONS).contains(&connections) {
            problems.push(source.problem(
                Some(admin.max_connections.span()),
                "admin.max_connections",
                format!(
                    "expected 1 to {MAX_ADMIN_MAX_CONNECTIONS} connections, found {connections}"
                ),
            ));
        }
        for (name, timeout) in [
            ("header_read_timeout", &admin.header_read_timeout),
            ("idle_timeout", &admin.idle_timeout),
        ] {
            if !ADMIN_TIMEOUT_RANGE.contains(&timeout.get_ref().0) {
                problems.push(source.problem(
                    Some(timeout.span()),
                    format!("admin.{name}"),
                    format!(
                        "expected {} to {}, found {}",
                        HumanDuration(*ADMIN_TIMEOUT_RANGE.start()),
                        HumanDuration(*ADMIN_TIMEOUT_RANGE.end()),
                        timeout.get_ref()
                    ),
                ));
            }
        }
        problems
    }
}
