"""Query-parameter filters: django-filter `FilterSet`s over mongoengine querysets.

django-filter builds a form from the declared filters, validates the query string with it and calls
`queryset.filter(**{"<field>__<lookup>": value})` per filter. A mongoengine `QuerySet` takes the same
lookup syntax, so one adapter (`DocumentFilterSet`) is all the app needs to declare ordinary FilterSets.
Values reach the database only as cleaned form values (strings, choices, datetimes), never as operators.
"""

import copy

from django import forms
from django.http import QueryDict
from django.core.validators import RegexValidator
from django_filters import rest_framework as filters
from django_filters.constants import EMPTY_VALUES
from drf_spectacular.utils import extend_schema_field
from mongoengine.queryset import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings

from .events import ACTIONS, USER_ID_PATTERN


class DocumentFilterSet(filters.FilterSet):
    """A FilterSet whose queryset is a mongoengine `QuerySet` instead of a Django ORM one.

    Declare every filter explicitly, with a `label`: there is no Django model to derive them from.
    """

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        """django-filter's, with the queryset's document where it reads a Django `queryset.model`."""
        if queryset is None:
            raise TypeError(f"{type(self).__name__} needs the mongoengine QuerySet to filter")
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = copy.deepcopy(self.base_filters)
        for filter_ in self.filters.values():
            filter_.model = queryset._document
            filter_.parent = self

    def filter_queryset(self, queryset):
        """django-filter's loop, with `exact` meaning equality and no check for a Django ORM QuerySet.

        mongoengine reads `field__exact` as an anchored regex (`userId=user.1` would match `user-1`);
        Django and the API mean plain equality, which is also what the indexes answer.
        """
        for name, value in self.form.cleaned_data.items():
            filter_ = self.filters[name]
            if filter_.lookup_expr == "exact" and not (filter_.method or filter_.exclude):
                if value not in EMPTY_VALUES:
                    queryset = queryset.filter(**{filter_.field_name: value})
            else:
                queryset = filter_.filter(queryset, value)
            if not isinstance(queryset, QuerySet):
                raise TypeError(f"{type(self).__name__}.{name} returned {type(queryset).__name__}, not a QuerySet")
        return queryset


class DocumentFilterBackend(filters.DjangoFilterBackend):
    """DRF's django-filter backend, stricter about the query string.

    A parameter the API does not know (`userId[$ne]`, a typo such as `user_id`) is an error rather than
    silently ignored, so a caller never mistakes an unfiltered page for a filtered one.
    """

    def filter_queryset(self, request, queryset, view):
        self.reject_unknown_parameters(request, view)
        return super().filter_queryset(request, queryset, view)

    def reject_unknown_parameters(self, request, view):
        known = set(self.get_filterset_class(view).base_filters) | {api_settings.URL_FORMAT_OVERRIDE}
        paginator = getattr(view, "paginator", None)
        if paginator is not None:
            known |= {paginator.page_query_param, paginator.page_size_query_param}
        unknown = sorted(name for name in request.query_params if name not in known)
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})

    def get_filterset_class(self, view, queryset=None):
        """The view's declared FilterSet; skips the parent's Django-model consistency check."""
        return getattr(view, "filterset_class", None)


class ActivityLogFilterForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("from"), cleaned.get("to")
        if start and end and start > end:
            self.add_error("from", "Must not be later than `to`.")
        return cleaned


class ActivityLogFilter(DocumentFilterSet):
    """`userId`, `action`, `from`, `to` (CONTRACT "API"); dates without a zone are taken as UTC."""

    userId = extend_schema_field({
        "type": "string",
        "pattern": rf"^{USER_ID_PATTERN.pattern}$",
        "description": "Only this user's logs (exact match).",
    })(filters.CharFilter(
        field_name="user_id",
        label="userId",
        validators=[RegexValidator(rf"\A(?:{USER_ID_PATTERN.pattern})\Z", "Not a user id: 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'.")],
    ))
    action = filters.ChoiceFilter(
        field_name="action",
        label="action",
        choices=[(action, action) for action in ACTIONS],
        help_text="Only logs of this action.",
    )
    # `from` is a Python keyword, so the two bounds are declared through the class namespace.
    locals()["from"] = filters.IsoDateTimeFilter(
        field_name="timestamp",
        lookup_expr="gte",
        label="from",
        help_text="Logs at or after this ISO 8601 date-time (inclusive; UTC if no zone is given).",
    )
    locals()["to"] = filters.IsoDateTimeFilter(
        field_name="timestamp",
        lookup_expr="lte",
        label="to",
        help_text="Logs at or before this ISO 8601 date-time (inclusive; UTC if no zone is given).",
    )

    class Meta:
        form = ActivityLogFilterForm
