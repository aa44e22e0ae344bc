"""Page-number pagination over mongoengine querysets: `page`/`limit`, strict about both."""

import math

from django import forms
from django.core.exceptions import ValidationError as FormValidationError
from django.core.paginator import Paginator
from django.utils.functional import cached_property
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response


class DocumentPaginator(Paginator):
    """Django's Paginator over a mongoengine QuerySet, counted by the server.

    Django calls `count()` only when it takes no arguments; mongoengine's takes `with_limit_and_skip`,
    so Django would fall back to `len()` and load every matching document.
    """

    @cached_property
    def count(self):
        # A filtered count is an index count (`count_documents`); mongoengine answers an unfiltered
        # one from the collection metadata (`estimated_document_count`) instead of scanning.
        return self.object_list.count()


class ActivityLogPagination(PageNumberPagination):
    """`?page=` (from 1) and `?limit=` (1-100, default 10); the body also says `page`, `limit`, `totalPages`.

    Invalid values are a 400 naming the parameter instead of DRF's silent fallback to the default, so a
    client that asks for 500 rows learns the limit; a page past the end is a 404.
    """

    page_size = 10
    max_page_size = 100
    page_query_param = "page"
    page_size_query_param = "limit"
    last_page_strings = ()
    invalid_page_message = "Page {page_number} is past the last page."
    django_paginator_class = DocumentPaginator

    def get_page_size(self, request):
        return self.whole_number(request, self.page_size_query_param, maximum=self.max_page_size) or self.page_size

    def get_page_number(self, request, paginator):
        return self.whole_number(request, self.page_query_param) or 1

    @staticmethod
    def whole_number(request, name, *, maximum=None):
        """The parameter as Django's IntegerField cleans it (at least 1), None if absent; else a 400 naming it."""
        field = forms.IntegerField(min_value=1, max_value=maximum, required=False)
        try:
            return field.clean(request.query_params.get(name))
        except FormValidationError as error:
            raise ValidationError({name: error.messages}) from None

    def get_paginated_response(self, data):
        """The one place the page's body is built, in the order clients read it."""
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
