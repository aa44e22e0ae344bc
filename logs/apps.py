from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "logs"
    verbose_name = "Activity logs"

    def ready(self):
        # pymongo connects lazily, so registering the connection here costs nothing at import
        # time and never fails while MongoDB is down; the first query finds out.
        from django.db.models.signals import post_delete
        from rest_framework.authtoken.models import Token

        from .api.authentication import forget_token
        from .storage.connection import connect_database

        connect_database()
        post_delete.connect(forget_token, sender=Token, dispatch_uid="logs.forget_token")
