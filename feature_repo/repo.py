"""Module-level objects for the Feast CLI (``feast -c feature_repo plan``; see README.md here).

airloop itself applies definitions through ``tasks.features.store``; this file only exposes the
same objects, built from the active profile, to Feast's repo scanner.
"""

from config import load_config
from feature_repo.definitions import feature_definitions

_definitions = feature_definitions(load_config())
customer, merchant = _definitions.entities
customer_activity_source, merchant_risk_source, transaction_request = _definitions.sources
customer_activity_fv, merchant_risk_fv = _definitions.feature_views
(transaction_context_odfv,) = _definitions.on_demand_feature_views
(fraud_features_v1,) = _definitions.feature_services
