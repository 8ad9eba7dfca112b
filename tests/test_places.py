"""Region and time zone from what a lead states, else its state and country, else unknown and the stated default."""

from __future__ import annotations

import pytest

from configs.loader import ConfigError, load_yaml_model
from tools.crm.places import PLACES_FILE, PlaceTable, derive_place


@pytest.fixture(scope="module")
def table() -> PlaceTable:
    return load_yaml_model(PLACES_FILE, PlaceTable)


@pytest.mark.parametrize("country, state, region, timezone, expected", [
    ("Germany", None, None, None, ("EMEA", "country", "Europe/Berlin", "country")),
    ("DE", None, None, None, ("EMEA", "country", "Europe/Berlin", "country")),
    ("united states", "CA", None, None, ("NA", "country", "America/Los_Angeles", "state")),
    ("CA", "ON", None, None, ("NA", "country", "America/Toronto", "state")),  # CA the country, ON not a YAML boolean
    ("Australia", "Western Australia", None, None, ("APAC", "country", "Australia/Perth", "state")),
    ("Germany", None, "NA", "America/Chicago", ("NA", "stated", "America/Chicago", "stated")),
    ("Germany", None, None, "Mars/Olympus", ("EMEA", "country", "Europe/Berlin", "country")),  # not a zone: derived instead
    ("Atlantis", None, None, None, ("unknown", "default", "UTC", "default")),
    (None, None, None, None, ("unknown", "default", "UTC", "default")),
])
def test_each_value_names_the_rule_that_decided_it(table, country, state, region, timezone, expected):
    place = derive_place(table, country, state, region, timezone)
    assert (place.region, place.region_rule, place.timezone, place.timezone_rule) == expected
    assert place.timezone in place.explain_timezone()


def test_a_broken_table_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "places.yaml"
    path.write_text("default_timezone: Europe/Bonn\ncountries: {}\n")
    with pytest.raises(ConfigError, match="default_timezone.*not an IANA time zone"):
        load_yaml_model(path, PlaceTable)
    path.write_text("default_timezone: UTC\ncountries: {}\ncountry_aliases: {DE: Germany}\n")
    with pytest.raises(ConfigError, match="country_aliases.DE: 'Germany' is not under countries"):
        load_yaml_model(path, PlaceTable)
