"""A lead's sales region and time zone, from what its record states or else from its country and state.

CRM records seldom carry a time zone or a sales region. The table (configs/places.yaml) derives them; each result
names the rule that decided it, so the trace and the rep can see whether a time zone was stated, derived from the
state, derived from the country, or is the stated default because nothing was known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tools.crm.records import Region

PLACES_FILE = Path(__file__).resolve().parent.parent.parent / "configs" / "places.yaml"
PlaceRule = Literal["stated", "state", "country", "default"]


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone such as Europe/Berlin") from None
    return name


Zone = Annotated[str, AfterValidator(_zone)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CountryPlace(Strict):
    region: Region
    timezone: Zone


class PlaceTable(Strict):
    """configs/places.yaml: countries → region and time zone, states → time zone, the spellings CRMs use."""

    default_timezone: Zone = Field(description="the time zone of a lead whose country is unknown; the rep sees it is a default")
    countries: dict[str, CountryPlace]
    states: dict[str, dict[str, Zone]] = Field(default_factory=dict)
    country_aliases: dict[str, str] = Field(default_factory=dict)
    state_aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_resolve(self) -> PlaceTable:
        for alias, name in self.country_aliases.items():
            if name not in self.countries:
                raise ValueError(f"country_aliases.{alias}: {name!r} is not under countries")
        for country in self.states:
            if country not in self.countries:
                raise ValueError(f"states.{country}: add {country!r} under countries first")
        return self

    def country(self, value: str | None) -> str | None:
        """The table's name for a country however the CRM spelled it; None when the table lacks it."""
        if not value or not value.strip():
            return None
        wanted = value.strip().lower()
        for name in self.countries:
            if name.lower() == wanted:
                return name
        for alias, name in self.country_aliases.items():
            if alias.lower() == wanted:
                return name
        return None

    def state_zone(self, country: str, state: str | None) -> str | None:
        if not state or not state.strip():
            return None
        wanted = state.strip().lower()
        wanted = next((name.lower() for alias, name in self.state_aliases.items() if alias.lower() == wanted), wanted)
        return next((zone for name, zone in self.states.get(country, {}).items() if name.lower() == wanted), None)


class Place(Strict):
    """Where a lead is for selling and scheduling, with the rule behind each value."""

    region: Region | Literal["unknown"]
    region_rule: PlaceRule
    timezone: str
    timezone_rule: PlaceRule
    country: str | None = Field(description="the country as the table names it, or as the record gave it")

    def explain_timezone(self) -> str:
        return {"stated": f"{self.timezone} as the record states it",
                "state": f"{self.timezone} from the state or province in {self.country}",
                "country": f"{self.timezone} from the country {self.country}",
                "default": f"{self.timezone}: the default time zone (country {self.country or 'unknown'} is not in the table)"}[self.timezone_rule]

    def explain_region(self) -> str:
        return {"stated": f"{self.region} as the record states it", "country": f"{self.region} from the country {self.country}",
                "state": f"{self.region} from the country {self.country}",
                "default": f"unknown: country {self.country or 'unknown'} is not in the table"}[self.region_rule]


def derive_place(table: PlaceTable, country: str | None, state: str | None, region: str | None, timezone: str | None) -> Place:
    """Stated values win; else the state, then the country table; else region unknown and the default time zone."""
    name = table.country(country)
    known = table.countries.get(name) if name else None
    shown = name or (country.strip() if country and country.strip() else None)
    if region:
        region_value, region_rule = region, "stated"
    elif known:
        region_value, region_rule = known.region, "country"
    else:
        region_value, region_rule = "unknown", "default"
    if timezone and _is_zone(timezone):
        zone, zone_rule = timezone, "stated"
    elif name and (by_state := table.state_zone(name, state)):
        zone, zone_rule = by_state, "state"
    elif known:
        zone, zone_rule = known.timezone, "country"
    else:
        zone, zone_rule = table.default_timezone, "default"
    return Place(region=region_value, region_rule=region_rule, timezone=zone, timezone_rule=zone_rule, country=shown)


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
