//! `type = "process"`: a process is running, by pidfile and/or command name.

use super::super::super::model::ProcessCheckSpec;
use super::super::super::raw::RawProcessCheck;
use super::super::ctx::Ctx;

pub(super) fn check(p: &RawProcessCheck, mut cx: Ctx<'_>) -> Option<ProcessCheckSpec> {
    if let Some(f) = &p.pidfile {
        cx.absolute(f, "pidfile");
        // Files there are the kernel's: reading /proc/kmsg consumes the kernel log.
        if ["/proc", "/sys", "/dev"].iter().any(|d| f.starts_with(d)) {
            cx.err(format!(
                "`pidfile` = {:?}: a file under /proc, /sys or /dev is not a pidfile (reading some of them has effects); give the file the service writes its PID to",
                f.display().to_string()
            ));
        }
    }
    if let Some(n) = &p.name {
        if n.is_empty() || n.contains('/') || n.chars().any(char::is_control) {
            cx.err(format!(
                "`name` = {n:?}: a command name, like \"haproxy\" (no `/`; a path goes in `pidfile`)"
            ));
        }
    }
    // A key set but unparsable has had its one error already.
    let unparsed = cx.unparsed("check.pidfile") || cx.unparsed("check.name");
    if p.pidfile.is_none() && p.name.is_none() && !unparsed {
        cx.err("set `pidfile` (like \"/run/haproxy.pid\"), `name` (like \"haproxy\") or both");
    }
    cx.finish(|| {
        Some(ProcessCheckSpec {
            pidfile: p.pidfile.clone(),
            name: p.name.clone(),
        })
    })
}
