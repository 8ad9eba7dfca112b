"""Verify: the one output guard. Every checkable claim in a draft sentence must be found in that sentence's sources.

A claim is a number, percentage, amount of money, date, duration, discount, "free" wording, commitment, person,
company, e-mail, phone or URL. Claims are compared in normalized form, so a sentence cannot slip past by rewording:
"ninety percent" is 90%, "half off" is a 50% discount, "on us" and "complimentary" are free, "一折" is 90% off.
Pure functions, no model: `extract_claims` finds the claims of a text, `check_sentence` looks each up among the
claims of the sentence's sources, and `verify_sentence` applies the policy (rewrite once, then the plan item's
template) and records what was removed and why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from agents.attribution import split_sentences
from agents.citations import MARKER_BRACKET
from agents.injection import BOOKED, MEETING, InjectionSignal, core_name, detect_injection, strip_invisible
from provenance.masking import EMAIL_PATTERN, phone_numbers

ClaimKind = Literal["number", "percent", "money", "date", "duration", "discount", "free", "commitment",
                    "person", "company", "email", "phone", "url"]
NameKind = Literal["person", "company"]


class Claim(BaseModel):
    """One checkable statement of a sentence, as written and normalized."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClaimKind
    text: str = Field(description="the words that state it, as written (after Unicode normalization)")
    value: str = Field(description="normalized: '90' for a 90% discount, 'EUR 12000', '2026-01-15', '6 week', "
                                   "'free', 'refund', a listed name, a lower-cased e-mail, a phone's digits")
    amount: float | None = Field(default=None, description="the number the claim states, where it states one")


class Name(BaseModel):
    """A person or company the caller knows by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=2)
    kind: NameKind = "person"


class Violation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: Claim
    why: str


class SentenceCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sentence: str
    claims: list[Claim]
    violations: list[Violation]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not self.violations


class VerifiedSentence(BaseModel):
    """What the verifier made of one sentence, for the trace: the text kept and what was removed on the way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    outcome: Literal["kept", "rewritten", "template"]
    checks: list[SentenceCheck] = Field(
        description="the original sentence's check, then the rewrite's if there was one")
    removed: list[Violation] = Field(description="every unsupported claim of a sentence that was replaced")


# ---------------------------------------------------------------- number words

_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
# Other languages' number words, single words only: enough for "neunzig Prozent" or "setenta por ciento". They count
# only inside a percentage, amount or duration, where they cannot be mistaken for an ordinary word.
_FOREIGN = {
    **dict.fromkeys(["zwei", "deux", "dos", "dois"], 2), **dict.fromkeys(["drei", "trois", "tres", "três"], 3),
    **dict.fromkeys(["vier", "quatre", "cuatro", "quatro"], 4), **dict.fromkeys(["fünf", "cinq", "cinco"], 5),
    **dict.fromkeys(["sechs", "seis"], 6), **dict.fromkeys(["sieben", "siete", "sete"], 7),
    **dict.fromkeys(["acht", "huit", "ocho", "oito"], 8), **dict.fromkeys(["neun", "neuf", "nueve", "nove"], 9),
    **dict.fromkeys(["zehn", "dix", "diez", "dez"], 10), **dict.fromkeys(["zwanzig", "vingt", "veinte", "vinte"], 20),
    **dict.fromkeys(["dreißig", "trente", "treinta", "trinta"], 30),
    **dict.fromkeys(["vierzig", "quarante", "cuarenta", "quarenta"], 40),
    **dict.fromkeys(["fünfzig", "cinquante", "cincuenta", "cinquenta"], 50),
    **dict.fromkeys(["sechzig", "soixante", "sesenta", "sessenta"], 60),
    **dict.fromkeys(["siebzig", "soixante-dix", "setenta"], 70),
    **dict.fromkeys(["achtzig", "quatre-vingt", "quatre-vingts", "ochenta", "oitenta"], 80),
    **dict.fromkeys(["neunzig", "quatre-vingt-dix", "noventa"], 90),
    **dict.fromkeys(["hundert", "cien", "cem"], 100),
    **dict.fromkeys(["un", "une", "ein", "eine", "uno", "una", "um"], 1),
}
_FRACTIONS = {"half": 50.0, "a half": 50.0, "a third": 100 / 3, "one third": 100 / 3, "a quarter": 25.0,
              "one quarter": 25.0}
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_ZH_SCALES = {"十": 10, "百": 100, "千": 1_000, "万": 10_000, "萬": 10_000, "亿": 100_000_000, "億": 100_000_000}


