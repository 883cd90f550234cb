//! `type = "exec"`: run a program, without a shell, when a rule flips.

use super::super::super::defaults::{self, limits};
use super::super::super::model::ExecSpec;
use super::super::super::raw::RawExec;
use super::super::ctx::Ctx;

pub(super) fn action(name: &str, x: &RawExec, mut cx: Ctx<'_>) -> Option<ExecSpec> {
    let command = match x.command.as_deref() {
        None if cx.unparsed("command") => None,
        None | Some([]) => cx.fail("missing `command`: the program and its arguments, like [\"/usr/local/bin/page-ops\", \"--urgent\"]"),
        Some([program, ..]) if !program.starts_with('/') => cx.fail(format!(
            "`command`: the program {program:?} must be an absolute path (the daemon does not search PATH, and runs no shell)")),
        Some(c) if c.iter().any(|a| a.contains('\0')) => {
            cx.fail("`command`: an argument contains a NUL byte")
        }
        Some(c) => Some(c.to_vec()),
    };
    let timeout = cx.duration(
        x.timeout.as_deref(),
        defaults::EXEC_TIMEOUT,
        limits::CHECK_TIMEOUT,
        "timeout",
    );
    cx.finish(|| {
        Some(ExecSpec {
            name: name.to_owned(),
            command: command?,
            timeout: timeout?,
        })
    })
}
