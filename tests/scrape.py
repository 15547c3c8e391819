"""Read the service's /metrics the way Prometheus does, into samples a test can compare."""
from typing import Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families

Sample = Tuple[str, Tuple[Tuple[str, str], ...]]


def parse_metrics(text: str) -> Dict[Sample, float]:
    """Map each sample (name, sorted labels) to its value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Dict[Sample, float], name: str, **labels: str) -> float:
    """Return one sample's value; 0 when the series does not exist yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Dict[Sample, float], name: str, **labels: str) -> float:
    """Sum a metric's samples over every label not given."""
    return sum(
        v for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )
