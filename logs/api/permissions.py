"""Who may read which activity logs (docs/contract.md "Access control").

An account with the `logs.view_all_activity_logs` permission reads every user's logs; any other
account reads only the logs whose `userId` equals its username. The view asks `readable_logs` for
the filter that scopes its queries, and `ReadsOnlyOwnLogs` refuses a `userId` naming someone else.
"""

from rest_framework.permissions import BasePermission

from ..models import VIEW_ALL_ACTIVITY_LOGS


def reads_every_user(user):
    """Whether `user` has the all-users permission, asked of Django's authentication backends once per user object.

    A request asks up to three times (the permission check, the queryset's scope, the audit line), and an API
    process keeps a checked token's user for API_TOKEN_CACHE_SECONDS; Django's answer comes from the same
    permission cache on the object, read through every backend each time."""
    answer = getattr(user, "_reads_every_user", None)
    if answer is None:
        answer = user._reads_every_user = user.has_perm(VIEW_ALL_ACTIVITY_LOGS)
    return answer


def readable_logs(user):
    """Document filters every query of `user` must carry: none for the all-users permission."""
    return {} if reads_every_user(user) else {"user_id": user.get_username()}


class ReadsOnlyOwnLogs(BasePermission):
    """`?userId=` naming another user is a 403: the caller asked for something it may not read,
    which an empty page would hide. Other users' logs by id are a 404 instead (see the view)."""

    message = "This account may read only its own activity logs (userId must be its username)."

    def has_permission(self, request, view):
        requested = request.query_params.getlist("userId")
        if not requested or reads_every_user(request.user):
            return True
        return all(user_id == request.user.get_username() for user_id in requested)
