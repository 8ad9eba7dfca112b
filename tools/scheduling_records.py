"""Records shared by the scheduling and clause tools: consultants, slots, clauses."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tools.crm.records import Industry, Region


class Consultant(BaseModel):
    """A technical consultant a rep can book; busy times live in an iCalendar file."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    email: str
    skills: list[str] = Field(min_length=1)
    industries: list[Industry] = Field(min_length=1)
    timezone: str = Field(description="IANA time zone the consultant works in")
    work_start_hour: int = Field(default=9, ge=0, le=23)
    work_end_hour: int = Field(default=17, ge=1, le=24)
    calendar_file: str = Field(description="iCalendar file name inside the calendar directory")


class Slot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consultant_id: str
    start: datetime = Field(description="timezone-aware, in the lead's time zone")
    end: datetime

    def label(self) -> str:
        """How a rep reads it, on the lead's clock: 'Mon 2026-11-23 15:00–16:00 UTC'."""
        return f"{self.start:%a %Y-%m-%d %H:%M}–{self.end:%H:%M %Z}"


class Clause(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    version: str
    title: str
    text: str


class ClauseRule(BaseModel):
    """Pick clauses when every condition given matches the deal; an empty rule always fires."""

    model_config = ConfigDict(extra="forbid")

    id: str
    industries: list[Industry] | None = None
    regions: list[Region] | None = None
    min_employees: int | None = None
    max_employees: int | None = None
    clauses: list[str] = Field(min_length=1)
