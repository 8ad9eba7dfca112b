"""Whose decisions salesloop may learn from: fine-tuning and in-context memory share one consent check."""

from __future__ import annotations

from collections.abc import Callable

from provenance.consent import ConsentPolicy
from tools.crm.source import CRMDataError, CRMSource

TRAINING_PURPOSE = "model_training"


def consent_checker(crm: CRMSource, policy: ConsentPolicy) -> Callable[[str], bool]:
    """May a lead's decisions train our models? Its CRM contact's model_training flag, else the policy's default."""

    def consents(lead_id: str) -> bool:
        try:
            flags = crm.contact(lead_id).consents
        except CRMDataError:  # a lead from a form, not (yet) a CRM contact
            flags = {}
        return policy.check(TRAINING_PURPOSE, flags, lead_id).allowed

    return consents
