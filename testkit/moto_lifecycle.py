"""moto_server with working Auto Scaling lifecycle hooks for instance termination.

Run it exactly like the `moto_server` console script (same argv, same env, e.g.
MOTO_ENABLE_RECORDING / MOTO_RECORDER_FILEPATH still work):

    .venv/bin/python testkit/moto_lifecycle.py -H 127.0.0.1 -p PORT

moto (5.2.x) stores lifecycle hooks but never applies them, and it has no
CompleteLifecycleAction / RecordLifecycleActionHeartbeat (HTTP 500). This file
extends moto with only what it lacks, by monkeypatching its Auto Scaling
backend and responses; everything else is stock moto.

What is added (mirroring the AWS docs on lifecycle hooks):

* If a group has a hook for `autoscaling:EC2_INSTANCE_TERMINATING`, an InService
  instance leaving the group through TerminateInstanceInAutoScalingGroup or a
  scale-in (SetDesiredCapacity, UpdateAutoScalingGroup, policies) is not
  removed: it stays in the group (DescribeAutoScalingGroups and
  DescribeAutoScalingInstances) with LifecycleState `Terminating:Wait`, its EC2
  instance keeps running, it no longer counts towards the desired capacity
  and it is not replaced (unless TerminateInstanceInAutoScalingGroup was called
  with ShouldDecrementDesiredCapacity=false, which AWS answers with a
  replacement). Scale-in picks InService, unprotected instances in group order.
  Groups with a MixedInstancesPolicy with overrides keep moto's stock scale-in.
* Its lifecycle action token is derived from the instance id, so tests can
  compute it:
      "00000000-0000-4000-8000-" + instance_id[-12:].rjust(12, "0")
  (one token per instance, shared by all of its pending TERMINATING hooks).
* CompleteLifecycleAction (CONTINUE or ABANDON) and
  RecordLifecycleActionHeartbeat need an existing group and hook and an
  instance in Terminating:Wait that the hook is pending for, matching the
  LifecycleActionToken and/or InstanceId given; otherwise they fail like AWS
  with HTTP 400 ValidationError "No active Lifecycle Action found with
  instance ID i-..." (or "... with token ..."). Completion removes that hook
  from the instance's pending hooks (ABANDON: all of them); when none remain,
  the instance is removed from the group and its EC2 instance terminated.
* Every successful completion / heartbeat is recorded as
  {"group", "hook", "instance", "token", "at": time.time()} (completions also
  "result"). Read them with GET /moto-api/lifecycle, which returns
  {"completions": [...], "heartbeats": [...]}; if env MOTO_LIFECYCLE_LOG names
  a file, each event is also appended to it as one flushed JSON line with an
  extra "kind": "completion" | "heartbeat".
* DeleteAutoScalingGroup behaves like ForceDelete: pending lifecycle actions
  are dropped (their instances terminated) and the group's hooks are deleted.
* Not modelled: HeartbeatTimeout / DefaultResult (an instance waits until it
  is completed, forever), LAUNCHING hooks, notifications (SQS/SNS/EventBridge),
  load balancer deregistration before Terminating:Wait.
"""

import json
import os
import sys
import threading
import time

import moto.server
from moto.autoscaling import models as asg_models
from moto.autoscaling import responses as asg_responses
from moto.autoscaling.exceptions import ValidationError
from moto.core.responses import EmptyResult
from moto.moto_api._internal import urls as moto_api_urls

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
WAIT = "Terminating:Wait"

Group = asg_models.FakeAutoScalingGroup
Backend = asg_models.AutoScalingBackend


def token_for(instance_id):
    """The lifecycle action token of an instance (see module docstring)."""
    return "00000000-0000-4000-8000-" + instance_id[-12:].rjust(12, "0")


def terminating_hooks(group):
    return [
        h
        for h in group.autoscaling_backend.lifecycle_hooks.values()
        if h.auto_scaling_group_name == group.name
        and h.lifecycle_transition == TERMINATING
    ]


def enter_wait(state, hooks):
    state.lifecycle_state = WAIT
    state.lifecycle_action_token = token_for(state.instance.id)
    state.pending_hooks = {h.name for h in hooks}


def is_mixed(group):
    policy = group.mixed_instances_policy or {}
    return bool(policy.get("LaunchTemplate", {}).get("Overrides"))


# --- scale-in: FakeAutoScalingGroup.set_desired_capacity -------------------
# Stock moto counts only InService instances, then terminates the surplus.
# With a TERMINATING hook we first move the surplus to Terminating:Wait, so
# stock moto sees nothing to remove. Waiting instances are hidden from the
# stock code while it runs so it can never pick them for removal.
_stock_group_set_desired_capacity = Group.set_desired_capacity


def group_set_desired_capacity(self, new_capacity):
    hooks = terminating_hooks(self)
    if hooks and not is_mixed(self):
        target = (self.min_size if new_capacity is None else new_capacity) or 0
        surplus = len(self.active_instances()) - target
        if surplus > 0:
            victims = [s for s in self.active_instances() if not s.protected_from_scale_in]
            for state in victims[:surplus]:
                enter_wait(state, hooks)
    before = list(self.instance_states)
    waiting = [s for s in before if s.lifecycle_state == WAIT]
    if not waiting:
        return _stock_group_set_desired_capacity(self, new_capacity)
    self.instance_states = [s for s in before if s.lifecycle_state != WAIT]
    try:
        _stock_group_set_desired_capacity(self, new_capacity)
    finally:
        order = {id(s): i for i, s in enumerate(before)}
        merged = self.instance_states + waiting
        self.instance_states = sorted(merged, key=lambda s: order.get(id(s), len(order)))


