//! The dashboard's own variables (`$datasource`, `$job`, `$instance`), replaced
//! the way Grafana's frontend replaces them, "All" included: each variable's values
//! come from the engine, exactly as its `label_values(...)` query asks.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

use super::model::{Dashboard, TemplateVariable};
use crate::promql::QueryApi;
use crate::wait::{Check, poll};

/// The text each dashboard variable stands for in a query, as Grafana's frontend
/// substitutes it before sending the query: a data source variable becomes the
/// chosen data source's uid; a query variable set to "All" becomes its `allValue`
/// (`.+`), or, without one, every value it offers, regex-escaped and joined as
/// `(a|b)`, which is what Grafana's Prometheus data source does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

impl Variables {
    /// Every variable of `dashboard` at the value it opens with, the data source
    /// variable set to `datasource_uid`, each query variable's values asked from
    /// `api` with its own `label_values(...)` query (earlier variables substituted).
    pub async fn resolve(
        dashboard: &Dashboard,
        datasource_uid: &str,
        api: &QueryApi,
    ) -> anyhow::Result<Self> {
        let mut variables = Variables::default();
        for variable in &dashboard.templating.list {
            let value = match variable.kind.as_str() {
                "datasource" => datasource_uid.to_owned(),
                "query" => {
                    let (selector, label) = variable.label_values().with_context(|| {
                        format!("variable {:?}: not a label_values() query", variable.name)
                    })?;
                    let selector = variables.expand(&selector);
                    let options = api.label_values(&label, &selector).await?;
                    anyhow::ensure!(
                        !options.is_empty(),
                        "variable {:?}: label_values({selector}, {label}) offers nothing in {}",
                        variable.name,
                        api.name()
                    );
                    anyhow::ensure!(
                        variable.defaults_to_all(),
                        "variable {:?}: only \"All\" as the default is supported here",
                        variable.name
                    );
                    all_value(variable, &options)
                }
                other => anyhow::bail!("variable {:?}: type {other:?}", variable.name),
            };
            variables.set(&variable.name, value);
        }
        Ok(variables)
    }

    /// [`resolve`](Self::resolve), retried until `timeout`: right after start-up the
    /// engine may not have the series the `label_values()` queries ask about yet.
    /// The error shows the last attempt's.
    pub async fn resolve_within(
        dashboard: &Dashboard,
        datasource_uid: &str,
        api: &QueryApi,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let what = format!("the dashboard's variables resolved by {}", api.name());
        let variables = poll(&what, timeout, crate::promql::POLL_EVERY, || async {
            match Self::resolve(dashboard, datasource_uid, api).await {
                Ok(variables) => Check::Met(variables),
                Err(e) => Check::NotYet(format!("{e:#}")),
            }
        })
        .await?;
        Ok(variables)
    }

    /// Sets `$name` to stand for `text` (already formatted for the query).
    pub fn set(&mut self, name: &str, text: impl Into<String>) {
        self.values.insert(name.to_owned(), text.into());
    }

    /// What `$name` stands for.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `text` with `$name`, `${name}` and `[[name]]` replaced for every known variable;
    /// Grafana's built-ins (`$__interval`...) and unknown names are left alone.
    #[must_use]
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(['$', '[']) {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            let (name, len) = if let Some(body) = rest.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => (&body[..end], end + 3),
                    None => ("", 0),
                }
            } else if let Some(body) = rest.strip_prefix("[[") {
                match body.find("]]") {
                    Some(end) => (&body[..end], end + 4),
                    None => ("", 0),
                }
            } else if let Some(body) = rest.strip_prefix('$') {
                let end = body
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(body.len());
                (&body[..end], end + 1)
            } else {
                ("", 0)
            };
            match self.values.get(name) {
                Some(value) if len > 0 => {
                    out.push_str(value);
                    rest = &rest[len..];
                }
                _ => {
                    let first = rest.chars().next().map_or(1, char::len_utf8);
                    out.push_str(&rest[..first]);
                    rest = &rest[first..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// What "All" of `variable` stands for, given the values it offers.
fn all_value(variable: &TemplateVariable, options: &[String]) -> String {
    if let Some(all) = &variable.all_value {
        return all.clone();
    }
    let escaped: Vec<String> = options.iter().map(|o| regex_escape(o)).collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("|")),
    }
}

/// Grafana's `prometheusSpecialRegexEscape`: a value made safe inside `=~"..."`,
/// with the backslashes doubled for the PromQL string.
#[must_use]
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn dashboard_variables_expand_in_every_spelling() {
        let mut vars = Variables::default();
        vars.set("job", "login_server");
        vars.set("instance", ".+");
        vars.set("datasource", "long-term-store");
        assert_eq!(
            vars.expand(r#"up{job=~"$job", instance=~"${instance}"} [[job]]"#),
            r#"up{job=~"login_server", instance=~".+"} login_server"#
        );
        assert_eq!(vars.expand("${datasource}"), "long-term-store");
        // Built-ins, unknown names, longer names and lone characters stay.
        assert_eq!(
            vars.expand("[$__rate_interval] $jobs $x ${y} [[z]] $ [ a[1]"),
            "[$__rate_interval] $jobs $x ${y} [[z]] $ [ a[1]"
        );
    }

    #[test]
    fn all_is_the_custom_value_or_every_value_escaped() {
        let variable = |all_value: Option<&str>| TemplateVariable {
            name: "instance".into(),
            kind: "query".into(),
            label: None,
            query: Value::Null,
            definition: Some("label_values(login_requests_total{job=~\"$job\"}, instance)".into()),
            datasource: None,
            include_all: true,
            multi: true,
            all_value: all_value.map(str::to_owned),
            current: serde_json::json!({"text": ["All"], "value": ["$__all"]}),
        };
        let options = ["127.0.0.1:8001".to_owned(), "127.0.0.1:8002".to_owned()];
        assert_eq!(all_value(&variable(Some(".+")), &options), ".+");
        assert_eq!(
            all_value(&variable(None), &options),
            r"(127\\.0\\.0\\.1:8001|127\\.0\\.0\\.1:8002)"
        );
        assert_eq!(
            all_value(&variable(None), &options[..1]),
            r"127\\.0\\.0\\.1:8001"
        );
        assert!(variable(None).defaults_to_all());
        assert_eq!(
            variable(None).label_values(),
            Some((
                r#"login_requests_total{job=~"$job"}"#.to_owned(),
                "instance".to_owned()
            ))
        );
        assert_eq!(regex_escape(r"a\b"), r"a\\\\b");
    }
}
