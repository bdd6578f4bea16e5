"""The metric model, trait naming and per-destination encoders."""

from accoil_sync.traits.encoders import (
    Encoder,
    FieldValue,
    HubSpotEncoder,
    IntercomEncoder,
    TraitsEncoder,
    diff_fields,
    hubspot_option_value,
    hubspot_property,
    intercom_attribute,
)
from accoil_sync.traits.model import MetricValue, ObjectRecord
from accoil_sync.traits.names import (
    METRICS_FOR_KIND,
    Metric,
    ObjectKind,
    sanitize_score_name,
    trait_name,
    trait_names,
)

__all__ = [
    "METRICS_FOR_KIND",
    "Encoder",
    "FieldValue",
    "HubSpotEncoder",
    "IntercomEncoder",
    "Metric",
    "MetricValue",
    "ObjectKind",
    "ObjectRecord",
    "TraitsEncoder",
    "diff_fields",
    "hubspot_option_value",
    "hubspot_property",
    "intercom_attribute",
    "sanitize_score_name",
    "trait_name",
    "trait_names",
]
