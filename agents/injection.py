"""Prompt injection: flag instruction-like customer text, quote it as data, and guard what a draft may say.

Customer text (email subject, body and attachments, web-form messages, contact fields) reaches the model's
prompt. The model never calls tools (bookings happen only in `apply` after a rep decides), so what injected
text can still do is steer the draft: promise a discount, name another customer, leak contact data. Three
defences, each cheap and deterministic:

- `detect_injection` flags instruction-like text so the rep sees the run was targeted;
- `quote_as_data` makes customer text inert inside the prompt's <customer_data> block;
- `guard_draft` removes draft sentences with prices, discounts, other accounts or contact data the model
  was not given for this lead.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.crm.source import CRMDataError

if TYPE_CHECKING:  # annotations only: agents.state may import InjectionSignal from here without a cycle
    from agents.state import CaseHit, LeadFact, LeadProfile
    from tools.crm.records import CRMEvent
    from tools.crm.source import CRMSource

SignalKind = Literal["override", "pricing", "action", "exfiltration", "markup", "obfuscation"]

# The prompt's data block; quote_as_data removes every "<" and ">" so customer text cannot close or reopen it.
DATA_OPEN, DATA_CLOSE = "<customer_data>", "</customer_data>"


class InjectionSignal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SignalKind
    pattern: str = Field(description="the rule that matched")
    excerpt: str = Field(description="the matched text with some context, as normalized for matching")
    field: str = Field(description="which text it was found in: request, contact_name, raw_title, ...")


class AllowedData(BaseModel):
    """What a draft for this lead may mention: its own contact data, prices vouched for by our data; never other accounts."""

    model_config = ConfigDict(extra="forbid")

    company: str
    email: str
    phone: str | None = None
    other_accounts: list[str] = Field(default_factory=list, description="other CRM accounts' names, never to appear in the draft")
    other_names: list[str] = Field(default_factory=list, description="other accounts' contacts, never to appear in the draft")
    texts: list[str] = Field(default_factory=list, description="what may vouch for a price: structured facts, case summaries and chunks")


# ---------------------------------------------------------------- detection

# Latin lookalikes (Cyrillic, Greek) attackers swap in to dodge keyword filters; NFKC does not fold these.
_HOMOGLYPHS = str.maketrans({"а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
                             "ԁ": "d", "ɡ": "g", "ӏ": "l", "ο": "o", "ι": "i", "τ": "t", "κ": "k", "ν": "v", "α": "a", "ε": "e"})
_HOMOGLYPH_KEYS = frozenset(chr(k) for k in _HOMOGLYPHS)
_LEET = str.maketrans("0134578@$", "oieastbas")
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*]){3,}[a-z]\b")  # "i g n o r e", "i.g.n.o.r.e"
_TAGS = re.compile(r"<[^<>]{0,60}>|[*_`~]+")
_DISCOUNT_WORDS = r"\b(?:discount(?:ed|s)?|off|rebates?|reductions?(?!\s+in\b)|markdown|rabatt|nachlass|preisnachlass|descuento|rebaja|remise|réduction|ristourne|sconto)\b"
_PERCENT = r"(\d{1,3}(?:[.,]\d+)?)\s*(?:%|percent|per\s?cent|prozent|por\s?ciento|pour\s?cent)"
# Start of a command: a clause start, or a word that introduces one ("please give", "you must offer").
_CMD = r"(?:^|[\n.!?:;>*\-\"'(]\s*|\b(?:please|must|should|shall|will|to|now|and|then|always|just|immediately)\s+)"


def _rules() -> list[tuple[SignalKind, str, re.Pattern]]:
    rules: dict[SignalKind, dict[str, str]] = {
        "override": {
            "ignore-instructions": r"\b(?:ignore|disregard|forget|override|bypass)\b(?:\s+\S+){0,4}?\s+(?:instructions?|rules|prompts?|directions|guidelines|guardrails|programming|context|the above|everything (?:above|before|else))\b",
            "new-instructions": r"\b(?:new|updated|revised|real|actual|secret|hidden)\s+(?:system\s+)?(?:instructions?|directives?|prompt)\s*[:\-]|\byour\s+(?:new|real|actual|only)\s+(?:instructions?|task|role|job|goal)\b",
            "role-change": r"\byou\s+are\s+no\s+longer\b|\byou\s+are\s+now\s+(?:a|an|in|my|free|unrestricted|dan|acting|allowed|authori[sz]ed|operating)\b|\bfrom\s+now\s+on,?\s+you\b|\b(?:pretend|imagine)\s+(?:to\s+be|you\s+are|that\s+you)\b|\brole[\s-]?play\b|\b(?:developer|dan|god)\s+mode\b|\bjailbreak|\bdo\s+anything\s+now\b",
            "system-prompt": r"(?<!our )(?<!my )\b(?:system|hidden|initial|original|internal)\s+(?:prompt|instructions)\b",  # not "our system prompt for the kiosk"
            "prompt-leak": r"\b(?:reveal|print|show|repeat|output|display|reply\s+with|respond\s+with|tell\s+me|write\s+out|quote|copy|list)\b(?:\s+\S+){0,3}?\s+your\s+(?:\w+\s+)?(?:instructions|prompt|guidelines|rules)\b|\bwhat\s+(?:are|were)\s+your\s+(?:instructions|rules)\b",
            "to-the-ai": r"\b(?:dear|hey|attention|note\s+to|message\s+to|instructions?\s+(?:to|for))\s+(?:the\s+|any\s+|an?\s+)?(?:ai|assistant|chatbot|bot|llm|language\s+model|model|agent|gpt|chatgpt)\b|\bif\s+you\s+are\s+an?\s+(?:ai|language\s+model|assistant|llm|bot)\b",
            "override-de": r"\b(?:ignorier(?:e|en)?|vergiss|vergessen\s+sie|missachte)\b(?:\s+\S+){0,4}?\s+(?:anweisungen|anleitungen|instruktionen|regeln|vorgaben)\b|\bneue\s+anweisungen\b|\b(?:du\s+bist|sie\s+sind)\s+(?:jetzt|ab\s+sofort)\b",
            "override-es": r"\b(?:ignora|ignore|olvida|olvide|omite|descarta)\b(?:\s+\S+){0,4}?\s+(?:instrucciones|reglas|indicaciones)\b|\bnuevas\s+instrucciones\b|\bahora\s+eres\b",
            "override-fr": r"\b(?:ignore[rz]?|oublie[rz]?|ne\s+tiens\s+pas\s+compte)\b(?:\s+\S+){0,4}?\s+(?:consignes|règles|directives)\b|\boublie[rz]?\b(?:\s+\S+){0,4}?\s+instructions\b|\bnouvelles\s+(?:instructions|consignes)\b|\b(?:tu\s+es|vous\s+êtes)\s+maintenant\b",
        },
        "pricing": {
            # A customer asking for a discount for themselves ("please offer us 15%") negotiates; only a steep one is flagged.
            "discount-command": _CMD + r"(?:offer|give|apply|grant|provide|include|quote|add|extend|promise|put|gewähre|gib|biete|ofrece|aplica|danos|ofrezca|offre|accorde|applique)\b(?!\s+(?:us|me)\b)[^.!?\n]{0,40}?" + _PERCENT,
            "zero-price": r"(?:make|set|mark|change|list|give|provide|offer|deliver|ship|quote|put)\b[^.!?\n]{0,40}?\b(?:free\s+of\s+charge|for\s+free|at\s+no\s+(?:extra\s+|additional\s+)?cost)\b|\b(?:price|cost|fee|total)\s+(?:of|to|at|=|:)\s*(?:usd|eur|\$|€|£)?\s*0(?![.,]?\d)|[$€£]\s?0(?:[.,]00)?(?![.,]?\d)|\b(?:kostenlos|gratis|gratuit(?:ement)?|sin\s+costo|sans\s+frais)\b",
            "waive": _CMD + r"waive\b|\bwaive[sd]?\s+(?:all|every|any)\b",
        },
        "action": {
            "book-executive": r"\b(?:book|schedule|arrange|buche|buchen|reserva|agenda|réserve[rz]?)\b[^.!?\n]{0,30}?\b(?:the|your|their|den|el|le)\s+(?:ceo|cfo|cto|coo|founder|president|chairman|geschäftsführer|vorstand|pdg|director\s+general)\b",
            "act-now": r"\b(?:book|schedule|reschedule|cancel|call)\b[^.!?\n]{0,40}?\b(?:right\s+now|immediately|at\s+once|right\s+away|now)\b(?!\s+that)|\b(?:buche|buchen|reserva|reservar|agenda|réserve[rz]?|planifie[rz]?)\b[^.!?\n]{0,40}?\b(?:sofort|jetzt|umgehend|ahora|inmediatamente|maintenant|immédiatement|tout\s+de\s+suite)\b",
            "skip-approval": r"\bwithout\s+(?:(?:the|a|any|human|rep'?s?|manager'?s?|sales)\s+)*(?:approval|review|sign[- ]?off|checking\s+with)\b|\b(?:skip|bypass)\s+(?:the\s+)?(?:approval|review|rep|human)\b|\bauto[- ]?(?:approve|book|confirm)\b",
            "cancel-all": r"\bcancel\s+(?:all|every|each|their)\b|\bdelete\s+(?:all|every|the)\s+(?:records|contacts|deals|data|meetings|bookings)\b",
        },
        "exfiltration": {
            "send-all": r"\b(?:send|give|email|forward|share|provide|attach|paste|export|dump|leak|reveal|list|print|show)\b(?:\s+(?:me|us|them))?\s+(?:\S+\s+){0,3}?(?:all|every|each|the\s+(?:full|complete|whole|entire))\s+(?:(?:of\s+)?(?:your|the|other|their)\s+)?(?:\w+\s+)?(?:contacts?|customers?|clients?|leads?|accounts?|deals?|email\s+addresses|phone\s+numbers|records|crm|database|prospects)\b",
            "list-customers": r"\blist\s+(?:of\s+)?(?:all\s+)?(?:(?:your|the|other)\s+)*(?:customers|clients|contacts|email\s+addresses|emails|phone\s+numbers|accounts|leads)\b",
            "export-crm": r"\b(?:export|dump|download|extract|copy|leak)\b[^.!?\n]{0,30}?\b(?:the|your)\s+(?:crm|database|customer\s+data|contact\s+list|address\s+book)\b",
            "other-customers": r"\bother\s+(?:customers|clients|accounts)['’]|\b(?:other|another)\s+(?:customers?|clients?|accounts?|companies)['’]?s?\s+(?:\w+\s+){0,2}?(?:data|details|contacts|emails|email\s+addresses|phone\s+numbers|names|prices|pricing|contracts|deals|information|records)\b|\b(?:names|emails|contacts|phone\s+numbers|email\s+addresses)\s+of\s+(?:all\s+|your\s+|the\s+)*(?:other\s+)?(?:customers|clients|accounts|contacts)\b",
            "exfil-multilingual": r"\b(?:alle|sämtliche)\s+(?:ihre[nr]?\s+)?(?:kontakte|kunden|kundendaten|e-mail-adressen)\b|\bkundenliste\b|\btodos\s+los\s+(?:contactos|clientes)\b|\blista\s+de\s+(?:clientes|contactos)\b|\btous\s+(?:les|vos)\s+(?:contacts|clients)\b|\bliste\s+(?:des|de\s+vos|de\s+tous\s+vos)\s+(?:clients|contacts)\b",
        },
        "markup": {
            "chat-token": r"<\|[^|<>]{1,30}\|>|\[/?inst\]|<<\s*/?\s*sys\s*>>|</?s>|<\s*/?\s*(?:system|assistant|user|instructions?)\s*>",
            "role-line": r"(?:^|\n|[.!?]\s+|[\]>|#*(]\s*)(?:system|assistant|ai)\s*:|#{2,}\s*(?:system|instructions?|assistant|user|response|admin)\b|\[\s*(?:system|admin|developer|assistant)(?:\s+(?:message|note|prompt))?\s*\]|\b(?:system|admin|developer)\s+(?:message|note|notice|override|command)\s*[:\-\]]",
            "json-role": r"[\"']role[\"']\s*:\s*[\"'](?:system|assistant|user|developer)",
            "html-hidden": r"<!--\s*(?:[^\s<>]+\s+){3,}|<\s*script\b|display\s*:\s*none|font-size\s*:\s*0|visibility\s*:\s*hidden|color\s*:\s*(?:#?fff(?:fff)?|white)\b",
            "fake-delimiter": r"</?\s*customer_data\s*>|\bend\s+of\s+(?:customer\s+)?data\b|\bend\s+of\s+(?:the\s+)?(?:email|message|document)\s*[-=*#>\]]",
            "fake-turn": r"\b(?:previous|prior|earlier|last)\s+(?:assistant|ai|model|bot)\s+(?:reply|response|turn|message|answer)\b|\b(?:the\s+)?assistant\s+(?:replied|said|wrote|agreed|confirmed)\b",
        },
    }
    return [(kind, name, re.compile(rx, re.IGNORECASE | re.MULTILINE)) for kind, named in rules.items() for name, rx in named.items()]


_RULES = _rules()
_STEEP = re.compile(_PERCENT + r"[^.!?\n]{0,25}?" + _DISCOUNT_WORDS + r"|" + _DISCOUNT_WORDS + r"[^.!?\n]{0,25}?" + _PERCENT, re.IGNORECASE)
_STEEP_MIN = 50  # a discount this size is no normal negotiation ask: flag it however it is phrased


def strip_invisible(text: str) -> str:
    """NFKC (fullwidth and compatibility forms to plain ones), minus format characters such as zero-width spaces."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf" and (ch in "\n\t" or unicodedata.category(ch) != "Cc"))


def _views(text: str) -> tuple[str, str]:
    """The text as matched: normalized, and a plain view without markup, spacing tricks or leetspeak."""
    norm = strip_invisible(text).casefold().translate(_HOMOGLYPHS)
    # Join "i g n o r e" before collapsing whitespace, so the wider gaps between spaced-out words survive.
    plain = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group()), _TAGS.sub(" ", norm)).translate(_LEET)
    return _collapse(norm), _collapse(plain)


def _collapse(text: str) -> str:
    return re.sub(r"[^\S\n]+", " ", text)


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _excerpt(view: str, start: int, end: int) -> str:
    return " ".join(view[max(0, start - 30): end + 30].split())[:160]


def _steep_discount(view: str) -> re.Match | None:
    for match in _STEEP.finditer(view):
        if max(_number(g) for g in match.groups() if g) >= _STEEP_MIN:
            return match
    return None


def _scan(name: str, text: str) -> list[InjectionSignal]:
    base, plain = _views(text)
    found: dict[str, InjectionSignal] = {}
    for kind, pattern, rx in _RULES:
        # The plain view catches obfuscated text; the base view keeps markup and digits the rules need.
        for view in (base, plain):
            if pattern not in found and (m := rx.search(view)):
                found[pattern] = InjectionSignal(kind=kind, pattern=pattern, excerpt=_excerpt(view, m.start(), m.end()), field=name)
    if "discount-command" not in found and (m := _steep_discount(base)):
        found["steep-discount"] = InjectionSignal(kind="pricing", pattern="steep-discount", excerpt=_excerpt(base, m.start(), m.end()), field=name)
    if found and _obfuscated(text, base):
        found["obfuscated"] = InjectionSignal(kind="obfuscation", pattern="hidden or lookalike characters", excerpt=_excerpt(base, 0, 80), field=name)
    return list(found.values())


