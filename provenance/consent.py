"""Consent and purpose: which personal data may be used for what, and through which channel.

The policy (configs/consent.yaml) names the consents a contact can give or withdraw and the purposes we use data
for. A purpose may need a consent and may use only the fields it lists. Every check returns a SourceRef, so a use
that was refused is as visible in the trace as one that was allowed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from provenance.records import SourceRef


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentFlag(Strict):
    """A contact's answer for one consent, with when and where it was given or withdrawn."""

    granted: bool
    at: AwareDatetime = Field(description="when it was given or withdrawn, with its time zone")
    source: str | None = Field(default=None, description="where it was captured: web form, unsubscribe link, call notes")


class ConsentKind(Strict):
    description: str
    default: bool = Field(description="assumed when a contact never answered; opt-in consents default to false")


class Purpose(Strict):
    description: str
    channel: Literal["email", "phone", "meeting", "none"]
    requires: str | None = Field(default=None, description="the consent a contact must have granted; none = a lawful basis without consent")
    fields: list[str] = Field(description="profile fields this purpose may use")


class ConsentPolicy(Strict):
    consents: dict[str, ConsentKind]
    purposes: dict[str, Purpose]

    @model_validator(mode="after")
    def _known_consents(self) -> ConsentPolicy:
        for name, purpose in self.purposes.items():
            if purpose.requires is not None and purpose.requires not in self.consents:
                raise ValueError(f"purpose {name} requires consent {purpose.requires!r}, which is not under consents "
                                 f"(known: {', '.join(sorted(self.consents))})")
        return self

    def check(self, purpose: str, flags: dict[str, ConsentFlag], subject: str) -> ConsentCheck:
        """May `subject` (a contact or lead id) with these consent flags be used for `purpose`?"""
        wanted = self.purpose(purpose)
        ref_id = f"consent:{purpose}"
        if wanted.requires is None:
            return ConsentCheck(purpose=purpose, allowed=True, reason=f"{purpose} needs no consent",
                                ref=SourceRef(kind="rule", id=ref_id, field=subject, note="allowed: no consent needed"))
        name = wanted.requires
        flag = flags.get(name)
        if flag is None:
            allowed = self.consents[name].default
            reason = f"{subject} never answered {name}; the policy default is {'granted' if allowed else 'refused'}"
        else:
            allowed = flag.granted
            reason = f"{subject} {'gave' if flag.granted else 'withdrew'} {name} consent on {flag.at:%Y-%m-%d %H:%M} ({flag.source or 'source not recorded'})"
        return ConsentCheck(purpose=purpose, allowed=allowed, reason=reason,
                            ref=SourceRef(kind="rule", id=ref_id, field=f"{subject}#{name}", note=("allowed: " if allowed else "refused: ") + reason))

    def purpose(self, name: str) -> Purpose:
        if name not in self.purposes:
            raise KeyError(f"no purpose {name!r} in the consent policy; add it under purposes: (known: {', '.join(sorted(self.purposes))})")
        return self.purposes[name]


class ConsentCheck(Strict):
    purpose: str
    allowed: bool
    reason: str
    ref: SourceRef
