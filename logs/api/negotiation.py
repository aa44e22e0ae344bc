"""Content negotiation: DRF's, with the answer for what nearly every API client sends given at once."""

from rest_framework.negotiation import DefaultContentNegotiation


class ApiContentNegotiation(DefaultContentNegotiation):
    """DRF's `DefaultContentNegotiation`, which parses the Accept header into media types and matches each
    against each renderer on every request. No Accept header, `*/*`, or exactly the first renderer's media
    type (`application/json`), without a `format` override, always selects the first renderer; that answer
    is given without the parsing. Anything else goes to DRF's negotiation unchanged."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if renderers and not format_suffix and self.settings.URL_FORMAT_OVERRIDE not in request.query_params:
            first = renderers[0]
            accept = request.META.get("HTTP_ACCEPT")
            if accept is None or accept == "*/*" or accept == first.media_type:
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