def _obfuscated(text: str, base: str) -> bool:
    """Zero-width, fullwidth or lookalike characters, or spaced-out letters, next to a match: someone hid it."""
    hidden = any(unicodedata.category(ch) == "Cf" or "\uff01" <= ch <= "\uff5e" or ch in _HOMOGLYPH_KEYS for ch in text.casefold())
    return hidden or bool(_SPACED.search(base))


def detect_injection(texts: dict[str, str]) -> list[InjectionSignal]:
    """Instruction-like content in each named text: overrides, pricing or action commands, data requests, markup."""
    return [signal for name, text in texts.items() if text for signal in _scan(name, text)]


def lead_texts(lead: LeadProfile) -> dict[str, str]:
    """Everything of a lead that a customer (or a CRM user) could have typed."""
    return {"request": lead.request, "contact_name": lead.contact_name, "raw_title": lead.raw_title, "account_name": lead.account_name}


def describe(signals: list[InjectionSignal]) -> str:
    """One line for the trace and the rep."""
    parts = [f"{s.kind}/{s.pattern} in {s.field}: {s.excerpt!r}" for s in signals]
    return f"possible prompt injection ({len(signals)} signal(s)): " + "; ".join(parts)


# ---------------------------------------------------------------- quoting

# Angle brackets open every chat-control token (<|im_start|>, </s>, <<SYS>>) and our own delimiter;
# square brackets would let customer text forge [L#]/[C#] citation markers or [INST] blocks.
_NEUTRAL = str.maketrans({"<": "‹", ">": "›", "[": "(", "]": ")"})


