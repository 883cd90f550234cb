//! Every log event the daemon writes, declared once: the `event` field of each structured log
//! line is one of these names (vector's `internal_events/` is the model). Code logs with the
//! constant, tests wait for the constant, and docs/operations.md lists each one (a test below
//! checks all three).

/// The daemon runs: its rules and actions are loaded and systemd was told READY.
pub const STARTED: &str = "started";
/// DEBUG, 10 s after start-up or the last of a row of reloads: the kB that were resident in the binary's read-only mappings when they were given back to the page cache (`released_kb`; the code in use comes back at once), or why they could not be (`error`).
pub const STARTUP_PAGES_RELEASED: &str = "startup_pages_released";
/// DEBUG, once a minute: the allocator was asked to give the memory it holds free back to the kernel (`malloc_trim`); whether it gave any (`released`) and the daemon's resident set after it (`rss_kb`).
pub const HEAP_TRIMMED: &str = "heap_trimmed";
/// The first configuration could not be made to run (no AWS region, no CA store, state directory busy); exit 1.
pub const STARTUP_FAILED: &str = "startup_failed";
/// SIGTERM or SIGINT arrived (`signal`); rules finish their cycle.
pub const STOPPING: &str = "stopping";
/// The daemon stopped, with the alerts left undelivered and the error if it stopped on one.
pub const STOPPED: &str = "stopped";
/// Every counter's value, logged once at exit.
pub const COUNTERS: &str = "counters";
/// The SIGTERM/SIGINT/SIGHUP handlers could not be installed: only SIGKILL stops the daemon.
pub const SIGNALS_UNAVAILABLE: &str = "signals_unavailable";
/// systemd could not be told the daemon's state (sd_notify).
pub const NOTIFY_FAILED: &str = "notify_failed";
/// The control socket or the metrics listener could not be set up; the daemon runs without it.
pub const CONTROL_UNAVAILABLE: &str = "control_unavailable";
/// systemd asked for keep-alive pings (`WatchdogSec=`): their interval and how often the daemon pings.
pub const WATCHDOG_ENABLED: &str = "watchdog_enabled";
/// A rule (or a reload) is stuck past its bound: keep-alive pings to systemd stop, and systemd restarts the daemon after `WatchdogSec=`.
pub const WATCHDOG_WITHHELD: &str = "watchdog_withheld";
/// The stuck rule made progress again before systemd acted: keep-alive pings resume.
pub const WATCHDOG_RESUMED: &str = "watchdog_resumed";
/// SIGHUP arrived: the configuration is loaded again.
pub const RELOAD_REQUESTED: &str = "reload_requested";
/// A reloaded configuration runs, with how many rules kept their state.
pub const CONFIG_RELOADED: &str = "config_reloaded";
/// A reloaded configuration is invalid or cannot run: the running one stays.
pub const RELOAD_REJECTED: &str = "reload_rejected";
/// A reload changed `[aws]` or `[control]`, which take effect at the next restart.
pub const RELOAD_PARTIAL: &str = "reload_partial";
/// The state directory cannot be used: nothing survives a restart (`systemctl status` says NOT SAVING STATE).
pub const STATE_UNAVAILABLE: &str = "state_unavailable";
/// A state file did not parse, or is of a version this daemon does not read: it was moved aside
/// (`state.json.corrupt-<time>`) and the daemon starts without it.
pub const STATE_CORRUPT: &str = "state_corrupt";
/// A rule's state could not be written to the state directory.
pub const STATE_NOT_SAVED: &str = "state_not_saved";
/// Rules resumed the health and unfinished actions the last run saved.
pub const RULE_STATES_RESTORED: &str = "rule_states_restored";
/// A failure streak saved before a restart began too long ago to go on: the rule counts
/// again from its next check.
pub const STREAK_NOT_RESUMED: &str = "streak_not_resumed";
/// A rule's saved state no longer reads: the rule starts afresh.
pub const RULE_STATE_UNREADABLE: &str = "rule_state_unreadable";
/// One check passed (debug level), with the streak of passes.
pub const CHECK_PASSED: &str = "check_passed";
/// One check failed, with its detail and the streak of failures.
pub const CHECK_FAILED: &str = "check_failed";
/// A rule failed: `fail_after` checks in a row failed; its `on_fail` actions run.
pub const RULE_FAILED: &str = "rule_failed";
/// A rule recovered: `recover_after` checks in a row passed; its `on_recover` actions run.
pub const RULE_RECOVERED: &str = "rule_recovered";
/// The rule flipped back before these unfinished actions completed; they are dropped.
pub const ACTIONS_DROPPED: &str = "actions_dropped";
/// A reload changed a rule's actions while some were unfinished: the new list replaces them.
pub const PENDING_ACTIONS_REPLACED: &str = "pending_actions_replaced";
/// A rule's task died (a bug): the daemon stops rather than leave the rule unwatched.
pub const RULE_TASK_CRASHED: &str = "rule_task_crashed";
/// Rule tasks did not finish within the shutdown grace period and were cut.
pub const SHUTDOWN_FORCED: &str = "shutdown_forced";
/// An action changed something (claimed the EIP, queued an alert).
pub const ACTION_DONE: &str = "action_done";
/// An action found nothing to do (the EIP is already here).
pub const ACTION_NOOP: &str = "action_noop";
/// An action was refused by a gate (`reason`); it is retried on the next cycle.
pub const ACTION_REFUSED: &str = "action_refused";
/// An action failed on the outside world (AWS, metadata); it is retried on the next cycle.
pub const ACTION_ERROR: &str = "action_error";
/// What a mutating call or command would have done, made in `--dry-run` instead.
pub const DRY_RUN: &str = "dry_run";
/// checkip showed this node's own egress address before a claim.
pub const EGRESS_VERIFIED: &str = "egress_verified";
/// A private claim reached one of its `reachability` targets in the VPC before claiming.
pub const REACHABILITY_VERIFIED: &str = "reachability_verified";
/// A private claim's address was added to a local interface (EC2 shows it on this node).
pub const LOCAL_ADDRESS_ADDED: &str = "local_address_added";
/// A private claim's address was removed from a local interface (another node holds it).
pub const LOCAL_ADDRESS_REMOVED: &str = "local_address_removed";
/// Adding or removing a private claim's local address failed (netlink's error; retried at
/// the next owner poll).
pub const LOCAL_ADDRESS_FAILED: &str = "local_address_failed";
/// `claim_route`'s route tables disagree: some send the overlay IP to one ENI, some to
/// another or nowhere.
pub const ROUTE_SPLIT: &str = "route_split";
/// Every member of a `claim_group` is on this node after its move.
pub const GROUP_CLAIMED: &str = "group_claimed";
/// A `claim_group` member did not move yet (retried), or the group ended split across nodes.
pub const GROUP_SPLIT: &str = "group_split";
/// A private claim this node made and verified was overwritten right after by another node's
/// (its write landed last): corrected in the history and by an alert.
pub const CLAIM_OVERTAKEN: &str = "claim_overtaken";
/// This node moved a private address (`claim_private_ip`, `claim_route`) to itself.
pub const ADDRESS_CLAIMED: &str = "address_claimed";
/// This node moved the Elastic IP to itself and verified it.
pub const EIP_CLAIMED: &str = "eip_claimed";
/// A claim went ahead inside its hold-down because nobody held the EIP.
pub const HOLD_DOWN_SKIPPED: &str = "hold_down_skipped";
/// The EIP did not stay on this node after the claim (another node took it, or AWS did not show it).
pub const CLAIM_UNVERIFIED: &str = "claim_unverified";
/// The last run died during a claim that did not finish; the EIP holder is as shown.
pub const CLAIM_NOT_COMPLETED: &str = "claim_not_completed";
/// The last run died during a claim that did finish: it is announced now.
pub const CLAIM_FOUND_AFTER_RESTART: &str = "claim_found_after_restart";
/// A claim the last run died in could not be settled (for example the provider changed).
pub const CLAIM_UNSETTLED: &str = "claim_unsettled";
/// `[haproxy]` only checks that the process answers: set `backend`, `frontend` or `health_url`.
pub const WEAK_READINESS_CHECK: &str = "weak_readiness_check";
/// An SNS alert was queued in the outbox.
pub const ALERT_QUEUED: &str = "alert_queued";
/// SNS accepted an alert (`message_id`).
pub const ALERT_SENT: &str = "alert_sent";
/// An SNS publish attempt failed; it is retried.
pub const ALERT_FAILED: &str = "alert_failed";
/// An alert is kept in the state directory to be sent after a restart.
pub const ALERT_KEPT: &str = "alert_kept";
/// An alert was given up on at shutdown.
pub const ALERT_UNDELIVERED: &str = "alert_undelivered";
/// An alert came after the outbox closed.
pub const ALERT_DROPPED: &str = "alert_dropped";
/// An alert was being published when the daemon stopped: not sent again, so it may be missing.
pub const ALERT_MAYBE_SENT: &str = "alert_maybe_sent";
/// One AWS API call, before it is made (debug level).
pub const AWS_CALL: &str = "aws_call";
/// Instance metadata gave this node's instance, ENI and private IP.
pub const IDENTITY_RESOLVED: &str = "identity_resolved";
/// Instance metadata did not answer; retried with backoff.
pub const IDENTITY_UNAVAILABLE: &str = "identity_unavailable";
/// Instance metadata refused the IMDSv2 token (401): a new token is fetched and the call retried.
pub const IMDS_TOKEN_REFUSED: &str = "imds_token_refused";
/// No region from `[aws]`, the environment or a profile, and instance metadata did not give one.
pub const REGION_UNAVAILABLE: &str = "region_unavailable";
/// No CA store; the configuration has no https URL, so HTTP checks go on without one (debug level).
pub const TLS_ROOTS_UNAVAILABLE: &str = "tls_roots_unavailable";
/// A backend sync round changed HAProxy (runtime commands, a reload, or both).
pub const BACKEND_SYNC_APPLIED: &str = "backend_sync_applied";
/// A backend sync round failed; HAProxy keeps its servers and the round is retried with backoff.
pub const BACKEND_SYNC_FAILED: &str = "backend_sync_failed";
/// Source entries that cannot be servers (no IPv4 address, no port, not serving), named.
pub const SERVERS_LEFT_OUT: &str = "servers_left_out";
/// Reload mode keeps wanted servers an operator put in maintenance.
pub const SERVERS_IN_MAINTENANCE: &str = "servers_in_maintenance";
/// Runtime mode put a wanted server that was in maintenance back in service.
pub const SERVER_BACK_IN_SERVICE: &str = "server_back_in_service";
/// The backend has no free server slot for a new server.
pub const SLOTS_EXHAUSTED: &str = "slots_exhausted";
/// HAProxy refused to re-address a slot; it is not used until HAProxy reloads the block.
pub const SLOT_UNUSABLE: &str = "slot_unusable";
/// A reload waits out the reload window so that changes close together cost one reload.
pub const RELOAD_COALESCED: &str = "reload_coalesced";
/// Reload mode stopped reloading one rendering that did not bring the wanted servers.
pub const RELOAD_HELD_BACK: &str = "reload_held_back";
/// The configuration file is newer than the running HAProxy: it is reloaded.
pub const CONFIG_NOT_LOADED: &str = "config_not_loaded";
/// HAProxy reloaded and showed a new worker.
pub const HAPROXY_RELOADED: &str = "haproxy_reloaded";
/// A HAProxy reload failed, with HAProxy's own alert lines.
pub const HAPROXY_RELOAD_FAILED: &str = "haproxy_reload_failed";
/// A HAProxy configuration file was installed (debug level): `check` says whether `haproxy -c`
/// ran (`run`) or not (`skipped`), `reason` why.
pub const CONFIG_INSTALLED: &str = "config_installed";
/// The `peers` section was rewritten to follow the group and HAProxy reloaded.
pub const PEERS_APPLIED: &str = "peers_applied";
/// A terminating instance's server had no sessions left and went to maintenance.
pub const DRAIN_FINISHED: &str = "drain_finished";
/// A terminating instance's server still had sessions at the drain timeout; it went to maintenance.
pub const DRAIN_TIMED_OUT: &str = "drain_timed_out";
/// The Auto Scaling lifecycle action was completed (CONTINUE) after the drain.
pub const LIFECYCLE_COMPLETED: &str = "lifecycle_completed";
/// The lifecycle action was no longer active (completed elsewhere or timed out).
pub const LIFECYCLE_ALREADY_CLOSED: &str = "lifecycle_already_closed";
/// A lifecycle heartbeat extended a drain's time.
pub const LIFECYCLE_HEARTBEAT: &str = "lifecycle_heartbeat";
/// A lifecycle heartbeat failed.
pub const LIFECYCLE_HEARTBEAT_FAILED: &str = "lifecycle_heartbeat_failed";
/// A lifecycle event of another hook was left alone.
pub const LIFECYCLE_HOOK_NOT_OURS: &str = "lifecycle_hook_not_ours";
/// A membership event from the events queue changed the servers.
pub const MEMBERSHIP_EVENT_APPLIED: &str = "membership_event_applied";
/// A membership event from the events queue changed nothing.
pub const MEMBERSHIP_EVENT_NO_CHANGE: &str = "membership_event_no_change";
/// An event on a rule's events queue is about another group (`group`; WARN the first time for each group since start or reload: whoever reads that queue for that group loses it) or, naming no group, about an instance the rule's group does not hold (DEBUG); it is deleted.
pub const MEMBERSHIP_EVENT_OTHER_GROUP: &str = "membership_event_other_group";
/// A message on the events queue is not an event this daemon reads; it is deleted.
pub const MEMBERSHIP_EVENT_UNREADABLE: &str = "membership_event_unreadable";
/// A resync, read a while after an event took an instance out, still lists it InService,
/// Healthy and running: the resync is believed and its server is back.
pub const MEMBERSHIP_EVENT_CONTRADICTED: &str = "membership_event_contradicted";
/// EC2 does not know an instance id it was asked about (`InvalidInstanceID.NotFound`): it is
/// left out like an instance that is not running.
pub const INSTANCE_UNKNOWN: &str = "instance_unknown";
/// Events could not be deleted from the queue; they come back after their visibility timeout.
pub const EVENTS_NOT_DELETED: &str = "events_not_deleted";
/// The metrics could not be written in the exposition format.
pub const METRICS_UNENCODABLE: &str = "metrics_unencodable";
/// `preflight` made one check (debug level; its result is also printed).
pub const PREFLIGHT_CHECK: &str = "preflight_check";

