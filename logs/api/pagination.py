"""Pages of the listing (docs/contract.md "API"), both over its one newest-first order:

- numbered pages: `page` and `limit`, with the exact `count` and `totalPages`; a page past the end is a 404;
- keyset pages: `limit` logs `after` (older than) or `before` (newer than) a log named by its id, read as a
  range of the index from that log's place, with no count; `after=` with no id is the newest end.

Why keyset pages take ids, and why a numbered page's `next` continues by keyset: docs/decisions/0015-keyset-pages.md.
"""

import math
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ValidationError as FormValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from ..events import parse_uuid
from ..storage.selectors import activity_log_keyset_page, activity_log_list, activity_log_position
from .permissions import readable_logs

_AT_LEAST_ONE = MinValueValidator(1)


class ActivityLogPagination(PageNumberPagination):
    """Numbered pages (`?page=`, from 1) unless `?after=` or `?before=` asks for a keyset page; `?limit=` (1-100,
    default 10) sizes both. A numbered body also says `page`, `limit`, `totalPages`; a keyset body has no count.

    Invalid values are a 400 naming the parameter instead of DRF's silent fallback to the default, so a
    client that asks for 500 rows learns the limit; a numbered page past the end is a 404.
    """

    page_size = 10
    max_page_size = 100
    page_query_param = "page"
    page_size_query_param = "limit"
    after_query_param = "after"
    before_query_param = "before"
    last_page_strings = ()
    invalid_page_message = "Page {page_number} is past the last page."
    template = "logs/pagination.html"

    @property
    def query_parameters(self):
        """Every query parameter this paginator reads (the filter backend refuses the ones nobody reads)."""
        return self.page_query_param, self.page_size_query_param, self.after_query_param, self.before_query_param

    # --- reading the request ----------------------------------------------------------------------------

    def get_page_size(self, request):
        return self.whole_number(request, self.page_size_query_param, maximum=self.max_page_size) or self.page_size

    def get_page_number(self, request, paginator):
        return self.whole_number(request, self.page_query_param) or 1

    @staticmethod
    def whole_number(request, name, *, maximum=None):
        """The parameter as a number of ASCII digits, at least 1 (and at most `maximum`), None if absent or
        empty; else a 400 naming it. `int()` alone would also take other scripts' digits (`１`, `١٠`)."""
        text = request.query_params.get(name)
        if not text:
            return None
        try:
            if not (text.isascii() and text.isdigit()):
                raise FormValidationError("Enter a whole number in the digits 0-9.", code="invalid")
            number = int(text)
            _AT_LEAST_ONE(number)
            if maximum is not None:
                MaxValueValidator(maximum)(number)
        except (FormValidationError, ValueError) as error:  # ValueError: more digits than int() reads
            messages = error.messages if isinstance(error, FormValidationError) else ["Too many digits."]
            raise ValidationError({name: messages}) from None
        return number

    def keyset_parameter(self, request):
        """(`after` or `before`, its value) when the request asks for a keyset page, else None; a 400 if it
        also asks for a numbered page or for both sides."""
        params = request.query_params
        given = [name for name in (self.after_query_param, self.before_query_param) if name in params]
        if not given:
            return None
        name = given[-1]
        if len(given) > 1:
            raise ValidationError({name: [f"Give `{self.after_query_param}` or `{self.before_query_param}`, "
                                          "not both."]})
        if params.get(self.page_query_param):
            raise ValidationError({name: [f"Cannot be combined with `{self.page_query_param}`: a keyset page "
                                          "starts at a log, not at a page number."]})
        return name, params[name]

    def get_position(self, request, name, log_id):
        """The place of log `log_id` among the logs this account may read; a 400 naming `name` when it is
        malformed or not one of them (another user's log is as unknown as a log that never existed)."""
        try:
            parse_uuid(log_id)
        except ValueError:
            raise ValidationError({name: ["Not a log id: a UUID such as 0b6a3f9e-2f41-4c1e-9d2a-5c7e8f1a2b3c."]}) \
                from None
        position = activity_log_position(queryset=activity_log_list(filters=readable_logs(request.user)),
                                         log_id=log_id)
        if position is None:
            raise ValidationError({name: ["No log with this id."]})
        return position

    # --- the page -------------------------------------------------------------------------------------------

    def paginate_queryset(self, queryset, request, view=None):
        """A keyset page when `after` or `before` is given, else DRF's numbered page."""
        self.request = request
        self.keyset = self.keyset_parameter(request)
        if self.keyset is None:
            page = super().paginate_queryset(queryset, request, view)
            self.display_page_controls = True  # the browsable API's field for `after`, even on a single page
            return page
        name, log_id = self.keyset
        self.newest_first = name == self.after_query_param
        self.limit = self.get_page_size(request)
        if not log_id and self.newest_first:
            position = None  # `after=`: the newest end
        elif not log_id:
            raise ValidationError({name: ["Name the log whose newer logs to list."]})
        else:
            position = self.get_position(request, name, log_id)
        self.rows, self.more = activity_log_keyset_page(queryset=queryset, position=position, limit=self.limit,
                                                        newest_first=self.newest_first)
        self.started_at_a_log = position is not None
        self.display_page_controls = True
        return self.rows

    def get_paginated_response(self, data):
        """The one place a page's body is built, in the order clients read it."""
        if self.keyset is not None:
            return Response({
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "limit": self.limit,
                "results": data,
            })
        paginator = self.page.paginator
        return Response({
            "count": paginator.count,
            "next": self.get_next_link(),
            "previous": self.get_previous_link(),
            "page": self.page.number,
            "limit": paginator.per_page,
            "totalPages": math.ceil(paginator.count / paginator.per_page),
            "results": data,
        })

    # --- links ------------------------------------------------------------------------------------------

    def get_next_link(self):
        """Older logs, by keyset from this page's last log, for a numbered page too: following `next` then
        reads each log once even while new ones are stored, and no page costs more than the first."""
        if self.keyset is None:
            # A page that has a next one is not empty.
            return self.position_link(self.after_query_param, self.page[-1]) if self.page.has_next() else None
        # Read towards the newer end, a page has at least the log it started at behind it.
        has_next = self.more if self.newest_first else self.started_at_a_log
        return self.position_link(self.after_query_param, self.rows[-1]) if has_next and self.rows else None

    def get_previous_link(self):
        """Newer logs: by keyset from this page's first log; a numbered page keeps its page-number link."""
        if self.keyset is None:
            return super().get_previous_link()
        has_previous = self.started_at_a_log if self.newest_first else self.more
        return self.position_link(self.before_query_param, self.rows[0]) if has_previous and self.rows else None

    def position_link(self, name, row):
        """This request's URL with the page's position replaced by `name`=<the row's id>: filters and `limit`
        kept, parameters in DRF's order (sorted), one parse of the URL."""
        scheme, netloc, path, query, fragment = urlsplit(self.request.build_absolute_uri())
        params = {key: values for key, values in parse_qs(query, keep_blank_values=True).items()
                  if key not in (self.page_query_param, self.after_query_param, self.before_query_param)}
        params[name] = [row["_id"]]
        return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True), fragment))

    # --- the browsable API ----------------------------------------------------------------------------------

    def get_html_context(self):
        """DRF's page-number links on a numbered page, previous/next on a keyset page, and in both a field
        to start a keyset page after any log (the current filters and `limit` carried along)."""
        context = super().get_html_context() if self.keyset is None else {
            "previous_url": self.get_previous_link(), "next_url": self.get_next_link()}
        position_params = (self.page_query_param, self.after_query_param, self.before_query_param)
        context["kept_parameters"] = [(key, value) for key, value in self.request.query_params.items()
                                      if key not in position_params]
        context["after_parameter"] = self.after_query_param
        return context

    # --- the OpenAPI schema ---------------------------------------------------------------------------------

    def get_paginated_response_schema(self, schema):
        numbered = super().get_paginated_response_schema(schema)
        numbered["required"] = ["count", "next", "previous", "page", "limit", "totalPages", "results"]
        properties = numbered["properties"]
        results = properties.pop("results")
        properties["next"]["example"] = "http://api.example.org/user-logs?after=0b6a3f9e-2f41-4c1e-9d2a-5c7e8f1a2b3c"
        properties["page"] = {"type": "integer", "minimum": 1, "example": 1}
        properties["limit"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "example": 10}
        properties["totalPages"] = {"type": "integer", "minimum": 0, "example": 5}
        properties["results"] = results
        keyset = {
            "type": "object",
            "description": "A keyset page (`after` or `before` given): no count.",
            "required": ["next", "previous", "limit", "results"],
            "additionalProperties": False,  # so a numbered body, which has these keys too, is not also a keyset one
            "properties": {
                "next": properties["next"],
                "previous": {**properties["previous"], "example":
                             "http://api.example.org/user-logs?before=5d0c1e2a-7b3f-4a9e-8c6d-1f2e3a4b5c6d"},
                "limit": properties["limit"],
                "results": results,
            },
        }
        numbered["description"] = "A numbered page (no `after` or `before`): with the count."
        return {"oneOf": [numbered, keyset]}

    def get_schema_operation_parameters(self, view):
        number = {"type": "integer", "minimum": 1}
        log_id = {"type": "string", "format": "uuid"}
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Page number, from 1 (ASCII digits). A page past the last one is a 404. "
                               f"Not with `{self.after_query_param}` or `{self.before_query_param}`.",
                "schema": {**number, "default": 1},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Logs per page, 1-{self.max_page_size} (ASCII digits).",
                "schema": {**number, "maximum": self.max_page_size, "default": self.page_size},
            },
            {
                "name": self.after_query_param,
                "required": False,
                "in": "query",
                "description": "A keyset page: the `limit` logs after (older than) this log, in the same order and "
                               "filters, with no count. Empty (`after=`): the newest logs. An unknown id, or a log "
                               "this account may not read, is a 400.",
                "schema": log_id,
                "allowEmptyValue": True,
            },
            {
                "name": self.before_query_param,
                "required": False,
                "in": "query",
                "description": "A keyset page: the `limit` logs before (newer than) this log, newest first.",
                "schema": log_id,
            },
        ]
