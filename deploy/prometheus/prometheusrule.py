"""Write deploy/k8s/monitoring/prometheusrule.yaml from deploy/prometheus/alerts.yml (`make prometheusrule`).

The rule groups are copied as text, comments included, under the PrometheusRule's `spec`, so that the
Kubernetes rules are the compose rules; tests/test_observability.py fails when the two differ.
"""

from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent
RULES = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = DEPLOY / "k8s" / "monitoring" / "prometheusrule.yaml"
HEADER = """\
# Generated from deploy/prometheus/alerts.yml by `make prometheusrule`: change that file, then run it.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: activity-service
  namespace: activity-service
spec:
"""


def render(rules_text):
    """The PrometheusRule manifest holding the groups of `rules_text` (a Prometheus rule file)."""
    lines = rules_text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("groups:"))
    return HEADER + "".join(f"  {line}\n" if line else "\n" for line in lines[start:])


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render(RULES.read_text()))
