from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "logs"
    verbose_name = "Activity logs"

    def ready(self):
        # pymongo connects lazily, so registering the connection here costs nothing at import
        # time and never fails while MongoDB is down; the first query finds out.
        from .database import connect_database

        connect_database()
