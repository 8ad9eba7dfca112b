"""Masking of personal data: real demo contacts, exact restoration, the local vault and its erasure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from provenance.masking import MaskingSettings, MaskMapping, Masker, MaskVault, known_values, mask_row
from tools.crm.records import Contact

# Numbers that must survive masking: they carry the meaning of a sales email.
NOT_PERSONAL = ("2026-11-23", "23.11.2026", "11/23/2026", "$120,000", "2,500 employees", "2026", "1,200,000",
                "EUR 12 000 000", "v2.3.1", "Q1 2026", "850 employees", "8:30")


@pytest.fixture(scope="module")
def contacts(demo_source) -> list[Contact]:
    return [Contact.model_validate(c) for c in json.loads((demo_source / "crm" / "contacts.json").read_text())]


@pytest.fixture(scope="module")
def contact(contacts) -> Contact:
    """A contact with a phone and an accented name, so unicode word boundaries are exercised too."""
    return next(c for c in contacts if c.phone and not c.full_name.isascii() and len(c.full_name.split()) == 2)


def masker_for(*records: Contact) -> Masker:
    return Masker(known_values(records, MaskingSettings().fields))


def email_text(contact: Contact) -> str:
    first, last = contact.full_name.split()
    return (
        f"Dear {first},\n\nthanks for the call on 2026-11-23. As agreed with {contact.full_name} ({contact.email}), "
        f"the budget of $120,000 covers 2,500 employees from Q1 2026. Please call {contact.phone} or our office "
        f"at (415) 555-0134 or 415-555-0134; Berlin is +49 30 1234567.\nRegards to Mr. {last} and {contact.full_name.upper()}."
    )


def test_mask_removes_personal_data_and_keeps_the_rest(contact):
    text = email_text(contact)
    masked = masker_for(contact).mask(text)
    first, last = contact.full_name.split()
    for personal in (first, last, contact.email, contact.phone, "555-0134", "1234567"):
        assert personal not in masked
    assert contact.full_name.upper() not in masked
    for kept in ("2026-11-23", "$120,000", "2,500 employees", "Q1 2026", "Dear <PERSON_", "Regards to Mr. <PERSON_"):
        assert kept in masked


def test_unmask_restores_the_exact_original(contact):
    masker = masker_for(contact)
    text = email_text(contact)
    assert masker.unmask(masker.mask(text)) == text
    # The mapping alone restores it too: that is what the vault keeps.
    assert masker.mapping.unmask(masker.mask(text)) == text


@pytest.mark.parametrize("text", NOT_PERSONAL)
def test_dates_amounts_years_and_counts_are_not_masked(text):
    assert Masker().mask(text) == text


@pytest.mark.parametrize("phone", ["+49 30 1234567", "(415) 555-0134", "415-555-0134", "+44 20 7946 0123",
                                   "+33 1 55 12 34 56", "+55 11 5555-7065", "+1 312-555-0199"])
def test_phone_number_forms_are_masked(phone):
    assert Masker().mask(f"Call {phone} today.") == "Call <PHONE_1> today."


def test_adjacent_numbers_are_split_again():
    masker = Masker()
    assert masker.mask("(415) 555-0134 415-555-0135") == "<PHONE_1> <PHONE_2>"
    assert masker.mask("in 2026 415-555-0134") == "in 2026 <PHONE_3>"


def test_same_value_same_placeholder(contacts, contact):
    other = next(c for c in contacts if c.id != contact.id and c.phone)
    masker = masker_for(contact, other)
    once = masker.mask(f"{contact.email} and {other.email}")
    again = masker.mask(f"{other.email}, then {contact.email}")
    first, second = once.split(" and ")
    assert first != second
    assert again == f"{second}, then {first}"
    # A later masker continuing the stored mapping reuses its placeholders.
    assert Masker(mapping=masker.mapping).mask(contact.email) == first


def test_first_and_last_name_alone_are_masked(contact):
    first, last = contact.full_name.split()
    masked = masker_for(contact).mask(f"Hi {first}! {last}'s team, {contact.full_name.lower()}.")
    assert first not in masked and last not in masked and contact.full_name.lower() not in masked
    assert masked.startswith("Hi <PERSON_") and "'s team" in masked


def test_name_parts_do_not_mask_ordinary_words():
    masker = Masker({"contact_name": "Will Mark"})
    assert masker.mask("We will check the mark-up. Will agreed.") == "We will check the mark-up. <PERSON_1> agreed."


def test_mangled_placeholders_restore_unknown_ones_stay(contact):
    masker = masker_for(contact)
    placeholder = masker.mask(contact.full_name)
    name = placeholder.strip("<>")
    for mangled in (f"<{name} >", name, f"< {name.lower()}>", f"[{name}]"):
        assert masker.unmask(f"Dear {mangled}, hello") == f"Dear {contact.full_name}, hello"
    assert masker.unmask("Dear <PERSON_99> and <EMAIL_7>") == "Dear <PERSON_99> and <EMAIL_7>"


def test_mask_is_idempotent_on_masked_text(contact):
    masker = masker_for(contact)
    masked = masker.mask(email_text(contact))
    assert masker.mask(masked) == masked


def test_mask_messages(contact):
    masker = masker_for(contact)
    messages = [{"role": "system", "content": "You write sales emails."},
                {"role": "user", "content": email_text(contact), "name": "lead"}]
    masked = masker.mask_messages(messages)
    assert [m["role"] for m in masked] == ["system", "user"] and masked[1]["name"] == "lead"
    assert masked[0] == messages[0] and contact.email not in masked[1]["content"]
    assert [masker.unmask(m["content"]) for m in masked] == [m["content"] for m in messages]


def test_mask_row_keeps_structure(contact):
    masker = masker_for(contact)
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Lead: {contact.full_name}"}]
    row = {"prompt": prompt,
           "chosen": [{"role": "assistant", "content": f"Dear {contact.full_name.split()[0]}, ..."}],
           "rejected": [{"role": "assistant", "content": f"Write to {contact.email}"}],
           "label": True, "weight": 2}
    masked = mask_row(row, masker)
    assert masked.keys() == row.keys() and masked["label"] is True and masked["weight"] == 2
    assert [[m["role"] for m in masked[k]] for k in ("prompt", "chosen", "rejected")] == [["system", "user"], ["assistant"], ["assistant"]]
    dumped = json.dumps(masked, ensure_ascii=False)
    assert contact.full_name.split()[0] not in dumped and contact.email not in dumped
    assert masked["prompt"][0] == prompt[0]
    assert mask_row({"prompt": "Hi " + contact.full_name, "completion": "ok"}, masker) == {"prompt": "Hi <PERSON_1>", "completion": "ok"}


def test_known_values_and_settings(contact):
    profile = {"contact_name": contact.full_name, "email": contact.email, "phone": None, "budget_usd": 5}
    assert known_values([profile], ["contact_name", "email", "phone", "budget_usd"]) == [
        ("PERSON", contact.full_name), ("EMAIL", contact.email)]
    assert known_values([contact], ["full_name", "raw_title"]) == [("PERSON", contact.full_name), ("RAW_TITLE", contact.raw_title)]
    assert MaskingSettings().remote_llm and MaskingSettings().exports
    with pytest.raises(ValidationError):
        MaskingSettings(unknown=True)


def test_vault_round_trip(tmp_path, contact):
    vault = MaskVault(tmp_path / "masks.sqlite")
    masker = masker_for(contact)
    masked = masker.mask(email_text(contact))
    vault.put("run-1", contact.id, masker.mapping)
    # A new process (a new vault object) restores the draft the remote model wrote.
    restored = MaskVault(tmp_path / "masks.sqlite").get("run-1")
    assert restored == masker.mapping and restored.unmask(masked) == email_text(contact)
    assert vault.get("run-2") is None
    vault.put("run-1", contact.id, MaskMapping())
    assert vault.get("run-1") == MaskMapping()


def db_bytes(path: Path) -> bytes:
    """The database and whatever journal files SQLite left next to it."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_erase_contact_leaves_no_trace(tmp_path, contacts, contact):
    path = tmp_path / "masks.sqlite"
    vault = MaskVault(path)
    other = next(c for c in contacts if c.id != contact.id)
    for key, person in (("run-1", contact), ("run-2", contact), ("run-3", other)):
        masker = masker_for(person)
        masker.mask(email_text(person))
        vault.put(key, person.id, masker.mapping)
    secrets = [s.encode() for s in (contact.full_name, contact.email, contact.phone)]
    assert all(s in db_bytes(path) for s in secrets)  # otherwise the check below proves nothing

    assert vault.erase_contact(contact.id) == 2
    assert vault.get("run-1") is None and vault.get("run-2") is None
    assert not any(s in db_bytes(path) for s in secrets)
    assert not list(tmp_path.glob("masks.sqlite-*"))
    assert vault.get("run-3").unmask("<PERSON_2>") == other.full_name
    assert vault.erase_contact(contact.id) == 0
