"""The one permission table: which role may do what. Later features add rows here, never checks elsewhere."""
from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    ANALYST = "analyst"


class Action(StrEnum):
    VIEW = "view"                      # payments, balances, ledger, events, logs; export
    MOVE_MONEY = "move_money"          # refund, capture, cancel
    MANAGE_DEVELOPERS = "manage_developers"  # API keys, webhook endpoints
    MANAGE_TEAM = "manage_team"        # invite, change role, remove member
    MANAGE_SETTINGS = "manage_settings"  # branding, settings
    MANAGE_SECURITY = "manage_security"  # members' second factor requirement, refund re-authentication threshold
    VIEW_AUDIT_LOG = "view_audit_log"
    VIEW_LEDGER = "view_ledger"        # balances, ledger account statements (developers see payments, not books)
    RESPOND_TO_DISPUTES = "respond_to_disputes"  # save and submit evidence, accept a dispute
    MANAGE_RISK = "manage_risk"        # risk rules and value lists (issue 19)
    REVIEW_PAYMENTS = "review_payments"  # approve or reject payments held for review (issue 19)
    MANAGE_PAYOUTS = "manage_payouts"  # sellers, their bank accounts (after re-authentication), payouts (issue 22)


_EVERYONE = frozenset(Role)

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.VIEW: _EVERYONE,
    Action.MOVE_MONEY: frozenset({Role.OWNER, Role.ADMIN}),
    Action.MANAGE_DEVELOPERS: frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER}),
    Action.MANAGE_TEAM: frozenset({Role.OWNER, Role.ADMIN}),
    Action.MANAGE_SETTINGS: frozenset({Role.OWNER, Role.ADMIN}),
    Action.MANAGE_SECURITY: frozenset({Role.OWNER}),
    Action.VIEW_AUDIT_LOG: frozenset({Role.OWNER, Role.ADMIN}),
    Action.VIEW_LEDGER: frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST}),
    Action.RESPOND_TO_DISPUTES: frozenset({Role.OWNER, Role.ADMIN}),
    Action.MANAGE_RISK: frozenset({Role.OWNER, Role.ADMIN}),
    Action.REVIEW_PAYMENTS: frozenset({Role.OWNER, Role.ADMIN}),
    Action.MANAGE_PAYOUTS: frozenset({Role.OWNER, Role.ADMIN}),
}


def can(role: str | Role | None, action: Action) -> bool:
    """Whether a member with this role may perform the action."""
    if role is None:
        return False
    try:
        return Role(role) in PERMISSIONS[action]
    except ValueError:
        return False


def can_manage_member(actor_role: str, target_role: str) -> bool:
    """Team rule: admins cannot change or remove the owner; only owners and admins manage the team."""
    if not can(actor_role, Action.MANAGE_TEAM):
        return False
    return not (target_role == Role.OWNER and actor_role != Role.OWNER)


# Which roles a team manager may give (by invitation or role change). Ownership is not handed out from the
# team page: a merchant's owner is who signed it up (an ownership transfer would be its own, audited flow).
ASSIGNABLE_ROLES: dict[Role, frozenset[Role]] = {
    Role.OWNER: frozenset({Role.ADMIN, Role.DEVELOPER, Role.ANALYST}),
    Role.ADMIN: frozenset({Role.ADMIN, Role.DEVELOPER, Role.ANALYST}),
    Role.DEVELOPER: frozenset(),
    Role.ANALYST: frozenset(),
}


def can_assign_role(actor_role: str | Role | None, new_role: str | Role) -> bool:
    """Whether a member with actor_role may invite someone as, or change someone to, new_role."""
    try:
        return can(actor_role, Action.MANAGE_TEAM) and Role(new_role) in ASSIGNABLE_ROLES[Role(actor_role)]
    except ValueError:
        return False