def quote_as_data(text: str) -> str:
    """Customer text made inert for the prompt's data block: no delimiter, no control tokens, one line."""
    text = strip_invisible(text).translate(_NEUTRAL)
    # One line: nothing inside can start a line that looks like a role header ("### system", "assistant:").
    return re.sub(r"#{2,}", "#", " ".join(text.split()))


# ---------------------------------------------------------------- the output guard

_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
# A phone: digit groups with at least 9 digits, so amounts ($214,500) and dates (2026-11-20) are not phones.
_PHONE = re.compile(r"(?<![\w$€£.,])\+?\(?\d[\d\s().\-/]{6,}\d(?![\w%])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}")
_MONEY = re.compile(r"(?:(?<![a-z])(?:usd|us\$|eur|gbp|jpy|chf|\$|€|£|¥)\s?(\d[\d,.]*)\s*(k|m|thousand|million)?|(\d[\d,.]*)\s*(k|m|thousand|million)?\s*(?:usd|eur|gbp|dollars?|euros?|pounds?))(?![\w])", re.IGNORECASE)
_PCT = re.compile(_PERCENT, re.IGNORECASE)
# A percentage next to a discount word; the guard also counts savings and "cheaper" as price talk.
_PRICE_WORDS = _DISCOUNT_WORDS[:-3] + r"|cheaper|save|savings|price\s+cut)\b"
_PCT_DISCOUNT = re.compile(_PERCENT + r"[^.!?\n]{0,25}?" + _PRICE_WORDS + r"|" + _PRICE_WORDS + r"[^.!?\n]{0,25}?" + _PERCENT, re.IGNORECASE)
_FREE = re.compile(r"\b(?:free\s+of\s+charge|for\s+free|at\s+no\s+(?:extra\s+|additional\s+)?cost|no\s+charge|waive[sd]?|complimentary|gratis|kostenlos|gratuit)\b", re.IGNORECASE)
_LEGAL = re.compile(r"[\s,]+(?:gmbh|ag|inc\.?|llc|ltd\.?|ltda\.?|limited|plc|k\.k\.|spa|s\.p\.a\.|sas|s\.a\.(?:\s+de\s+c\.v\.)?|b\.v\.|pte\.?(?:\s+ltd\.?)?|co\.)$", re.IGNORECASE)
# A claim that a meeting was booked: only apply books, after the rep decides, so a draft never may say it happened.
BOOKED = re.compile(r"\b(?:have|has|had|'ve|is|are|was|were|been|i|we)\s+(?:now\s+|already\s+|just\s+)?(?:booked|reserved|scheduled|arranged|set\s+up|cancel+ed)\b", re.IGNORECASE)
MEETING = re.compile(r"\b(?:call|meeting|appointment|demo|slot|session|workshop|calendar|invite|ceo|cfo|cto|consultant)\b", re.IGNORECASE)
# Fields a customer types freely: their words never vouch for a price ("offer a 90% discount" is in the request).
FREE_TEXT_FIELDS = frozenset({"request", "contact_name", "raw_title", "account_name"})
# Sentence ends as draft.py's whole_sentences sees them (markers stay with their sentence), plus line breaks.
_SENTENCE_END = re.compile(r"[.!?](?:\s*\[[^\]]*\])*(?=\s+[^a-z\s\[]|\s*$)|\n")


