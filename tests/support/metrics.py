"""Prometheus metrics read the way Prometheus reads them: one scrape of the text exposition."""

from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import http_get


def scrape(url):
    """{(sample name, frozenset of labels): value} from one Prometheus text exposition."""
    status, body = http_get(url)
    assert status == 200, f"{url} answered {status}"
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def value(samples, name, **labels):
    """One sample of a scrape; 0 when the scrape has none (a counter not yet moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
