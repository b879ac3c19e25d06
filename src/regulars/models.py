"""Every domain's models, imported once so metadata (and Alembic) sees all tables."""

from regulars.analytics import models as analytics_models
from regulars.customers import models as customers_models
from regulars.db import Base
from regulars.identity import models as identity_models
from regulars.jobs import models as jobs_models
from regulars.journeys import models as journeys_models
from regulars.messages import models as messages_models
from regulars.segments import models as segments_models

__all__ = [
    "Base",
    "analytics_models",
    "customers_models",
    "identity_models",
    "jobs_models",
    "journeys_models",
    "messages_models",
    "segments_models",
]
