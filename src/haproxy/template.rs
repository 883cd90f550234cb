//! Reload mode's template: the whole HAProxy configuration, rendered with minijinja.
//!
//! Variables: `nodes` (the server lines, one per server, joined so that `    {{ nodes }}`
//! indents each by four spaces: ElasticPyProxy's templates work unchanged), `servers` (a list
//! of `{name, ip, port, address}` for templates that write their own lines), `backend` and
//! `server_options`. An unknown variable is an error, never an empty string.

use super::server::Target;
use serde::Serialize;

#[derive(Serialize)]
struct Server {
    name: String,
    ip: String,
    port: u16,
    address: String,
}

/// A stable server name for a target: the same server keeps its name (and its stats) across
/// reloads, whatever else changes.
pub fn server_name(prefix: &str, t: &Target) -> String {
    format!("{prefix}_{}_{}", t.ip, t.port)
}

/// Why the template gave no configuration.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// minijinja could not parse the template, or rendering it failed (an unknown variable,
    /// a bad filter); its message names the line.
    #[error("template: {0}")]
    Invalid(#[from] minijinja::Error),
}

pub fn render(
    template: &str,
    backend: &str,
    prefix: &str,
    options: &str,
    targets: &[Target],
) -> Result<String, TemplateError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_template("haproxy.cfg", template)?;
    let servers: Vec<Server> = targets
        .iter()
        .map(|t| Server {
            name: server_name(prefix, t),
            ip: t.ip.to_string(),
            port: t.port,
            address: t.to_string(),
        })
        .collect();
    let nodes = servers
        .iter()
        .map(|s| {
            let mut l = format!("server {} {}", s.name, s.address);
            if !options.is_empty() {
                l.push(' ');
                l.push_str(options);
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n    ");
    let tmpl = env.get_template("haproxy.cfg")?;
    tmpl.render(minijinja::context! {
        nodes => nodes,
        servers => servers,
        backend => backend,
        server_options => options,
    })
    .map_err(TemplateError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(last: u8) -> Target {
        Target {
            ip: std::net::Ipv4Addr::new(10, 0, 0, last),
            port: 80,
        }
    }

    #[test]
    fn ep2_style_nodes_and_own_loops() {
        let out = render(
            "backend {{ backend }}\n    {{ nodes }}\n",
            "app",
            "app",
            "check",
            &[t(1), t(2)],
        )
        .unwrap();
        assert_eq!(
            out,
            "backend app\n    server app_10.0.0.1_80 10.0.0.1:80 check\n    server app_10.0.0.2_80 10.0.0.2:80 check\n"
        );
        let out = render(
            "{% for s in servers %}server {{ s.name }} {{ s.ip }}:{{ s.port }}\n{% endfor %}",
            "app",
            "w",
            "",
            &[t(3)],
        )
        .unwrap();
        assert_eq!(out, "server w_10.0.0.3_80 10.0.0.3:80\n");
    }

    #[test]
    fn unknown_variables_and_bad_syntax_are_errors() {
        assert!(render("{{ ssl_fc }}", "a", "a", "", &[]).is_err());
        assert!(render("{% for %}", "a", "a", "", &[]).is_err());
    }
}
