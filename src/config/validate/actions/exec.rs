//! `type = "exec"`: run a program, without a shell, when a rule flips.

use super::super::super::defaults::{self, limits};
use super::super::super::model::ExecSpec;
use super::super::super::raw::RawExec;
use super::super::ctx::Ctx;

pub(super) fn action(name: &str, x: &RawExec, mut cx: Ctx<'_>) -> Option<ExecSpec> {
    let command = cx.command(
        x.command.as_deref(),
        r#"["/usr/local/bin/page-ops", "--urgent"]"#,
    );
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
