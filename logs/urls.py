"""The API's routes (filled in by the query API)."""

urlpatterns = []
