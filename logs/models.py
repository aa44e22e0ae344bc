"""Django models of the app. Activity logs are mongoengine documents (documents.py); the one model
here exists to own the app's permission, which Django ties to a model's content type."""

from django.db import models

VIEW_ALL_ACTIVITY_LOGS = "logs.view_all_activity_logs"


class ActivityLogAccess(models.Model):
    """No table: `managed = False` and nothing queries it. Its content type carries the permission
    that lets an account read every user's logs (docs/contract.md "Access control")."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_all_activity_logs", "Can read every user's activity logs")]
