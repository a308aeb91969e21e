"""The event state machine (pure: no database, no HTTP).

    reported 已上报 → accepted 已受理 → dispatched 已派遣 → handled 已处置 → feedback 已反馈 → closed 已办结
    reported → rejected 不予受理
    reported / accepted / escalated_community → escalated_street 上报街道
    dispatched → escalated_community 上报社区 (the grid cannot settle it)
    escalated_community → dispatched / rejected;  escalated_street → dispatched / rejected
    feedback → dispatched (返工 not satisfied: dispatched again)

Who may do what (:data:`TRANSITIONS`): grid workers report, handle, feed back and escalate to the
community in their own grid; community staff accept, dispatch, reject, close and escalate to the street
in their community; street leaders dispatch or reject what was escalated to the street; admins may do
everything. Planners and viewers read aggregates only. *Where* (the scope) is enforced by the
database: an event outside the caller's street/community/grid is invisible (row-level security) and
answers 404.

Refusals: a role that may not make this move → :class:`TransitionForbidden` (403); a move that is
not possible from the event's current state (or a stale version) → :class:`TransitionConflict` (409).
Both messages name the role and the state in Chinese and English.
"""

from __future__ import annotations

from enum import StrEnum

from gisgov.errors import Forbidden, GisgovError, InvalidInput
from gisgov.security.roles import ROLE_LABELS, Role


class State(StrEnum):
    reported = "reported"
    accepted = "accepted"
    dispatched = "dispatched"
    handled = "handled"
    feedback = "feedback"
    closed = "closed"
    rejected = "rejected"
    escalated_community = "escalated_community"
    escalated_street = "escalated_street"


STATE_LABELS: dict[State, str] = {
    State.reported: "已上报",
    State.accepted: "已受理",
    State.dispatched: "已派遣",
    State.handled: "已处置",
    State.feedback: "已反馈",
    State.closed: "已办结",
    State.rejected: "不予受理",
    State.escalated_community: "已上报社区",
    State.escalated_street: "已上报街道",
}

TERMINAL = frozenset({State.closed, State.rejected})
OPEN = frozenset(State) - TERMINAL

# The time column set when an event enters a state (fixed names: never built from input).
STEP_COLUMN: dict[State, str] = {
    State.reported: "reported_at",
    State.accepted: "accepted_at",
    State.dispatched: "dispatched_at",
    State.handled: "handled_at",
    State.feedback: "feedback_at",
    State.closed: "closed_at",
    State.rejected: "rejected_at",
    State.escalated_community: "escalated_at",
    State.escalated_street: "escalated_at",
}

A, SL, CS, GW = Role.admin, Role.street_leader, Role.community_staff, Role.grid_worker

# (from, to) -> roles allowed to make that move.
TRANSITIONS: dict[tuple[State, State], frozenset[Role]] = {
    (State.reported, State.accepted): frozenset({CS, A}),
    (State.reported, State.rejected): frozenset({CS, A}),
    (State.reported, State.escalated_street): frozenset({CS, A}),
    (State.accepted, State.dispatched): frozenset({CS, A}),
    (State.accepted, State.escalated_street): frozenset({CS, A}),
    (State.dispatched, State.handled): frozenset({GW, A}),
    (State.dispatched, State.escalated_community): frozenset({GW, A}),
    (State.escalated_community, State.dispatched): frozenset({CS, A}),
    (State.escalated_community, State.escalated_street): frozenset({CS, A}),
    (State.escalated_community, State.rejected): frozenset({CS, A}),
    (State.escalated_street, State.dispatched): frozenset({SL, A}),
    (State.escalated_street, State.rejected): frozenset({SL, A}),
    (State.handled, State.feedback): frozenset({GW, A}),
    (State.feedback, State.closed): frozenset({CS, A}),
    (State.feedback, State.dispatched): frozenset({CS, A}),
}

# Who may report (create) an event: in their own scope.
REPORTERS = frozenset({GW, CS, SL, A})

