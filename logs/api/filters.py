"""Query-parameter filters: django-filter `FilterSet`s over the stored logs (`selectors.StoredLogs`).

django-filter builds a form from the declared filters, validates the query string with it and calls
`queryset.filter(**{"<field>__<lookup>": value})` per filter. `StoredLogs` takes the same lookup syntax,
with ActivityLog's field names, so one adapter (`DocumentFilterSet`) is all the app needs to declare
ordinary FilterSets. Values reach the database only as cleaned form values (strings, choices, datetimes),
never as operators.
"""

import copy
from datetime import timezone

from django import forms
from django.core.exceptions import ValidationError as FormValidationError
from django.core.validators import RegexValidator
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings

from ..events import ACTIONS, TIMESTAMP_MAX, TIMESTAMP_MIN, USER_ID_PATTERN


class DeclaredFilters(dict):
    """A FilterSet's `base_filters`, copied for each FilterSet django-filter builds (each request) one filter at a time.

    django-filter deep-copies them so that what it sets on its copy of a filter (the `parent` FilterSet, the
    `model`) stays with that FilterSet. The rest of a filter is its declaration (field name, lookup, the form
    field's arguments), which nothing changes after the class is built; a deep copy of it costs more than
    validating the query string. So each filter gets a copy of its own, its `method` bound to that copy as a
    deep copy would leave it, and the declaration is shared.
    """

    def __deepcopy__(self, memo):
        return {name: _own_copy(declared) for name, declared in self.items()}


class SharedFormFields(dict):
    """A filter form class's `base_fields`, given to each of its forms (one per request) as a new dict of the
    same field objects.

    Django deep-copies a form class's fields for each form, so that a form may change its own. These forms
    never change a field: they validate the query string, and the browsable API renders them, neither of
    which writes to a field or its widget. The deep copy (every field, widget, validator and message) was
    most of what the filters cost a listing.
    """

    def __deepcopy__(self, memo):
        return dict(self)


def _own_copy(declared):
    twin = copy.copy(declared)
    if declared.method is not None:
        twin.method = declared.method  # django-filter's FilterMethod, bound to the copy
    return twin


class DocumentFilterSet(filters.FilterSet):
    """A FilterSet whose queryset is the stored logs (`StoredLogs`) instead of a Django ORM QuerySet.

    Declare every filter explicitly, with a `label`: there is no Django model to derive them from.
    """

    @classmethod
    def get_filters(cls):
        return DeclaredFilters(super().get_filters())

    _form_classes = {}

    def get_form_class(self):
        """django-filter's form class, built once per FilterSet class instead of once per request (a class
        built per request is a measurable part of a request's cost): these filters' fields do not depend on
        the request, so one class serves every request, and its forms share its fields (`SharedFormFields`)."""
        form_classes = DocumentFilterSet._form_classes
        form_class = form_classes.get(type(self))
        if form_class is None:
            form_class = super().get_form_class()
            form_class.base_fields = SharedFormFields(form_class.base_fields)
            form_class = form_classes.setdefault(type(self), form_class)
        return form_class

    def filter_queryset(self, queryset):
        """django-filter's loop without its assertion that each step returns a Django ORM QuerySet."""
        for name, value in self.form.cleaned_data.items():
            queryset = self.filters[name].filter(queryset, value)
        return queryset


class DocumentFilterBackend(filters.DjangoFilterBackend):
    """DRF's django-filter backend, stricter about the query string.

    A parameter the API does not know (`userId[$ne]`, a typo such as `user_id`) or one given twice
    (`userId=a&userId=b`) is an error rather than silently ignored or last-wins, so a caller never
    mistakes an unfiltered page for a filtered one.
    """

    def filter_queryset(self, request, queryset, view):
        """The query string filters the listing; one log is addressed by its id alone, as it always was."""
        if getattr(view, "action", "list") != "list":
            return queryset
        self.reject_unknown_and_repeated_parameters(request, view)
        return super().filter_queryset(request, queryset, view)

    def reject_unknown_and_repeated_parameters(self, request, view):
        known = set(self.get_filterset_class(view).base_filters) | {api_settings.URL_FORMAT_OVERRIDE}
        paginator = getattr(view, "paginator", None)
        if paginator is not None:
            known |= set(paginator.query_parameters)
        errors = {}
        for name, values in request.query_params.lists():
            if name not in known:
                errors[name] = ["Unknown query parameter."]
            elif len(values) > 1:
                errors[name] = [f"Given {len(values)} times; give it once."]
        if errors:
            raise ValidationError(errors)


def storable_timestamp(moment, *, earliest=TIMESTAMP_MIN, latest=TIMESTAMP_MAX):
    """`moment` in UTC if it lies in `earliest`..`latest` once its offset is applied, else a form error.

    The default range is what ingestion accepts as an event's timestamp, so the widest useful bound of a query.

    An offset can push a date at the edge of the calendar out of it (`0001-01-01T00:00:00+01:00`), which
    Python cannot even represent in UTC; such a bound could not be sent to the database.
    """
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or not earliest <= utc <= latest:
        raise FormValidationError(
            f"Must lie between {earliest.isoformat()} and {latest.isoformat()} once its offset is applied.",
            code="out_of_range")
    return utc


class StorableTimestampField(IsoDateTimeField):
    def to_python(self, value):
        moment = super().to_python(value)
        return None if moment is None else storable_timestamp(moment)


class TimestampFilter(filters.IsoDateTimeFilter):
    field_class = StorableTimestampField


class ActivityLogFilterForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("from"), cleaned.get("to")
        if start and end and start > end:
            self.add_error("from", "Must not be later than `to`.")
        return cleaned


class ActivityLogFilter(DocumentFilterSet):
    """`userId`, `action`, `from`, `to` (docs/contract.md "API"); dates without a zone are taken as UTC."""

    userId = extend_schema_field({
        "type": "string",
        "pattern": rf"^{USER_ID_PATTERN.pattern}$",
        "description": "Only this user's logs (exact match).",
    })(filters.CharFilter(
        field_name="user_id",
        label="userId",
        validators=[RegexValidator(rf"\A(?:{USER_ID_PATTERN.pattern})\Z",
                                   "Not a user id: 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'.")],
    ))
    action = filters.ChoiceFilter(
        field_name="action",
        label="action",
        choices=[(action, action) for action in ACTIONS],
        help_text="Only logs of this action.",
    )
    to = TimestampFilter(
        field_name="timestamp",
        lookup_expr="lte",
        label="to",
        help_text="Logs at or before this ISO 8601 date-time (inclusive; UTC if no zone is given).",
    )

    class Meta:
        form = ActivityLogFilterForm

    @classmethod
    def get_filters(cls):
        """The declared filters with `from`, which as a Python keyword cannot be a class attribute."""
        declared = super().get_filters()
        end = declared.pop("to")
        declared["from"] = TimestampFilter(
            field_name="timestamp",
            lookup_expr="gte",
            label="from",
            help_text="Logs at or after this ISO 8601 date-time (inclusive; UTC if no zone is given).",
        )
        declared["to"] = end
        return declared
