//! `type = "program"`: a program's exit status decides.

use super::super::super::model::ProgramCheckSpec;
use super::super::super::raw::RawProgramCheck;
use super::super::ctx::Ctx;
use std::time::Duration;

pub(super) fn check(
    p: &RawProgramCheck,
    rule: &str,
    timeout: Option<Duration>,
    mut cx: Ctx<'_>,
) -> Option<ProgramCheckSpec> {
    let command = cx.command(
        p.command.as_deref(),
        r#"["/usr/local/bin/check_haproxy", "--quick"]"#,
    );
    let expect_exit = match p.expect_exit.as_deref() {
        None => Some(vec![0]),
        Some([]) => cx.fail("`expect_exit` is empty: list the exit statuses that pass, like [0]"),
        Some(list) => match list.iter().find(|c| !(0..=255).contains(*c)) {
            Some(c) => cx.fail(format!(
                "`expect_exit`: {c} is not an exit status (0 to 255)"
            )),
            None => Some(list.iter().map(|&c| c as i32).collect()),
        },
    };
    cx.finish(|| {
        Some(ProgramCheckSpec {
            rule: rule.to_owned(),
            command: command?,
            expect_exit: expect_exit?,
            timeout: timeout?,
        })
    })
}