/// This node was paused (`source`: `command` with `by` and `reason`, or `maintenance_file`): no claim starts.
pub const PAUSED: &str = "paused";
/// The pause ended (`source`/`by`: a `resume` command, `expiry` of `--for`, or the maintenance file gone).
pub const RESUMED: &str = "resumed";
/// A move released the Elastic IP but could not associate it: nobody holds it (an alert says so).
pub const EIP_UNASSOCIATED: &str = "eip_unassociated";
/// `drill --back` returned the Elastic IP to the node the drill took it from (`from`, `to`).
pub const EIP_RETURNED: &str = "eip_returned";
/// An operator asked for a planned takeover or a drill (`action`, `by`, `drill`).
pub const TAKEOVER_REQUESTED: &str = "takeover_requested";
/// A planned takeover or drill ended (`result`; the address is here when `holds` is true).
pub const TAKEOVER_FINISHED: &str = "takeover_finished";
/// A command on the control socket was refused: the caller is not root nor the daemon's user (`uid`).
pub const CONTROL_REFUSED: &str = "control_refused";

/// Every event, for the tests that keep code, tests and docs in step.
pub const ALL: &[&str] = &[
    STARTED,
    STARTUP_PAGES_RELEASED,
    HEAP_TRIMMED,
    STARTUP_FAILED,
    STOPPING,
    STOPPED,
    COUNTERS,
    SIGNALS_UNAVAILABLE,
    NOTIFY_FAILED,
    WATCHDOG_ENABLED,
    WATCHDOG_WITHHELD,
    WATCHDOG_RESUMED,
    CONTROL_UNAVAILABLE,
    RELOAD_REQUESTED,
    CONFIG_RELOADED,
    RELOAD_REJECTED,
    RELOAD_PARTIAL,
    STATE_UNAVAILABLE,
    STATE_CORRUPT,
    STATE_NOT_SAVED,
    RULE_STATES_RESTORED,
    STREAK_NOT_RESUMED,
    RULE_STATE_UNREADABLE,
    CHECK_PASSED,
    CHECK_FAILED,
    RULE_FAILED,
    RULE_RECOVERED,
    ACTIONS_DROPPED,
    PENDING_ACTIONS_REPLACED,
    RULE_TASK_CRASHED,
    SHUTDOWN_FORCED,
    ACTION_DONE,
    ACTION_NOOP,
    ACTION_REFUSED,
    ACTION_ERROR,
    DRY_RUN,
    EGRESS_VERIFIED,
    REACHABILITY_VERIFIED,
    LOCAL_ADDRESS_ADDED,
    LOCAL_ADDRESS_REMOVED,
    LOCAL_ADDRESS_FAILED,
    ROUTE_SPLIT,
    ADDRESS_CLAIMED,
    CLAIM_OVERTAKEN,
    GROUP_CLAIMED,
    GROUP_SPLIT,
    EIP_CLAIMED,
    HOLD_DOWN_SKIPPED,
    CLAIM_UNVERIFIED,
    CLAIM_NOT_COMPLETED,
    CLAIM_FOUND_AFTER_RESTART,
    CLAIM_UNSETTLED,
    WEAK_READINESS_CHECK,
    ALERT_QUEUED,
    ALERT_SENT,
    ALERT_FAILED,
    ALERT_KEPT,
    ALERT_UNDELIVERED,
    ALERT_DROPPED,
    ALERT_MAYBE_SENT,
    AWS_CALL,
    IDENTITY_RESOLVED,
    IDENTITY_UNAVAILABLE,
    IMDS_TOKEN_REFUSED,
    REGION_UNAVAILABLE,
    TLS_ROOTS_UNAVAILABLE,
    BACKEND_SYNC_APPLIED,
    BACKEND_SYNC_FAILED,
    SERVERS_LEFT_OUT,
    SERVERS_IN_MAINTENANCE,
    SERVER_BACK_IN_SERVICE,
    SLOTS_EXHAUSTED,
    SLOT_UNUSABLE,
    RELOAD_COALESCED,
    RELOAD_HELD_BACK,
    CONFIG_NOT_LOADED,
    HAPROXY_RELOADED,
    HAPROXY_RELOAD_FAILED,
    CONFIG_INSTALLED,
    PEERS_APPLIED,
    DRAIN_FINISHED,
    DRAIN_TIMED_OUT,
    LIFECYCLE_COMPLETED,
    LIFECYCLE_ALREADY_CLOSED,
    LIFECYCLE_HEARTBEAT,
    LIFECYCLE_HEARTBEAT_FAILED,
    LIFECYCLE_HOOK_NOT_OURS,
    MEMBERSHIP_EVENT_APPLIED,
    MEMBERSHIP_EVENT_NO_CHANGE,
    MEMBERSHIP_EVENT_UNREADABLE,
    MEMBERSHIP_EVENT_OTHER_GROUP,
    MEMBERSHIP_EVENT_CONTRADICTED,
    INSTANCE_UNKNOWN,
    EVENTS_NOT_DELETED,
    METRICS_UNENCODABLE,
    PAUSED,
    RESUMED,
    EIP_RETURNED,
    EIP_UNASSOCIATED,
    TAKEOVER_REQUESTED,
    TAKEOVER_FINISHED,
    CONTROL_REFUSED,
    PREFLIGHT_CHECK,
];

