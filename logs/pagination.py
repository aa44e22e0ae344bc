"""Page-number pagination over mongoengine querysets: `page`/`limit`, strict about both."""

import math

from django.core.paginator import EmptyPage, Page, Paginator
from django.utils.functional import cached_property
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination


class DocumentPaginator(Paginator):
    """Django's Paginator over a mongoengine QuerySet: the server counts, and only one page is read.

    Django's own `count` falls back to `len()` for mongoengine's `count(with_limit_and_skip=False)`,
    which would load every matching document.
    """

    @cached_property
    def count(self):
        # A filtered count is an index count (`count_documents`); mongoengine answers an unfiltered
        # one from the collection metadata (`estimated_document_count`) instead of scanning.
        return self.object_list.count()

    def _get_page(self, object_list, number, paginator):
        return Page(list(object_list), number, paginator)


def _positive_whole_number(request, name, default, *, maximum=None):
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 100 or int(raw) < 1:
        raise ValidationError({name: ["Must be a whole number of at least 1."]})
    value = int(raw)
    if maximum is not None and value > maximum:
        raise ValidationError({name: [f"Must be at most {maximum}."]})
    return value


class ActivityLogPagination(PageNumberPagination):
    """`?page=` (from 1) and `?limit=` (1-100, default 10); the body also says `page`, `limit`, `totalPages`.

    Invalid values are a 400 naming the parameter instead of DRF's silent clamping, so a client that
    asks for 500 rows learns the limit; a page past the end is a 404.
    """

    page_size = 10
    max_page_size = 100
    page_query_param = "page"
    page_size_query_param = "limit"
    django_paginator_class = DocumentPaginator

    def get_page_size(self, request):
        return _positive_whole_number(request, self.page_size_query_param, self.page_size, maximum=self.max_page_size)

    def get_page_number(self, request, paginator):
        return _positive_whole_number(request, self.page_query_param, 1)

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        page_size = self.get_page_size(request)
        page_number = self.get_page_number(request, None)
        paginator = self.django_paginator_class(queryset, page_size)
        try:
            self.page = paginator.page(page_number)
        except EmptyPage:
            raise NotFound(f"Page {page_number} is past the last page ({paginator.num_pages}).") from None
        if paginator.num_pages > 1 and self.template is not None:
            self.display_page_controls = True
        return list(self.page)

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        paginator = self.page.paginator
        response.data["page"] = self.page.number
        response.data["limit"] = paginator.per_page
        response.data["totalPages"] = math.ceil(paginator.count / paginator.per_page)
        response.data["results"] = response.data.pop("results")
        return response

    def get_paginated_response_schema(self, schema):
        paginated = super().get_paginated_response_schema(schema)
        paginated["required"] = ["count", "next", "previous", "page", "limit", "totalPages", "results"]
        properties = paginated["properties"]
        results = properties.pop("results")
        properties["page"] = {"type": "integer", "minimum": 1, "example": 1}
        properties["limit"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "example": 10}
        properties["totalPages"] = {"type": "integer", "minimum": 0, "example": 5}
        properties["results"] = results
        return paginated

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Page number, from 1. A page past the last one is a 404.",
                "schema": {"type": "integer", "minimum": 1, "default": 1},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Logs per page, 1-{self.max_page_size}.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "default": self.page_size},
            },
        ]