def _amount(digits: str, scale: str | None) -> int | None:
    """USD 120,000 / $120k / 120.000 EUR -> 120000; decimals like 1.5m keep their fraction."""
    scale_of = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000}.get((scale or "").lower(), 1)
    cleaned = digits.rstrip(".,")
    if scale_of > 1 and re.fullmatch(r"\d+[.,]\d{1,2}", cleaned):
        return round(float(cleaned.replace(",", ".")) * scale_of)
    number = re.sub(r"[,.]", "", cleaned)
    return int(number) * scale_of if number else None


def _amounts(text: str) -> set[int]:
    return {a for m in _MONEY.finditer(text) if (a := _amount(m.group(1) or m.group(3), m.group(2) or m.group(4))) is not None}


def _percents(text: str) -> set[float]:
    return {_number(m.group(1)) for m in _PCT.finditer(text)}


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _phones(text: str) -> list[str]:
    return [m.group() for m in _PHONE.finditer(text) if 9 <= len(_digits(m.group())) <= 15 and not _DATE.match(m.group().lstrip("+("))]


def core_name(name: str) -> str:
    """An account's name without its legal form, so "Granite Peak MedTech" is caught without "K.K."."""
    core = name.strip()
    while (stripped := _LEGAL.sub("", core)) != core:
        core = stripped
    return core


