"""OpenAPI for the parts drf-spectacular cannot introspect on its own (it expects Django models)."""

from drf_spectacular.contrib.django_filters import DjangoFilterExtension


class DocumentFilterExtension(DjangoFilterExtension):
    """Documents a `DocumentFilterSet`'s query parameters from its declared filters alone.

    The stock extension starts from the view's Django model and documents nothing without one.
    """

    target_class = "logs.api.filters.DocumentFilterBackend"
    priority = 1

    def get_schema_operation_parameters(self, auto_schema, *args, **kwargs):
        filterset_class = self.target.get_filterset_class(auto_schema.view)
        return [
            parameter
            for name, field in filterset_class.base_filters.items()
            for parameter in self.resolve_filter_field(auto_schema, None, filterset_class, name, field)
        ]