Group.set_desired_capacity = group_set_desired_capacity


# --- TerminateInstanceInAutoScalingGroup -----------------------------------
_stock_terminate_instance = Backend.terminate_instance


def terminate_instance(self, instance_id, should_decrement):
    state = next(
        (s for g in self.autoscaling_groups.values() for s in g.instance_states
         if s.instance.id == instance_id),
        None,
    )
    if state is None:
        return _stock_terminate_instance(self, instance_id, should_decrement)
    group = state.instance.autoscaling_group
    original_size = group.desired_capacity
    if state.lifecycle_state == WAIT:  # already terminating: nothing more to do
        return asg_models.TerminateInstanceActivity(state.instance, original_size)
    hooks = terminating_hooks(group)
    if not hooks or state.lifecycle_state != "InService":
        return _stock_terminate_instance(self, instance_id, should_decrement)
    enter_wait(state, hooks)
    if should_decrement:
        group.desired_capacity = original_size - 1
    # Launches a replacement if the capacity was not decremented.
    self.set_desired_capacity(group.name, group.desired_capacity)
    return asg_models.TerminateInstanceActivity(state.instance, original_size)


Backend.terminate_instance = terminate_instance


# --- DeleteAutoScalingGroup (ForceDelete semantics for lifecycle state) ----
_stock_delete_group = Backend.delete_auto_scaling_group


def delete_auto_scaling_group(self, group_name):
    group = self.autoscaling_groups.get(group_name)
    if group is not None:
        for key, hook in list(self.lifecycle_hooks.items()):
            if hook.auto_scaling_group_name == group_name:
                del self.lifecycle_hooks[key]
        waiting = [s for s in group.instance_states if s.lifecycle_state == WAIT]
        if waiting:
            group.instance_states = [s for s in group.instance_states if s not in waiting]
            self.ec2_backend.terminate_instances([s.instance.id for s in waiting])
    return _stock_delete_group(self, group_name)


Backend.delete_auto_scaling_group = delete_auto_scaling_group


# --- event log: /moto-api/lifecycle and $MOTO_LIFECYCLE_LOG ----------------
_events = {"completions": [], "heartbeats": []}
_events_lock = threading.Lock()


def record(kind, event):
    with _events_lock:
        _events[kind + "s"].append(event)
        path = os.environ.get("MOTO_LIFECYCLE_LOG")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"kind": kind, **event}) + "\n")
                f.flush()


def lifecycle_events(request, full_url, headers):
    with _events_lock:
        body = json.dumps(_events)
    return 200, {"Content-Type": "application/json"}, body


moto_api_urls.url_paths["{0}/moto-api/lifecycle"] = lifecycle_events


# --- /moto-api/whoami: which server answers ----------------------------------
# Tests pick a free port and then start moto on it; another server may take the port in
# between. The harness gives each moto a token and only trusts the one that echoes it.
def whoami(request, full_url, headers):
    return 200, {"Content-Type": "text/plain"}, os.environ.get("MOTO_INSTANCE_TOKEN", "")


moto_api_urls.url_paths["{0}/moto-api/whoami"] = whoami


# --- CompleteLifecycleAction / RecordLifecycleActionHeartbeat --------------
def find_action(resp):
    """The (group, hook name, instance state) a request refers to, or a ValidationError."""
    backend = resp.autoscaling_backend
    group_name = resp._get_param("AutoScalingGroupName")
    hook_name = resp._get_param("LifecycleHookName")
    token = resp._get_param("LifecycleActionToken")
    instance_id = resp._get_param("InstanceId")
    if not token and not instance_id:
        raise ValidationError("Either LifecycleActionToken or InstanceId must be specified.")
    group = backend.autoscaling_groups.get(group_name)
    hook = backend.lifecycle_hooks.get(f"{group_name}_{hook_name}")
    for state in group.instance_states if group and hook else []:
        if (
            state.lifecycle_state == WAIT
            and hook_name in state.pending_hooks
            and (not token or token == state.lifecycle_action_token)
            and (not instance_id or instance_id == state.instance.id)
        ):
            return group, hook_name, state
    what = f"instance ID {instance_id}" if instance_id else f"token {token}"
    raise ValidationError(f"No active Lifecycle Action found with {what}")


def event(group, hook_name, state):
    return {
        "group": group.name,
        "hook": hook_name,
        "instance": state.instance.id,
        "token": state.lifecycle_action_token,
        "at": time.time(),
    }


def complete_lifecycle_action(self):
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"Invalid LifecycleActionResult: {result}")
    group, hook_name, state = find_action(self)
    if result == "ABANDON":
        state.pending_hooks.clear()
    else:
        state.pending_hooks.discard(hook_name)
    if not state.pending_hooks:  # Terminating:Proceed -> Terminated
        group.instance_states = [s for s in group.instance_states if s is not state]
        backend = self.autoscaling_backend
        backend.ec2_backend.terminate_instances([state.instance.id])
        backend.update_attached_elbs(group.name)
    record("completion", {**event(group, hook_name, state), "result": result})
    return EmptyResult()


def record_lifecycle_action_heartbeat(self):
    record("heartbeat", event(*find_action(self)))
    return EmptyResult()


# call_action dispatches on the snake_case action name.
asg_responses.AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
asg_responses.AutoScalingResponse.record_lifecycle_action_heartbeat = (
    record_lifecycle_action_heartbeat
)

if __name__ == "__main__":
    sys.exit(moto.server.main(sys.argv[1:]))