def _name_pattern(names: list[str], keep: str) -> re.Pattern | None:
    """One regex for all names (legal forms dropped), except the lead's own."""
    keep_core = core_name(keep).casefold()
    cores = sorted({c for n in names if len(c := core_name(n)) >= 4 and c.casefold() != keep_core}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(c) for c in cores) + r")(?!\w)", re.IGNORECASE) if cores else None


class _Guard:
    """The checks for one lead, compiled once: each returns why a sentence must go, or None."""

    def __init__(self, allowed: AllowedData):
        given = "\n".join(allowed.texts)
        self.amounts, self.percents = _amounts(given), _percents(given)
        self.free_given = bool(_FREE.search(given))
        self.email = allowed.email.casefold()
        self.phone = _digits(allowed.phone or "")[-9:]  # national and international forms share the last digits
        self.accounts = _name_pattern(allowed.other_accounts, allowed.company)
        self.people = _name_pattern(allowed.other_names, "")

    def why(self, sentence: str) -> str | None:
        for check in (self._money, self._discount, self._contact, self._others, self._booking):
            if reason := check(sentence):
                return reason
        return None

    def _money(self, s: str) -> str | None:
        unknown = sorted(_amounts(s) - self.amounts)
        if unknown:
            return f"states an amount not in the facts or cases ({', '.join(f'{a:,}' for a in unknown)})"
        return "offers something free or waived, which no fact or case says" if _FREE.search(s) and not self.free_given else None

    def _discount(self, s: str) -> str | None:
        stated = {_number(g) for m in _PCT_DISCOUNT.finditer(s) for g in m.groups() if g}
        unknown = sorted(stated - self.percents)
        return f"states a discount not in the facts or cases ({', '.join(f'{p:g}%' for p in unknown)})" if unknown else None

    def _contact(self, s: str) -> str | None:
        # Values are left out of the note: they are someone's personal data.
        if any(e.casefold() != self.email for e in _EMAIL.findall(s)):
            return "contains an email address that is not the lead's"
        return "contains a phone number that is not the lead's" if any(_digits(p)[-9:] != self.phone for p in _phones(s)) else None

    def _others(self, s: str) -> str | None:
        if self.accounts and (m := self.accounts.search(s)):
            return f"names another account ({m.group()})"
        return "names another account's contact" if self.people and self.people.search(s) else None


    def _booking(self, s: str) -> str | None:
        return "claims a meeting was booked; only the rep's decision books one" if BOOKED.search(s) and MEETING.search(s) else None


def _sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, the whitespace after it) pairs that join back to exactly `text`."""
    parts, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        parts.append(text[start:m.end()])
        start = m.end()
    parts.append(text[start:])
    return [(p.rstrip(), p[len(p.rstrip()):]) for p in parts if p]


def guard_draft(text: str, allowed: AllowedData) -> tuple[str, list[str]]:
    """The draft without sentences stating prices, discounts, other accounts or contact data it was not given."""
    guard, kept, notes = _Guard(allowed), [], []
    pieces = _sentences(text)
    for i, (sentence, gap) in enumerate(pieces, 1):
        reason = guard.why(sentence) if sentence.strip() else None
        if reason:
            notes.append(f"guard removed sentence {i} of {len(pieces)}: {reason}")
        else:
            kept.append(sentence + gap)
    return ("".join(kept).strip() if notes else text), notes


def allowed_for(lead: LeadProfile, facts: list[LeadFact], cases: list[CaseHit], crm: CRMSource, event: CRMEvent) -> AllowedData:
    """The lead's own contact data, every other account and its contacts, and the texts that may vouch for a price."""
    contacts = crm.contacts()
    accounts = {c.account_id for c in contacts} | {d.account_id for d in crm.past_deals()}
    others = sorted(a for a in accounts if a != lead.account_id)
    texts = [f.value for f in facts if f.field not in FREE_TEXT_FIELDS] + [c.summary for c in cases] + [ch.text for c in cases for ch in c.chunks]
    return AllowedData(company=lead.account_name, email=lead.email, phone=_lead_phone(lead, crm, event),
                       other_accounts=[crm.account(a).name for a in others],
                       other_names=[c.full_name for c in contacts if c.account_id != lead.account_id and c.full_name != lead.contact_name],
                       texts=texts)


def _lead_phone(lead: LeadProfile, crm: CRMSource, event: CRMEvent) -> str | None:
    phone = getattr(event.payload, "phone", None)  # a new lead's form brings its own
    if phone or not lead.contact_id:
        return phone
    try:
        return crm.contact(lead.contact_id).phone
    except CRMDataError:
        return None