def _alternatives(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_EN_WORD = _alternatives([*_UNITS, *_TENS, *_SCALES])
_EN_PHRASE = rf"\b(?:{_EN_WORD})(?:(?:[\s-]+and)?[\s-]+(?:{_EN_WORD}))*\b"
# "1,200", "12.000", "12 000", "1.200,50", "99.99", "1,5"; a scale word or letter may follow ("1.5k", "120万").
# Not inside a Latin word or code ("Q1", "v2", "W-9"); Chinese and Japanese write numbers right after a word
# ("为120万元").
_DIGITS = (r"(?<![A-Za-z0-9_.,])(?<![A-Za-z]-)\d{1,3}(?:[,. ]\d{3})+(?:[.,]\d+)?(?![\d])|"
           r"(?<![A-Za-z0-9_.,])(?<![A-Za-z]-)\d+(?:[.,]\d+)?(?![\d])")
_SCALE = r"(?:\s?(?:thousand|million|billion|Mio\.?|Mrd\.?)\b|(?:k|K|m|M|mn|bn|B)(?![A-Za-z])|[千万萬亿億])"
_ZH_NUMBER = r"[零〇一二两兩三四五六七八九十][零〇一二两兩三四五六七八九十百千万萬亿億]*"
_NUMBER = rf"(?:(?:{_DIGITS})(?:{_SCALE})?|{_EN_PHRASE}|\b(?:{_alternatives(_FOREIGN)})\b|{_ZH_NUMBER})"


def _digits_value(text: str) -> float:
    """'1,200' → 1200, '12.000' → 12000, '1.200,50' → 1200.5, '99.99' → 99.99, '1,5' → 1.5.

    A lone separator before exactly three digits is a thousands separator; sentence and source are read alike,
    so an ambiguous form ('1.500') still matches itself."""
    text = text.replace(" ", "")
    seps = [c for c in text if c in ".,"]
    if not seps:
        return float(text)
    if len(set(seps)) == 2:
        decimal = text[max(text.rfind("."), text.rfind(","))]
        return float(text.replace("," if decimal == "." else ".", "").replace(decimal, "."))
    head, _, tail = text.rpartition(seps[0])
    if len(seps) > 1 or (len(tail) == 3 and head != "0"):
        return float(text.replace(seps[0], ""))
    return float(f"{head}.{tail}")


def _scale_value(scale: str) -> float:
    scale = scale.strip().rstrip(".").lower()
    return {"thousand": 1e3, "k": 1e3, "千": 1e3, "million": 1e6, "mio": 1e6, "m": 1e6, "mn": 1e6, "billion": 1e9,
            "mrd": 1e9, "bn": 1e9, "b": 1e9, "万": 1e4, "萬": 1e4, "亿": 1e8, "億": 1e8}[scale]


def _en_value(text: str) -> float:
    total, current = 0.0, 0.0
    for word in re.split(r"[\s-]+", text.lower()):
        if word in _UNITS or word in _TENS:
            current += _UNITS.get(word, 0) + _TENS.get(word, 0)
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _SCALES:
            total, current = total + max(current, 1) * _SCALES[word], 0.0
    return total + current


def _zh_value(text: str) -> float:
    """'三十' → 30, '一百二十' → 120, '五十万' → 500000, '十' → 10."""
    total, section, digit = 0.0, 0.0, 0.0
    for ch in text:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif _ZH_SCALES[ch] >= 10_000:
            total, section, digit = total + (section + digit) * _ZH_SCALES[ch], 0.0, 0.0
        else:
            section, digit = section + (digit or 1) * _ZH_SCALES[ch], 0.0
    return total + section + digit


def number_value(text: str) -> float | None:
    """The value of a number as written in digits, English words, a foreign number word or Chinese numerals."""
    text = text.strip()
    if m := re.fullmatch(rf"({_DIGITS})({_SCALE})?", text):
        return _digits_value(m.group(1)) * (_scale_value(m.group(2)) if m.group(2) else 1)
    if text.lower() in _FOREIGN:
        return float(_FOREIGN[text.lower()])
    if re.fullmatch(_ZH_NUMBER, text):
        return _zh_value(text)
    if re.fullmatch(_EN_PHRASE, text, re.IGNORECASE):
        return _en_value(text)
    return None


def _fmt(amount: float) -> str:
    return f"{amount:.4f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- claim patterns

_I = re.IGNORECASE
_PERCENT_SIGN = r"(?:\s?[%％]|\s+(?:percent|per\s?cent|prozent|por\s?cient[oa]|pour\s?cent|por\s?cento|процент\w*)\b)"
_PERCENT = rf"(?P<n>{_NUMBER}){_PERCENT_SIGN}"
_DISCOUNT_NOUN = (r"(?:discount(?:ed|s)?|rebates?|markdown|rabatt|nachlass|preisnachlass|descuento|desconto|rebaja|"
                  r"remise|réduction|ristourne|sconto|скидк\w*|折扣|优惠|割引)")
# At most two words between a percentage and its discount word, or two characters where words have no spaces
# ("15%的折扣").
_NEAR = r"(?:(?:\s+\S+){0,2}?\s*|[\u3040-\u30ff\u4e00-\u9fff]{0,2}?)"
_FREE_WORDS = (
    r"\bfree\s+of\s+charge\b|\bfor\s+free\b|\bat\s+no\s+(?:extra\s+|additional\s+)?(?:cost|charge)\b|"
    r"\b(?:no|without)\s+(?:extra\s+|additional\s+)?(?:charge|cost|fee)s?\b|\bcomplimentary\b|\bon\s+the\s+house\b|"
    r"\b(?:is|are|be|was|were|'s)\s+(?:(?:all|entirely|fully|completely)\s+)?on\s+us\b|\bwaiv(?:e|es|ed|ing)\b|"
    r"\b(?:bill|charge|invoice)\s+(?:you|us|them)?\s*nothing\b|\bpay\s+nothing\b|\bnothing\s+to\s+pay\b|"
    r"\bcosts?\s+(?:you\s+)?nothing\b|\bzero\s+cost\b|\bgratis\b|\bkosten(?:los|frei)\b|"
    r"\bnichts\s+(?:zu\s+)?(?:be)?zahlen\b|"
    r"\bgratuit(?:e|s|es|ement)?\b|\bgratuit[oa]s?\b|\bsans\s+frais\b|\bsin\s+(?:costo|coste|cargo)\b|"
    r"\bsem\s+(?:custo|cobrança)\b|бесплатн\w*|без\s+оплаты|免费|免費|無料|追加費用なし|タダ|"
    # "free" alone, but not "feel free", "free to ask", "free up", "error-free" or "free from errors"
    r"(?<!feel\s)(?<![\w-])free\b(?!\s+(?:to|up|from)\b)(?!-)"
)
# value → the words that make that commitment; "sem perguntas" (no questions asked) is how a guarantee is worded.
_COMMITMENTS = {
    "guarantee": r"\bguarantee(?:s|d|ing)?\b|\bgarant(?:ie|iert|ieren|iza\w*|i[rd]\w*|issons|e|em)\b|"
                 r"\bno\s+questions\s+asked\b|\bsin\s+preguntas\b|\bsem\s+perguntas\b|гарант\w*|保证|保證|保証",
    "refund": r"\brefund(?:s|ed|ing|able)?\b|\bmoney[\s-]+back\b|\breimburs\w*|\brembours\w*|\breembols\w*|"
              r"\bdevolv\w*|\brückerstatt\w*|\berstatten\b|возвра\w*|退款|退钱|返金|返還",
    "commit": r"\bcommit(?:s|ted|ting)?\s+to\b|\bverpflichten\b|\bnos\s+comprometemos\b|\bnous\s+nous\s+engageons\b",
    "promise": r"\bpromis(?:e|es|ed|ing)\b|\bversprechen\b|\bprometemos\b|\bpromettons\b|обеща\w*|承诺|承諾|約束",
}
_NEGATION = re.compile(r"(?:\b(?:not|never|cannot|no|unable\s+to)|n't)(?:\s+\w+){0,2}\s*$", _I)
_CURRENCY_BEFORE = {"US$": "USD", "USD": "USD", "$": "USD", "EUR": "EUR", "€": "EUR", "GBP": "GBP", "£": "GBP",
                    "CHF": "CHF", "JPY": "JPY", "CNY": "CNY", "RMB": "CNY", "人民币": "CNY", "¥": "", "￥": ""}
_CURRENCY_AFTER = {"usd": "USD", "dollars": "USD", "dollar": "USD", "eur": "EUR", "euros": "EUR", "euro": "EUR",
                   "gbp": "GBP", "pounds": "GBP", "pound": "GBP", "chf": "CHF", "jpy": "JPY", "cny": "CNY",
                   "rmb": "CNY", "yuan": "CNY", "元": "CNY", "块": "CNY", "円": "JPY", "евро": "EUR", "рублей": "RUB",
                   "рубля": "RUB", "рубль": "RUB"}
_MONEY = (rf"(?P<cb>{_alternatives(_CURRENCY_BEFORE)})\s?(?P<n1>{_NUMBER})|"
          rf"(?P<n2>{_NUMBER})\s?(?P<ca>{_alternatives(_CURRENCY_AFTER)})(?![A-Za-z])")
_MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december".split(), 1)}
_MONTHS |= {m[:3]: i for m, i in list(_MONTHS.items())} | {"sept": 9}
_MONTHS_OTHER = {m: i for names in (
    "januar februar märz april mai juni juli august september oktober november dezember",
    "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro")
    for i, m in enumerate(names.split(), 1)}
# English month names only capitalized ("May", not "we may"); the others as written in their languages.
_MONTH = (rf"(?P<mon>(?-i:{_alternatives(m.capitalize() for m in _MONTHS)})\.?|"
          rf"(?i:{_alternatives(_MONTHS_OTHER)}))")
_YEAR = r"(?P<y>(?:19|20)\d{2})"
_DAY = r"(?P<d>[0-3]?\d)(?:st|nd|rd|th|\.)?"
_WEEKDAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_UNIT_WORDS = {
    "day": r"(?:business\s+|working\s+)?days?|tage?n?|días?|dias?|jours?|дн\w*|дня|天|日間|日",
    "week": r"weeks?|wochen?|semanas?|semaines?|недел\w*|周|週間|星期",
    "month": r"months?|monate?n?|meses|mes|mois|месяц\w*|个月|個月|か月|ヶ月|カ月",
    "year": r"years?|jahre?n?|años?|anos?|ans|années?|год\w*|лет|年間|年",
    "hour": r"hours?|stunden?|horas?|heures?|час\w*|小时|時間",
    "minute": r"minutes?|minuten?|minutos?|минут\w*|分钟|分間",
    "quarter": r"quarters?",
}
_URL = (r"\b(?:https?://|www\.)[^\s<>\"'）」]+|(?<![@\w.-])(?:[a-z0-9-]+\.)+(?:com|net|org|io|ai|de|fr|es|cn|jp|co|uk|"
        r"eu|info|biz|app|dev|ru|br|au|nl|ch|at|it|pt|example)\b(?:/[^\s<>\"']*)?")


_UNITS_PATTERN = "|".join(f"(?P<{unit}>{words})" for unit, words in _UNIT_WORDS.items())


def _compile(pattern: str, flags: int = _I) -> re.Pattern[str]:
    return re.compile(pattern, flags)


_P = {
    "email": _compile(EMAIL_PATTERN),
    "url": _compile(_URL),
    "iso_date": _compile(r"\b(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})\b"),
    "numeric_date": _compile(r"\b(?P<a>\d{1,2})[/.](?P<b>\d{1,2})[/.](?P<y>\d{4}|\d{2})\b"),
    "cjk_date": _compile(r"(?:(?P<y>\d{4})年)?(?P<m>\d{1,2})月(?:(?P<d>\d{1,2})[日号])?"),
    "day_month": _compile(rf"\b{_DAY}\s+(?:of\s+|de\s+)?{_MONTH}(?:,?\s+(?:de\s+)?{_YEAR})?\b"),
    "month_day": _compile(rf"\b{_MONTH}\s+(?P<d>[0-3]?\d)(?:st|nd|rd|th)?\b(?:,?\s+{_YEAR})?"),
    "month_year": _compile(rf"\b{_MONTH}\s+(?:de\s+)?{_YEAR}\b"),
    "time": _compile(r"\b(?P<h>[01]?\d|2[0-3])(?::(?P<mi>[0-5]\d))?\s?(?P<ap>a\.?m\.?|p\.?m\.?)(?![\w])|"
                     r"\b(?P<h2>[01]?\d|2[0-3]):(?P<mi2>[0-5]\d)\b|\b(?P<h3>[01]?\d|2[0-3])\s?(?:Uhr|h)\b|"
                     r"(?P<h4>[01]?\d|2[0-3])[時点](?:(?P<mi4>[0-5]?\d)分)?"),
    # "morgen" and "mañana" are also "morning", so only the unambiguous words for tomorrow count.
    "day_word": _compile(rf"\btomorrow\b|\b(?-i:{_WEEKDAYS})\b|\bdemain\b|明天|明日"),
    "money": _compile(_MONEY),
    "half_off": _compile(rf"\b(?P<f>{_alternatives(_FRACTIONS)})[\s-]+(?:off|price)\b|\b(?P<g>half)\s+the\s+price\b"),
    "discount_after": _compile(rf"{_PERCENT}(?:\s+off\b|{_NEAR}{_DISCOUNT_NOUN})"),
    "discount_before": _compile(rf"(?:{_DISCOUNT_NOUN}|\bminus)\s*(?:\S+\s+){{0,2}}?(?P<n>{_NUMBER}){_PERCENT_SIGN}"),
    "zh_discount": _compile(r"(?P<a>[一二三四五六七八九]|[1-9])(?:(?P<b>[一二三四五六七八九])|\.(?P<c>[1-9]))?折(?!扣)|"
                            r"(?P<half>对折|對折|半价|半價|半額)"),
    "ja_discount": _compile(r"(?P<a>[一二三四五六七八九十]|\d{1,2})割引"),
    "two_for_one": _compile(r"\b(?:2|two)[\s-]+for[\s-]+(?:1|one)\b|\bbuy\s+one,?\s+get\s+one(?:\s+free)?\b|\bbogo\b"),
    "percent": _compile(_PERCENT),
    "zh_percent": _compile(rf"百分之(?P<n>{_ZH_NUMBER}|\d+(?:\.\d+)?)|(?P<c>[一二三四五六七八九十]|\d{{1,2}})[成割](?!引)"),
    "duration": _compile(rf"(?P<n>{_NUMBER})(?:\s*-\s*|\s*)(?P<u>{_UNITS_PATTERN})(?![a-zA-Zа-яё])"),
    "booked": BOOKED,
    "free": _compile(_FREE_WORDS),
    **{f"commit_{value}": _compile(words) for value, words in _COMMITMENTS.items()},
    "year": _compile(r"(?<![\w.,])(?:19|20)\d{2}(?![\w%])(?!\s*[.,]\d)"),
    # Chinese numerals stand in many words (一起, 统一); alone they count only before a measure word.
    "number": _compile(rf"(?:{_DIGITS})(?:{_SCALE})?|{_EN_PHRASE}|\b(?:double|triple)\b(?!-)|"
                       rf"{_ZH_NUMBER}(?=[个名位家套台人次件])"),
}
# The order claims are searched in: a span a claim took is not read again, so "90% off" is one discount, not also
# a percentage and a number, and an e-mail's domain is no URL.
_ORDER = ["email", "url", "iso_date", "numeric_date", "cjk_date", "day_month", "month_day", "month_year", "time",
          "day_word", "phone", "money", "half_off", "discount_after", "discount_before", "zh_discount", "ja_discount",
          "two_for_one", "percent", "zh_percent", "duration", "booked", "free", *(f"commit_{v}" for v in _COMMITMENTS),
          "year", "number"]


# ---------------------------------------------------------------- names


class _Names:
    """Known and forbidden names compiled into one search; the longest name wins where two overlap."""

    def __init__(self, known: Iterable[Name], forbidden: Iterable[Name]):
        self.forbidden = {n.text for n in forbidden}
        known = [n for n in known if n.text not in self.forbidden]
        known_words = {w for n in known for w in n.text.split()}
        alternatives = [(alt, n) for n in known for alt in _name_forms(n, full_only=False)]
        alternatives += [(alt, Name(text=t, kind=k)) for t, k in {(n.text, n.kind) for n in forbidden}
                         for alt in _name_forms(Name(text=t, kind=k), full_only=True) if alt not in known_words]
        alternatives.sort(key=lambda a: len(a[0]), reverse=True)
        self.by_form = {alt.casefold(): name for alt, name in alternatives}
        self.forms: dict[str, list[str]] = {}
        for alt, name in alternatives:
            self.forms.setdefault(name.text, []).append(alt)
        self.pattern = re.compile("|".join(_name_regex(alt, n) for alt, n in alternatives)) if alternatives else None

    def found_in(self, name: Name, text: str) -> bool:
        return any(re.search(_name_regex(alt, name), text) for alt in self.forms.get(name.text, [name.text]))


def _name_regex(form: str, name: Name) -> str:
    """A full name in any case; a person's first or last name alone only as capitalized ("Will", not "will")."""
    escaped = rf"(?<!\w){re.escape(form)}(?!\w)"
    return escaped if name.kind == "person" and form != name.text else f"(?i:{escaped})"


def _name_forms(name: Name, full_only: bool) -> list[str]:
    """How a name may appear: a company also without its legal form; a known person also by a capitalized first
    or last name alone; a third party's contact by the full name or a surname no known person shares."""
    text = name.text.strip()
    if name.kind == "company":
        return list(dict.fromkeys([text, *([c] if len(c := core_name(text)) >= 3 else [])]))
    parts = [p for p in text.split() if len(p) >= 3 and p[0].isupper() and p != text]
    return [text, *(parts[-1:] if full_only else parts)]


# ---------------------------------------------------------------- extraction


class _Scan:
    """A text being read for claims; each claim blanks its span so later patterns do not read it again."""

    def __init__(self, text: str):
        self.text = text
        self.open = text
        self.found: list[tuple[int, Claim]] = []

    def matches(self, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
        for m in list(pattern.finditer(self.open)):
            if m.group().strip():
                yield m

    def take(self, m: re.Match[str] | tuple[int, int], kind: ClaimKind, value: str,
             amount: float | None = None) -> None:
        start, end = m.span() if isinstance(m, re.Match) else m
        self.found.append((start, Claim(kind=kind, text=self.text[start:end].strip(), value=value, amount=amount)))
        self.open = self.open[:start] + "\0" * (end - start) + self.open[end:]


def extract_claims(sentence: str, known_names: Iterable[Name] = (),
                   forbidden_names: Iterable[Name] = ()) -> list[Claim]:
    """The checkable claims of a sentence (or any text), in the order they are written."""
    return _extract(_clean(sentence), _Names(known_names, forbidden_names))


def _clean(text: str) -> str:
    """NFKC without invisible characters ("９０％" is "90%", a zero-width space is gone), and without citation
    markers, whose digits are no claim."""
    return MARKER_BRACKET.sub(lambda m: " " * len(m.group()), strip_invisible(text))


def _extract(text: str, names: _Names) -> list[Claim]:
    scan = _Scan(text)
    if names.pattern:
        for m in scan.matches(names.pattern):
            name = names.by_form[m.group().casefold()]
            scan.take(m, name.kind, name.text)
    for key in _ORDER:
        if key == "phone":
            _take_phones(scan)
            continue
        for m in scan.matches(_P[key]):
            if claim := _READERS[key](m, scan.open):
                kind, value, amount = claim
                scan.take(m, kind, value, amount)
    return [claim for _, claim in sorted(scan.found, key=lambda f: f[0])]


def _take_phones(scan: _Scan) -> None:
    pos = 0
    for phone in phone_numbers(scan.open):
        start = scan.open.find(phone, pos)
        scan.take((start, start + len(phone)), "phone", re.sub(r"\D", "", phone))
        pos = start + len(phone)


Reading = tuple[ClaimKind, str, float | None] | None


def _number_of(m: re.Match[str], group: str = "n") -> float | None:
    return number_value(m.group(group)) if m.group(group) else None


def _read_date(m: re.Match[str], _: str) -> Reading:
    groups = m.groupdict()
    month = int(groups["m"]) if groups.get("m") else _month(groups.get("mon"))
    day = int(groups["d"]) if groups.get("d") else None
    if not month or month > 12 or (day is not None and not 1 <= day <= 31):
        return None
    year = groups.get("y") or "-"
    return "date", f"{year}-{month:02d}" + (f"-{day:02d}" if day else ""), None


def _month(name: str | None) -> int | None:
    name = (name or "").rstrip(".").lower()
    return _MONTHS.get(name) or _MONTHS_OTHER.get(name)


def _read_numeric_date(m: re.Match[str], _: str) -> Reading:
    a, b, year = int(m.group("a")), int(m.group("b")), m.group("y")
    year = year if len(year) == 4 else f"20{year}"
    if not (1 <= a <= 31 and 1 <= b <= 31) or (a > 12 and b > 12):
        return None
    # Day and month order differs by country; sorted, the two numbers match either order in the sources.
    low, high = sorted((a, b))
    return "date", f"{year}-{{{low:02d},{high:02d}}}", None


def _read_time(m: re.Match[str], _: str) -> Reading:
    g = m.groupdict()
    hour = int(g["h"] or g["h2"] or g["h3"] or g["h4"])
    minute = int(g["mi"] or g["mi2"] or g["mi4"] or 0)
    if (g["ap"] or "").lower().startswith("p") and hour < 12:
        hour += 12
    if (g["ap"] or "").lower().startswith("a") and hour == 12:
        hour = 0
    return "date", f"T{hour:02d}:{minute:02d}", None


def _read_day_word(m: re.Match[str], _: str) -> Reading:
    word = m.group().lower()
    return "date", "tomorrow" if word in ("tomorrow", "morgen", "mañana", "demain", "明天", "明日") else word, None


def _read_money(m: re.Match[str], _: str) -> Reading:
    amount = _number_of(m, "n1") if m.group("n1") else _number_of(m, "n2")
    if amount is None:
        return None
    if amount == 0:
        return "free", "free", None  # "USD 0", "$0.00": a price of nothing is "free", however it is written
    currency = _CURRENCY_BEFORE[m.group("cb")] if m.group("cb") else _CURRENCY_AFTER[m.group("ca").lower()]
    return "money", f"{currency} {_fmt(amount)}".strip(), amount


def _discount(amount: float | None) -> Reading:
    return ("discount", _fmt(amount), amount) if amount is not None and 0 < amount <= 100 else None


def _read_half_off(m: re.Match[str], _: str) -> Reading:
    return _discount(_FRACTIONS[(m.group("f") or m.group("g")).lower()])


def _read_discount(m: re.Match[str], _: str) -> Reading:
    return _discount(_number_of(m))


def _read_zh_discount(m: re.Match[str], _: str) -> Reading:
    """七折 is paying 70%, so 30% off; 八五折 and 8.5折 are 15% off; 一折 is 90% off; 对折 and 半价 are half."""
    if m.group("half"):
        return _discount(50.0)
    tenths = number_value(m.group("a")) or 0.0
    second = number_value(m.group("b") or m.group("c") or "0") or 0.0
    return _discount(100 - (tenths * 10 + second))


def _read_ja_discount(m: re.Match[str], _: str) -> Reading:
    """Japanese counts what is taken off: 九割引き is 90% off, 2割引 20% off."""
    return _discount((number_value(m.group("a")) or 0) * 10)


def _read_percent(m: re.Match[str], _: str) -> Reading:
    amount = _number_of(m)
    return ("percent", _fmt(amount), amount) if amount is not None else None


def _read_zh_percent(m: re.Match[str], _: str) -> Reading:
    amount = _number_of(m) if m.group("n") else (number_value(m.group("c")) or 0) * 10
    return ("percent", _fmt(amount), amount) if amount is not None else None


def _read_duration(m: re.Match[str], _: str) -> Reading:
    amount = _number_of(m)
    unit = next(k for k in _UNIT_WORDS if m.group(k))
    if amount is None or amount == 1 and m.group("n").lower() in ("un", "une", "ein", "eine", "uno", "una", "um"):
        return None  # "un an", "ein Jahr": an article, not a count the sources must state
    if unit == "year" and m.group("u") == "年" and amount >= 1900:
        return "date", _fmt(amount), None  # "2028年" is a year
    return "duration", f"{_fmt(amount)} {unit}", amount


def _read_booked(m: re.Match[str], text: str) -> Reading:
    # Only apply books, after the rep decides: a sentence saying a meeting was booked must have a source saying so.
    return ("commitment", "booked", None) if MEETING.search(text) else None


def _read_free(m: re.Match[str], text: str) -> Reading:
    negated = m.group().lower() == "free" and _NEGATION.search(text[: m.start()])
    return None if negated else ("free", "free", None)


def _commitment(value: str) -> Callable[[re.Match[str], str], Reading]:
    def read(m: re.Match[str], text: str) -> Reading:
        # "We cannot guarantee" or "we do not promise" commit to nothing.
        return None if _NEGATION.search(text[: m.start()]) else ("commitment", value, None)
    return read


def _read_year(m: re.Match[str], _: str) -> Reading:
    return "date", m.group(), float(m.group())


def _read_number(m: re.Match[str], _: str) -> Reading:
    word = m.group().lower()
    amount = {"double": 2.0, "triple": 3.0}.get(word) or number_value(m.group())
    if amount is None or (not m.group()[0].isdigit() and amount <= 1 and word != "zero"):
        return None  # "one of our customers", "a": no count a source has to state
    return "number", _fmt(amount), amount


def _read_simple(kind: ClaimKind, normalize: Callable[[str], str]) -> Callable[[re.Match[str], str], Reading]:
    return lambda m, _: (kind, normalize(m.group()), None)


def _url_value(url: str) -> str:
    url = re.sub(r"^(?:https?://)?(?:www\.)?", "", url.lower().rstrip(".,;:!?)"))
    return url.rstrip("/")


_READERS: dict[str, Callable[[re.Match[str], str], Reading]] = {
    "email": _read_simple("email", str.casefold),
    "url": lambda m, _: ("url", _url_value(m.group()), None) if not re.fullmatch(r"[\d.]+", m.group()) else None,
    **dict.fromkeys(["iso_date", "cjk_date", "day_month", "month_day", "month_year"], _read_date),
    "numeric_date": _read_numeric_date, "time": _read_time, "day_word": _read_day_word, "money": _read_money,
    "half_off": _read_half_off, "discount_after": _read_discount, "discount_before": _read_discount,
    "zh_discount": _read_zh_discount, "ja_discount": _read_ja_discount, "two_for_one": lambda m, _: _discount(50.0),
    "percent": _read_percent, "zh_percent": _read_zh_percent, "duration": _read_duration, "booked": _read_booked,
    "free": _read_free, **{f"commit_{v}": _commitment(v) for v in _COMMITMENTS}, "year": _read_year,
    "number": _read_number,
}


# ---------------------------------------------------------------- checking


def source_claims(sources: Iterable[str], known_names: Iterable[Name] = (),
                  forbidden_names: Iterable[Name] = ()) -> list[Claim]:
    """Every claim the sources state, read sentence by sentence as a draft sentence is read."""
    names = _Names(known_names, forbidden_names)
    return [c for source in sources for s in split_sentences(_clean(source)) for c in _extract(s, names)]


def check_sentence(sentence: str, sources: list[str], known_names: Iterable[Name] = (),
                   forbidden_names: Iterable[Name] = ()) -> SentenceCheck:
    """Each claim of the sentence looked up among its sources' claims; a violation for each one not found.

    `known_names`: the people and companies that may be named where the sources name them (the lead, its contact,
    the rep). `forbidden_names`: third parties (other customers and their contacts) that never pass."""
    known_names, forbidden_names = list(known_names), list(forbidden_names)
    names = _Names(known_names, forbidden_names)
    claims = _extract(_clean(sentence), names)
    stated = source_claims(sources, known_names, forbidden_names)
    text = "\n".join(_clean(s) for s in sources)
    violations = [Violation(claim=c, why=why) for c in claims if (why := _unsupported(c, stated, text, names))]
    return SentenceCheck(sentence=sentence, claims=claims, violations=violations)


def _unsupported(claim: Claim, stated: list[Claim], text: str, names: _Names) -> str | None:
    """Why the claim is not supported, or None when a source states it."""
    if claim.kind in ("person", "company"):
        if claim.value in names.forbidden:
            return f"names a third party ({claim.kind} of another customer), which a draft never may"
        if names.found_in(Name(text=claim.value, kind=claim.kind), text):
            return None
        return f"{claim.kind} {claim.value!r} is not in the sources"
    if any(_supports(s, claim) for s in stated):
        return None
    # Personal data stays out of the trace: the reason names the kind, not the address or number.
    shown = claim.kind if claim.kind in ("email", "phone") else f"{claim.kind} {claim.value!r}"
    return f"{shown} is not in the sources"


def _supports(source: Claim, claim: Claim) -> bool:
    kind = claim.kind
    if kind == "number":
        return source.amount is not None and claim.amount is not None and math.isclose(source.amount, claim.amount)
    if kind == "percent":
        return source.kind in ("percent", "discount") and _close(source.amount, claim.amount, 0.5)
    if kind == "discount":
        return source.kind == "discount" and _close(source.amount, claim.amount, 0.5)
    if kind == "money":
        return _same_money(source, claim)
    if kind == "date":
        if claim.amount is not None and source.kind == "number":  # a bare year: "2028" is also written "2,028"
            return source.amount == claim.amount
        return source.kind == "date" and _same_date(source.value, claim.value)
    if kind == "phone":
        return source.kind == "phone" and source.value[-9:] == claim.value[-9:]
    if kind == "url":
        return source.kind == "url" and (source.value == claim.value or source.value.split("/")[0] == claim.value)
    return source.kind == kind and source.value == claim.value  # free, commitment, duration, email


def _close(a: float | None, b: float | None, tolerance: float) -> bool:
    return a is not None and b is not None and abs(a - b) < tolerance


def _same_money(source: Claim, claim: Claim) -> bool:
    """The same amount in the same currency; an amount the sources give without a currency (a CRM field) counts."""
    if not (source.kind in ("money", "number") and _close(source.amount, claim.amount, 1e-6)):
        return False
    if source.kind == "number":
        return True
    currencies = {source.value.split(" ")[0], claim.value.split(" ")[0]}
    return len(currencies) == 1 or any(c.replace(".", "").isdigit() for c in currencies)


def _same_date(source: str, claim: str) -> bool:
    """Equal dates; a year ('2028') or month ('2028-03') is stated by any source date inside it."""
    if source == claim:
        return True
    if claim.startswith("-") or not re.fullmatch(r"\d{4}(?:-\d{2})?", claim):
        return False
    return source.startswith(claim + "-")


# ---------------------------------------------------------------- the policy


def verify_sentence(sentence: str, sources: list[str], rewrite: Callable[[SentenceCheck], str], template: str,
                    known_names: Iterable[Name] = (), forbidden_names: Iterable[Name] = ()) -> VerifiedSentence:
    """The sentence if it passes; else one rewrite (from its plan item) if that passes; else the plan item's template.

    `rewrite` gets the failed check so it can say what to leave out. The template is the planner's own wording
    and is not checked again."""
    known_names, forbidden_names = list(known_names), list(forbidden_names)
    first = check_sentence(sentence, sources, known_names, forbidden_names)
    if first.passed:
        return VerifiedSentence(text=sentence, outcome="kept", checks=[first], removed=[])
    second = check_sentence(rewrite(first), sources, known_names, forbidden_names)
    if second.passed:
        return VerifiedSentence(text=second.sentence, outcome="rewritten", checks=[first, second],
                                removed=first.violations)
    return VerifiedSentence(text=template, outcome="template", checks=[first, second],
                            removed=first.violations + second.violations)


# ---------------------------------------------------------------- screening the customer's text

# Words that address whoever writes our reply, in the languages the claim extractor reads: "in your reply",
# "whoever drafts", "put in writing", "state that", "dans votre réponse", "回复中", "返信", "в ответе".
_REPLY_CUE = re.compile(
    r"\b(?:in|into|to)\s+(?:your|the|this|our)\s+(?:reply|replies|response|answer|email|e-mail|proposal)\b|"
    r"\b(?:whoever|anyone|the\s+(?:person|assistant|ai|bot|model|agent))\s+(?:who\s+)?(?:draft|write|prepar|answer)\w*|"
    r"\bput\s+(?:it\s+)?in\s+writing\b|\b(?:state|write|confirm|say|note|mention|include)\s+(?:in\s+writing\s+)?that\b|"
    r"\b(?:in|dans|en|na|no|in\s+die|in\s+der)\s+(?:votre|la|sua|su|ihrer?|die)?\s*(?:réponse|respuesta|resposta|antwort)\b|"
    r"\bantworten?\s+entw|\bredact|\brédig|\bredig|回复|回覆|返信|ответ|答复", _I)


def addresses_reply(text: str) -> bool:
    """Whether the text speaks to whoever writes our reply ("in your reply", "whoever drafts", "en la respuesta")."""
    return bool(_REPLY_CUE.search(strip_invisible(text)))


def requested_commitments(texts: dict[str, str]) -> list[InjectionSignal]:
    """Customer text that asks our reply to state a discount, "free", a refund, a guarantee or a promise.

    A regex per wording cannot keep up ("the first year is on us", "一折", "neunzig Prozent Nachlass"); the claim
    extractor reads them all, so a commitment claim next to words addressing the reply's writer is the signal. A
    customer asking a question about a free trial names no reply to write and is not flagged."""
    signals = []
    for name, text in texts.items():
        clean = strip_invisible(text or "")
        if not (cue := _REPLY_CUE.search(clean)):
            continue
        claims = [c for c in extract_claims(clean) if c.kind in ("discount", "free", "commitment")]
        if claims:
            excerpt = f"{cue.group()} … {claims[0].text}"
            signals.append(InjectionSignal(kind="pricing", pattern="reply-commitment", excerpt=excerpt[:160], field=name))
    return signals


def screen_input(texts: dict[str, str]) -> list[InjectionSignal]:
    """Every signal that the customer's texts carry instructions: agents/injection.py's rules, then the requests
    for a commitment in the reply. What the draft node shows the rep and the benchmark scores."""
    return detect_injection(texts) + requested_commitments(texts)