#[cfg(test)]
mod tests {
    use super::ALL;
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn every_event_is_declared_once_and_logged_through_its_constant() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "an event is declared twice");
        let mut files = Vec::new();
        rust_files(&root().join("src"), &mut files);
        assert!(files.len() > 20, "the scan found the sources");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(
                !text.contains(&format!("{} = \"", "event")),
                "{} logs an event name literally: use telemetry::events",
                f.display()
            );
        }
    }

    #[test]
    fn every_event_is_in_the_operations_guide() {
        let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
        for name in ALL {
            assert!(
                doc.contains(&format!("| `{name}` |")),
                "docs/operations.md has no row for `{name}`"
            );
        }
    }

    #[test]
    fn every_event_the_tests_wait_for_exists() {
        let mut files = Vec::new();
        for dir in ["tests", "examples"] {
            rust_files(&root().join(dir), &mut files);
        }
        let mut seen = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // `wait_event(WITHIN, "name")`, `.events("name")`, `["event"] == "name"`.
            for (marker, after) in [
                ("wait_event(", ", \""),
                (".events(\"", ""),
                ("[\"event\"] == \"", ""),
            ] {
                for piece in text.split(marker).skip(1) {
                    let rest = if after.is_empty() {
                        Some(piece)
                    } else {
                        piece.split_once(after).map(|(_, r)| r).filter(|_| {
                            !piece
                                .split_once(after)
                                .is_some_and(|(a, _)| a.contains(')'))
                        })
                    };
                    let Some(rest) = rest else { continue };
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if name.is_empty() {
                        continue;
                    }
                    seen += 1;
                    assert!(
                        ALL.contains(&name.as_str()),
                        "{} waits for event `{name}`, which the daemon never logs",
                        f.display()
                    );
                }
            }
        }
        assert!(seen > 20, "the scan found the tests' events ({seen})");
    }
}