# Moves that need a department (dispatch) or a note (refusal or escalation: the reason).
NEEDS_DEPARTMENT = frozenset({State.dispatched})
NEEDS_NOTE = frozenset({State.rejected, State.escalated_community, State.escalated_street})


class TransitionForbidden(Forbidden):
    """403: the role may not make this move."""


class TransitionConflict(GisgovError):
    """409: the move is not possible from the current state, or the event changed meanwhile."""

    status_code = 409


def state_label(s: State | str) -> str:
    s = State(s)
    return f"{STATE_LABELS[s]} {s.value}"


def role_label(r: Role | str) -> str:
    r = Role(r)
    return f"{ROLE_LABELS[r]} {r.value}"


def parse_state(value: str) -> State:
    try:
        return State(value)
    except ValueError:
        raise InvalidInput(
            f"未知状态 unknown event state {value!r}; known: " + ", ".join(state_label(s) for s in State)
        ) from None


def next_states(state: State | str, role: Role | str | None = None) -> list[State]:
    """States reachable in one move from ``state`` (by ``role`` when given), in table order."""
    state = State(state)
    return [t for (f, t), roles in TRANSITIONS.items() if f == state and (role is None or Role(role) in roles)]


def can(role: Role | str, frm: State | str, to: State | str) -> bool:
    return Role(role) in TRANSITIONS.get((State(frm), State(to)), frozenset())


def can_report(role: Role | str) -> bool:
    return Role(role) in REPORTERS


def refusal(role: Role | str, frm: State | str, to: State | str) -> GisgovError | None:
    """None if ``role`` may move an event from ``frm`` to ``to``; else the error to raise.

    403 when the role may never make this move from this state (the move exists for other roles, or the
    role may not reach ``to`` from any state); 409 when the role could reach ``to``, only not from the
    event's current state."""
    role, frm, to = Role(role), State(frm), State(to)
    roles = TRANSITIONS.get((frm, to))
    if roles is not None and role in roles:
        return None
    if roles is not None or not any(role in r for (_, t), r in TRANSITIONS.items() if t == to):
        who = sorted(r.value for r in roles) if roles else []
        allowed = ("；可由 allowed for: " + ", ".join(role_label(r) for r in who)) if who else ""
        return TransitionForbidden(
            f"无权限：{ROLE_LABELS[role]}不能将事件从「{STATE_LABELS[frm]}」转为「{STATE_LABELS[to]}」"
            f" not allowed: role {role.value} may not move an event from {frm.value} to {to.value}{allowed}"
        )
    nxt = next_states(frm, role)
    options = ", ".join(state_label(s) for s in nxt) if nxt else "无 none"
    return TransitionConflict(
        f"状态不符：事件当前为「{STATE_LABELS[frm]}」，{ROLE_LABELS[role]}不能转为「{STATE_LABELS[to]}」"
        f" wrong state: the event is {frm.value}; role {role.value} cannot move it to {to.value} from there"
        f" (from {frm.value} this role may go to: {options})"
    )


def check(
    role: Role | str, frm: State | str, to: State | str, *, department: str | None = None, note: str | None = None
) -> None:
    """Raise the refusal (403/409), or InvalidInput (422) when the move lacks its department or reason."""
    err = refusal(role, frm, to)
    if err is not None:
        raise err
    to = State(to)
    if to in NEEDS_DEPARTMENT and not department:
        raise InvalidInput(f"派遣须指定处置部门 dispatching ({to.value}) needs a department")
    if to in NEEDS_NOTE and not (note or "").strip():
        raise InvalidInput(f"「{STATE_LABELS[to]}」须填写理由 moving to {to.value} needs a note (the reason)")


def stale(version_sent: int, version_now: int, state: State | str) -> TransitionConflict:
    state = State(state)
    return TransitionConflict(
        f"事件已被他人更新（当前版本 {version_now}，状态「{STATE_LABELS[state]}」），请刷新后重试"
        f" the event changed meanwhile (you sent version {version_sent}, it is now version {version_now},"
        f" state {state.value}); reload and retry"
    )
