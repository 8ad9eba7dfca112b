"""Writes bench/eval/drafts/{dev,test}.yaml once: issue 14's draft-quality events, frozen before the drafting code.

    python bench/eval/make_draft_eval.py            # checks that the committed files are what this script writes
    python bench/eval/make_draft_eval.py --write    # (re)writes them

Every event below is hand-written: an inbound e-mail, a deal stage change, a new lead or a thin CRM webhook from a
contact or deal of one account of the frozen split (bench/eval/split.yaml), dev accounts for dev, test accounts for
test. Names, e-mails, deals and numbers come from the demo CRM (demo.generate, seed 7); each case states as data the
topic, what an on-topic draft must address and the facts it may use. demo/draft_eval.py reads only the output files.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from demo.draft_eval import draft_file  # noqa: E402
from demo.generate import generate_demo  # noqa: E402
from demo.pdf import text_pdf  # noqa: E402
from tools.crm.records import (  # noqa: E402
    Attachment,
    CRMChangePayload,
    CRMEvent,
    DealStageChangePayload,
    FetchedRecords,
    InboundEmailPayload,
    NewLeadPayload,
)
from tools.crm.source import JsonSnapshotCRM  # noqa: E402

DEMO_SEED = 7
VERSION = 1
START = {
    "dev": datetime(2027, 1, 4, 9, 0, tzinfo=timezone.utc),
    "test": datetime(2027, 1, 18, 9, 0, tzinfo=timezone.utc),
}
HEADER = """\
# Issue 14's draft-quality evaluation set, {part} part: {count} events, frozen before the new drafting code.
# Written by bench/eval/make_draft_eval.py from hand-written cases over the demo CRM (demo.generate, seed 7); loaded
# and checked by demo/draft_eval.py and tests/test_draft_eval_set.py. Held out by account (bench/eval/split.yaml):
# {part} events come only from {part} accounts. expect.must_address lists what an on-topic draft must address (any
# one term of a point shows it), expect.may_use the facts it may cite, expect.route what configs/triggers.yaml routes.
# {rule}
"""
RULES = {
    "dev": "Dev is for tuning prompts, planners and thresholds.",
    "test": "TEST: score on it once per recorded run; never tune on it, never read its cases while tuning.",
}
Must = list[tuple[str, list[str]]]
Facts = list[tuple[str, Any]]


def mail(
    contact: str,
    topic: str,
    subject: str,
    body: str,
    must: Must,
    facts: Facts,
    lang: str = "en",
    pdf: list[str] | None = None,
    route: str = "proposal",
) -> dict:
    return dict(
        kind="mail",
        contact=contact,
        topic=topic,
        subject=subject,
        body=body,
        must=must,
        facts=facts,
        lang=lang,
        pdf=pdf,
        route=route,
    )


def stage(deal: str, from_stage: str | None, to_stage: str, fetched: dict | None = None) -> dict:
    return dict(kind="stage", deal=deal, from_stage=from_stage, to_stage=to_stage, fetched=fetched)


def lead(account: str, topic: str, lead: dict, must: Must, facts: Facts, lang: str = "en") -> dict:
    return dict(kind="lead", account=account, topic=topic, lead=lead, must=must, facts=facts, lang=lang)


def thin(system: str, deal: str, to_stage: str) -> dict:
    return dict(kind="thin", system=system, deal=deal, to_stage=to_stage)


def new_deal(deal_id: str, account: str, contact: str, product: str, amount: int, scope: str) -> dict:
    return dict(id=deal_id, account=account, contact=contact, product=product, amount=amount, scope=scope)


def schedule(title: str, lines: list[str]) -> list[str]:
    return [title, *lines]


DEV: list[dict] = [
    # --- inbound e-mails -----------------------------------------------------------------------------------------
    mail(
        "con-0003",
        "delivery_delay",
        "Go-live slips to March - revised delivery schedule attached",
        "Hello,\n\nour supplier of calibration rigs is late, so our go-live for Loop Field Service slips by six weeks: "
        "from 1 February to 15 March 2027. The revised delivery schedule is attached.\n\nCan we keep the quoted price "
        "and move the technician training to the week of 8 March? Please let me know by Friday.\n\nRegards,\n{sign}",
        [
            ("the new go-live date", ["15 March", "2027-03-15", "March 15"]),
            ("keeping the quoted price", ["price", "quote"]),
            ("moving the technician training", ["training"]),
        ],
        [("body", "15 March 2027"), ("attachments", "2027-03-15"), ("body", "six weeks")],
        route="objection",
        pdf=schedule(
            "Revised Delivery Schedule - Ironbridge Diagnostics",
            [
                "Original go-live: 2027-02-01",
                "Revised go-live: 2027-03-15 (delivery slips by 6 weeks)",
                "Technician training: week of 2027-03-08",
                "Reason: calibration rig supplier delayed",
            ],
        ),
    ),
    mail(
        "con-0074",
        "delivery_delay",
        "Installation behind schedule",
        "Hi,\n\nthe new injection-moulding line is running late at the installer, so commissioning is four weeks "
        "behind "
        "schedule: it moves from 25 January to 22 February 2027. Our revised plan is attached.\n\nPlease move the "
        "Loop Connect kick-off accordingly and tell me whether your consultant is free that week.\n\n{sign}",
        [
            ("the new commissioning date", ["22 February", "2027-02-22", "February 22"]),
            ("moving the kick-off", ["kick-off", "kickoff", "start"]),
        ],
        [("body", "22 February 2027"), ("body", "four weeks"), ("attachments", "2027-02-22")],
        route="objection",
        pdf=schedule(
            "Revised project plan - Oakhaven Plastics",
            [
                "Commissioning (original): 2027-01-25",
                "Commissioning (revised): 2027-02-22",
                "Loop Connect kick-off: to be moved to the week of 2027-02-22",
            ],
        ),
    ),
    mail(
        "con-0009",
        "delivery_delay",
        "Adiamento do go-live",
        "Olá,\n\nprecisamos adiar o go-live de 8 de fevereiro para 22 de março de 2027, porque a nova linha de "
        "montagem atrasou. Podemos manter as condições da proposta?\n\nObrigada,\n{sign}",
        [
            ("the new go-live date", ["22 de março", "2027-03-22", "22 March", "March 22"]),
            ("keeping the proposal's terms", ["condições", "proposta", "terms", "proposal"]),
        ],
        [("body", "22 de março de 2027")],
        lang="pt",
    ),
    mail(
        "con-0012",
        "delivery_delay",
        "Campus rollout postponed - updated plan",
        "Hello,\n\nour campus network upgrade is behind schedule, so we have to postpone the start of the Loop "
        "Analytics pilot from 1 February to 1 March 2027. The updated project plan is attached.\n\nCould the "
        "onboarding sessions move with it?\n\n{sign}",
        [("the new start date", ["1 March", "2027-03-01", "March 1"]), ("moving the onboarding", ["onboarding"])],
        [("body", "1 March 2027"), ("attachments", "2027-03-01")],
        route="objection",
        pdf=schedule(
            "Updated project plan - Nimbus Community College",
            [
                "Pilot start (original): 2027-02-01",
                "Pilot start (revised): 2027-03-01",
                "Reason: campus network upgrade behind schedule",
            ],
        ),
    ),
    mail(
        "con-0010",
        "pricing",
        "Pricing for 1,200 users",
        "Hi,\n\nplease send pricing for Loop Connect for 1,200 users across our three subsidiaries. We would like to "
        "compare an annual contract with a 3-year term.\n\nBest,\n{sign}",
        [
            ("pricing for 1,200 users", ["1,200", "1200", "1.200"]),
            ("annual versus 3-year term", ["3-year", "three-year", "36 months", "annual"]),
        ],
        [("body", "1,200 users"), ("body", "three subsidiaries")],
    ),
    mail(
        "con-0004",
        "pricing",
        "Angebot Loop Compliance",
        "Guten Tag,\n\nbitte senden Sie uns ein Angebot für Loop Compliance für zwei Standorte (Leipzig und Hamburg). "
        "Das Budget ist bis Ende März freigegeben.\n\nMit freundlichen Grüßen\n{sign}",
        [
            ("a quote for Loop Compliance", ["Angebot", "Preis", "quote", "pricing"]),
            ("two sites", ["zwei Standorte", "two sites", "Leipzig", "Hamburg"]),
        ],
        [("body", "zwei Standorte"), ("body", "Ende März")],
        lang="de",
    ),
    mail(
        "con-0035",
        "pricing",
        "Cost per site",
        "Hello,\n\nwhat would Loop Compliance cost per site per year if we add validation services? We have four "
        "sites in the UK.\n\nThanks,\n{sign}",
        [("cost per site", ["per site", "site"]), ("validation services", ["validation"])],
        [("body", "four sites")],
    ),
    mail(
        "con-0005",
        "integration",
        "ServiceNow and Snowflake integration",
        "Hello,\n\nwe would need Loop Field Service to create incidents in ServiceNow and to push job data into our "
        "Snowflake warehouse every night. What are the REST API rate limits?\n\nRegards,\n{sign}",
        [
            ("ServiceNow", ["ServiceNow"]),
            ("Snowflake", ["Snowflake"]),
            ("the API and its limits", ["API", "rate limit"]),
        ],
        [("body", "ServiceNow"), ("body", "Snowflake")],
    ),
    mail(
        "con-0035",
        "integration",
        "SAP PM work orders",
        "Hi,\n\ncan Loop Field Service read work orders from SAP PM and write back the completion notes? That is a "
        "must-have for our engineers.\n\n{sign}",
        [("SAP PM", ["SAP"]), ("work orders both ways", ["work order"])],
        [("body", "SAP PM")],
    ),
    mail(
        "con-0012",
        "security",
        "Data residency and encryption",
        "Hello,\n\nour IT security team asks where student data would be stored - it has to stay in Australia - "
        "and whether it is encrypted at rest. They also have a questionnaire of 40 questions.\n\n{sign}",
        [
            ("data residency in Australia", ["Australia", "residency"]),
            ("encryption at rest", ["encrypt"]),
            ("the questionnaire", ["questionnaire"]),
        ],
        [("body", "40 questions"), ("body", "Australia")],
    ),
    mail(
        "con-0071",
        "security",
        "SSO, FERPA and SOC 2",
        "Hi,\n\nbefore we go further: do you support SSO through Microsoft Entra ID, are you FERPA compliant, and can "
        "you share your SOC 2 Type II report under NDA?\n\n{sign}",
        [("SSO", ["SSO", "single sign-on", "Entra"]), ("FERPA", ["FERPA"]), ("the SOC 2 report", ["SOC 2"])],
        [("body", "FERPA"), ("body", "SOC 2 Type II")],
    ),
    mail(
        "con-0008",
        "demo_request",
        "Demo for our quality team",
        "Hi,\n\ncould you show Loop Analytics to our quality team next week? Tuesday or Wednesday afternoon works, "
        "we will be four people.\n\nThanks,\n{sign}",
        [("a demo", ["demo"]), ("Tuesday or Wednesday", ["Tuesday", "Wednesday"])],
        [("body", "four people"), ("body", "Tuesday or Wednesday")],
    ),
    mail(
        "con-0036",
        "demo_request",
        "Live walkthrough for the board",
        "Hello,\n\nour board would like to see Loop Compliance live, in 30 minutes, with the audit trail in "
        "particular. "
        "Can you propose a slot?\n\n{sign}",
        [("a live demo", ["demo", "walkthrough", "live"]), ("the audit trail", ["audit trail"])],
        [("body", "30 minutes")],
    ),
    mail(
        "con-0070",
        "timeline",
        "Timeline before the fall semester",
        "Hi,\n\nwe need everything running before the fall semester starts on 24 August 2027. What timeline would a "
        "rollout take for a university our size?\n\n{sign}",
        [
            ("the deadline", ["24 August", "August 24", "2027-08-24", "fall semester"]),
            ("the rollout timeline", ["timeline", "weeks", "plan", "schedule"]),
        ],
        [("body", "24 August 2027")],
    ),
    mail(
        "con-0005",
        "timeline",
        "導入スケジュールについて",
        "お世話になっております。\n\n4月1日の新年度までに本番稼働したいと考えています。導入にはどのくらいの期間が"
        "必要でしょうか。\n\nよろしくお願いいたします。\n{sign}",
        [
            ("the deadline", ["4月1日", "April 1", "2027-04-01", "1 April"]),
            ("how long the rollout takes", ["期間", "週間", "weeks", "スケジュール", "timeline"]),
        ],
        [("body", "4月1日")],
        lang="ja",
    ),
    mail(
        "con-0074",
        "expansion",
        "Expanding Loop Compliance",
        "Hi,\n\nthe Loop Compliance pilot went well and we want to expand it to our two other plants, in Ohio and "
        "Texas. Could you send a quote?\n\n{sign}",
        [
            ("the two more plants", ["two other plants", "Ohio", "Texas", "plants"]),
            ("a quote", ["quote", "pricing", "proposal"]),
        ],
        [("body", "Ohio and Texas")],
    ),
    mail(
        "con-0012",
        "expansion",
        "Three more campuses",
        "Hello,\n\nthe analytics pilot is popular; we would like to extend it to three more campuses next term. What "
        "would that look like commercially?\n\n{sign}",
        [
            ("three more campuses", ["three more campuses", "3 campuses", "campuses"]),
            ("the commercial terms", ["quote", "pricing", "proposal", "price"]),
        ],
        [("body", "three more campuses")],
    ),
    mail(
        "con-0010",
        "unknown",
        "New invoice address",
        "Hello,\n\nplease update our invoice address: from 1 February invoices go to Beacon Systems GmbH, "
        "Accounts Payable, Friedrichstraße 88, 10117 Berlin. Our VAT ID stays the same.\n\n{sign}",
        [
            ("the invoice address change", ["invoice address", "billing address", "Friedrichstraße"]),
            ("the VAT ID", ["VAT"]),
        ],
        [("body", "Friedrichstraße 88")],
    ),
    mail(
        "con-0002",
        "unknown",
        "Charity run in May",
        "Hi,\n\nour marketing team organises a charity run in Berlin in May. Would your company like to sponsor a "
        "team? Details are on our intranet page.\n\n{sign}",
        [("the charity run sponsorship", ["charity run", "sponsor"])],
        [("body", "charity run")],
    ),
    mail(
        "con-0036",
        "pricing",
        "Budget check",
        "Hello,\n\nwe have GBP 120,000 set aside for next year. Would Loop Analytics for our two plants fit in that, "
        "including implementation?\n\n{sign}",
        [("the budget", ["120,000", "120000", "budget"]), ("implementation cost", ["implementation"])],
        [("body", "GBP 120,000")],
    ),
    # --- deal stage changes ------------------------------------------------------------------------------------
    stage(
        "deal-9001",
        None,
        "prospecting",
        new_deal("deal-9001", "acc-006", "con-0010", "Loop Analytics", 150000, "pilot"),
    ),
    stage("deal-0157", "prospecting", "qualification"),
    stage("deal-0160", "qualification", "proposal"),
    stage("deal-0159", "qualification", "proposal"),
    stage(
        "deal-9002",
        "proposal",
        "negotiation",
        new_deal("deal-9002", "acc-038", "con-0074", "Loop Field Service", 41000, "rollout"),
    ),
    stage(
        "deal-9003",
        "negotiation",
        "closed_won",
        new_deal("deal-9003", "acc-020", "con-0036", "Loop Analytics", 98500, "rollout"),
    ),
    stage(
        "deal-9004",
        "negotiation",
        "closed_lost",
        new_deal("deal-9004", "acc-005", "con-0009", "Loop Connect", 21500, "expansion"),
    ),
    # --- new leads ----------------------------------------------------------------------------------------------
    lead(
        "acc-002",
        "new_lead_need",
        dict(
            contact_name="Anna Becker",
            email="annab@ironbridgediagnostics.de",
            title="Quality Director",
            budget_usd=60_000,
            message="We need to move complaint handling under ISO 13485 onto one system for our Leipzig site. Budget "
            "is approved.",
            web_visits=9,
            email_opens=4,
        ),
        [("complaint handling under ISO 13485", ["ISO 13485", "complaint"]), ("the Leipzig site", ["Leipzig"])],
        [("message", "ISO 13485"), ("budget_usd", 60_000)],
    ),
    lead(
        "acc-003",
        "new_lead_need",
        dict(
            contact_name="佐藤 健",
            email="ken_sato@highmarksystems.co.jp",
            title="情報システム部 部長",
            message="社内ヘルプデスクのチケットと現場サービスを連携したいです。約500名のエンジニアが利用する予定です。",
            web_visits=6,
            email_opens=2,
        ),
        [
            ("linking help-desk tickets to field service", ["チケット", "ticket", "ヘルプデスク"]),
            ("about 500 engineers", ["500"]),
        ],
        [("message", "500名")],
        lang="ja",
    ),
    lead(
        "acc-008",
        "new_lead_need",
        dict(
            contact_name="Liam O'Connor",
            email="liam.oconnor@nimbus.com.au",
            title="Director of Facilities",
            message="We maintain 14 buildings and need to schedule our maintenance technicians better. Can you show "
            "us a demo?",
            web_visits=11,
            email_opens=5,
            demo_requested=True,
        ),
        [
            ("14 buildings", ["14 buildings", "buildings"]),
            ("technician scheduling", ["technician", "maintenance", "schedul"]),
            ("a demo", ["demo"]),
        ],
        [("message", "14 buildings"), ("demo_requested", True)],
    ),
    lead(
        "acc-020",
        "new_lead_need",
        dict(
            contact_name="Priya Shah",
            email="priyas@summitcardio.co.uk",
            title="Head of Regulatory",
            budget_usd=80_000,
            message="We need 21 CFR Part 11 compliant electronic signatures before our FDA submission in June.",
            web_visits=7,
            email_opens=3,
        ),
        [("Part 11 e-signatures", ["Part 11", "signature"]), ("the June submission", ["June", "FDA"])],
        [("message", "21 CFR Part 11"), ("budget_usd", 80_000)],
    ),
    lead(
        "acc-038",
        "new_lead_need",
        dict(
            contact_name="Derek Mills",
            email="dmills@oakhavenplastics.com",
            title="Plant Manager",
            budget_usd=40_000,
            message="Our 6 extrusion lines have too much unplanned downtime. We want predictive maintenance this year.",
            web_visits=8,
            email_opens=6,
        ),
        [
            ("unplanned downtime", ["downtime"]),
            ("predictive maintenance", ["predictive"]),
            ("the six extrusion lines", ["6 extrusion", "six", "extrusion"]),
        ],
        [("message", "6 extrusion lines"), ("budget_usd", 40_000)],
    ),
    lead(
        "acc-036",
        "cold_lead",
        dict(
            contact_name="Sam Patel",
            email="sam.patel@kestrel.edu",
            title="intern",
            message="Just browsing.",
            web_visits=0,
            email_opens=0,
        ),
        [("no stated need: recorded, not drafted for", ["browsing"])],
        [("message", "Just browsing.")],
    ),
    lead(
        "acc-006",
        "unknown",
        dict(
            contact_name="Lena Vogel",
            email="lenav@beaconsystems.de",
            title="Partner Manager",
            message="We run a partner programme and would like to resell your tools to our own customers. Who "
            "handles partnerships?",
            web_visits=4,
            email_opens=1,
        ),
        [("the reseller partnership", ["partner", "resell"])],
        [("message", "resell")],
    ),
    # --- thin CRM webhooks --------------------------------------------------------------------------------------
    thin("hubspot", "deal-0160", "negotiation"),
    thin("salesforce", "deal-0157", "proposal"),
]

TEST: list[dict] = [
    mail(
        "con-0041",
        "delivery_delay",
        "Go-live slips - revised schedule",
        "Hello,\n\nour machine supplier is late with the new CNC cell, so our go-live slips from 15 February to "
        "12 April 2027. The revised schedule is attached.\n\nWe would like to keep the quoted price for Loop "
        "Analytics and move the consultant days to April. Can you confirm?\n\nKind regards,\n{sign}",
        [
            ("the new go-live date", ["12 April", "2027-04-12", "April 12"]),
            ("keeping the quoted price", ["price", "quote"]),
            ("moving the consultant days", ["consultant"]),
        ],
        [("body", "12 April 2027"), ("attachments", "2027-04-12")],
        route="objection",
        pdf=schedule(
            "Revised schedule - Westbrook Machining",
            ["Original go-live: 2027-02-15", "Revised go-live: 2027-04-12", "Reason: CNC cell delivery late"],
        ),
    ),
    mail(
        "con-0069",
        "delivery_delay",
        "Commissioning delay",
        "Hi,\n\nour paint line is behind schedule and commissioning slips from 1 March to 29 March 2027; see the "
        "attached plan. Does that change anything for the Loop Analytics onboarding?\n\n{sign}",
        [("the new commissioning date", ["29 March", "2027-03-29", "March 29"]), ("the onboarding", ["onboarding"])],
        [("body", "29 March 2027"), ("attachments", "2027-03-29")],
        route="objection",
        pdf=schedule(
            "Commissioning plan - Verdant Industrial",
            [
                "Commissioning (original): 2027-03-01",
                "Commissioning (revised): 2027-03-29",
                "Paint line behind schedule",
            ],
        ),
    ),
    mail(
        "con-0031",
        "delivery_delay",
        "Report de la mise en service",
        "Bonjour,\n\nnous devons reporter la mise en service du 1er mars au 3 mai 2027, notre fournisseur ayant du "
        "retard. Pouvons-nous décaler la facturation en conséquence ?\n\nCordialement,\n{sign}",
        [
            ("the new date", ["3 mai", "2027-05-03", "3 May", "May 3"]),
            ("moving the invoicing", ["facturation", "invoic", "billing"]),
        ],
        [("body", "3 mai 2027")],
        lang="fr",
    ),
    mail(
        "con-0058",
        "delivery_delay",
        "Rollout postponed - updated plan attached",
        "Hello,\n\nthe district network refresh is running late, so we must postpone the rollout start from "
        "4 January to 1 March 2027. The updated plan is attached; please adjust the training dates.\n\n{sign}",
        [("the new start date", ["1 March", "2027-03-01", "March 1"]), ("adjusting training", ["training"])],
        [("body", "1 March 2027"), ("attachments", "2027-03-01")],
        route="objection",
        pdf=schedule(
            "Updated rollout plan - Altamira School District",
            [
                "Rollout start (original): 2027-01-04",
                "Rollout start (revised): 2027-03-01",
                "Reason: network refresh late",
            ],
        ),
    ),
    mail(
        "con-0054",
        "pricing",
        "Cotización Loop Compliance",
        "Hola,\n\n¿nos pueden enviar una cotización de Loop Compliance para 800 usuarios con un contrato de "
        "24 meses?\n\nSaludos,\n{sign}",
        [
            ("a quote", ["cotización", "precio", "quote", "pricing"]),
            ("800 users", ["800"]),
            ("24-month contract", ["24 meses", "24 months", "two-year"]),
        ],
        [("body", "800 usuarios")],
        lang="es",
    ),
    mail(
        "con-0076",
        "pricing",
        "60 more seats",
        "Hi,\n\nwhat would 60 more Loop Connect seats cost? Our renewal is due in March, so it would be good to have "
        "one figure for both.\n\n{sign}",
        [("60 more seats", ["60"]), ("the March renewal", ["renewal", "March"])],
        [("body", "60 more")],
    ),
    mail(
        "con-0022",
        "integration",
        "Integração com TOTVS e LIMS",
        "Olá,\n\no Loop Connect integra com o nosso ERP TOTVS Protheus e com o LIMS do laboratório? Precisamos de "
        "sincronização diária.\n\nAtenciosamente,\n{sign}",
        [("TOTVS", ["TOTVS"]), ("the LIMS", ["LIMS"])],
        [("body", "TOTVS Protheus")],
        lang="pt",
    ),
    mail(
        "con-0064",
        "integration",
        "Google Workspace and PowerSchool",
        "Hello,\n\nwe would need the platform to connect to Google Workspace for sign-in and to PowerSchool as our "
        "student information system. Is that supported?\n\n{sign}",
        [("Google Workspace", ["Google"]), ("PowerSchool", ["PowerSchool"])],
        [("body", "PowerSchool")],
    ),
    mail(
        "con-0032",
        "security",
        "GDPR questions from our DPO",
        "Hello,\n\nour data protection officer needs your GDPR data processing agreement, the list of sub-processors "
        "and confirmation that hosting stays in the EU.\n\n{sign}",
        [
            ("the DPA", ["GDPR", "DPA", "data processing agreement"]),
            ("sub-processors", ["sub-processor", "subprocessor"]),
            ("EU hosting", ["EU", "Europe"]),
        ],
        [("body", "sub-processors")],
    ),
    mail(
        "con-0053",
        "security",
        "Pen test and MFA",
        "Hi,\n\ncould you share your latest penetration test summary and confirm that admin accounts require MFA? "
        "Our CISO asks before the contract review.\n\n{sign}",
        [("the penetration test", ["penetration", "pen test"]), ("MFA", ["MFA", "multi-factor"])],
        [("body", "MFA")],
    ),
    mail(
        "con-0062",
        "demo_request",
        "Demo for principals",
        "Hello,\n\ncould you give our school principals a demo of Loop Analytics on Thursday at 10:00 IST?\n\n{sign}",
        [("a demo", ["demo"]), ("Thursday", ["Thursday"])],
        [("body", "10:00 IST")],
    ),
    mail(
        "con-0067",
        "demo_request",
        "Offline mode demo",
        "Hi,\n\nour engineers work in basements without signal. Can you demo the Loop Field Service mobile app in "
        "offline mode?\n\n{sign}",
        [("a demo", ["demo"]), ("offline mode", ["offline"])],
        [("body", "offline mode")],
    ),
    mail(
        "con-0020",
        "timeline",
        "Prazo antes da auditoria",
        "Hello,\n\nwe have an ANVISA audit in September 2027. How long would an implementation of Loop Compliance "
        "take for us?\n\n{sign}",
        [
            ("the September audit", ["September", "ANVISA"]),
            ("the implementation time", ["weeks", "months", "timeline"]),
        ],
        [("body", "September 2027")],
    ),
    mail(
        "con-0076",
        "timeline",
        "上线时间",
        "您好，\n\n我们希望在2027年3月31日之前完成上线。实施大概需要多长时间？\n\n谢谢，\n{sign}",
        [
            ("the deadline", ["3月31日", "2027-03-31", "31 March", "March 31"]),
            ("how long it takes", ["时间", "周", "weeks", "timeline"]),
        ],
        [("body", "2027年3月31日")],
        lang="zh",
    ),
    mail(
        "con-0060",
        "expansion",
        "Twelve more schools",
        "Hi,\n\nwe want Loop Field Service in 12 more schools from the next school year. Please send a "
        "quote.\n\n{sign}",
        [("12 more schools", ["12"]), ("a quote", ["quote", "pricing", "proposal"])],
        [("body", "12 more schools")],
    ),
    mail(
        "con-0040",
        "expansion",
        "Sheffield site",
        "Hello,\n\nour second site in Sheffield would like Loop Connect as well. Can you put together a "
        "proposal?\n\n{sign}",
        [("the Sheffield site", ["Sheffield"]), ("a proposal", ["proposal", "quote", "pricing"])],
        [("body", "Sheffield")],
    ),
    mail(
        "con-0068",
        "unknown",
        "Bank details confirmation",
        "Hello,\n\nour accounts payable team needs a letter on your letterhead confirming your bank details before "
        "they can pay any supplier this year.\n\n{sign}",
        [("the bank details letter", ["bank details", "accounts payable", "letterhead"])],
        [("body", "bank details")],
    ),
    mail(
        "con-0021",
        "unknown",
        "Convite para congresso",
        "Olá,\n\nestamos organizando um congresso médico em São Paulo e gostaríamos de convidar um palestrante da "
        "sua empresa.\n\nAbraços,\n{sign}",
        [("the congress invitation", ["congresso", "palestrante", "speaker", "conference"])],
        [("body", "congresso médico")],
        lang="pt",
    ),
    mail(
        "con-0041",
        "security",
        "ISO 27001 and retention",
        "Hi,\n\nare you ISO 27001 certified, and how long do you keep machine data after a contract ends?\n\n{sign}",
        [("ISO 27001", ["ISO 27001", "27001"]), ("data retention", ["retention", "keep", "delete"])],
        [("body", "ISO 27001")],
    ),
    mail(
        "con-0076",
        "integration",
        "Slack and Jira",
        "Hi,\n\ncan Loop Connect post alerts into Slack and open Jira issues automatically?\n\n{sign}",
        [("Slack", ["Slack"]), ("Jira", ["Jira"])],
        [("body", "Jira")],
    ),
    stage(
        "deal-9101", None, "prospecting", new_deal("deal-9101", "acc-033", "con-0063", "Loop Connect", 52000, "pilot")
    ),
    stage(
        "deal-9102",
        "prospecting",
        "qualification",
        new_deal("deal-9102", "acc-040", "con-0076", "Loop Analytics", 44500, "pilot"),
    ),
    stage("deal-0155", "qualification", "proposal"),
    stage(
        "deal-9103",
        "qualification",
        "proposal",
        new_deal("deal-9103", "acc-031", "con-0058", "Loop Compliance", 176000, "rollout"),
    ),
    stage(
        "deal-9104",
        "proposal",
        "negotiation",
        new_deal("deal-9104", "acc-013", "con-0022", "Loop Analytics", 27500, "pilot"),
    ),
    stage(
        "deal-9105",
        "negotiation",
        "closed_won",
        new_deal("deal-9105", "acc-022", "con-0041", "Loop Field Service", 171500, "rollout"),
    ),
    stage(
        "deal-9106",
        "negotiation",
        "closed_lost",
        new_deal("deal-9106", "acc-018", "con-0031", "Loop Compliance", 38500, "expansion"),
    ),
    lead(
        "acc-022",
        "new_lead_need",
        dict(
            contact_name="Harriet Cole",
            email="harrietc@westbrookmachining.co.uk",
            title="Maintenance Lead",
            budget_usd=70_000,
            message="We have 40 CNC machines and want condition monitoring that feeds our Fiix CMMS.",
            web_visits=10,
            email_opens=4,
        ),
        [("40 CNC machines", ["40"]), ("the Fiix CMMS", ["Fiix", "CMMS"])],
        [("message", "40 CNC machines"), ("budget_usd", 70_000)],
    ),
    lead(
        "acc-029",
        "new_lead_need",
        dict(
            contact_name="Carlos Romero",
            email="carlos.romero@tidewatersystems.com.mx",
            title="Gerente de TI",
            budget_usd=90_000,
            message="Necesitamos cumplir con la NOM-151 para conservar documentos digitales. ¿Pueden enviarnos una "
            "propuesta?",
            web_visits=5,
            email_opens=5,
        ),
        [("NOM-151", ["NOM-151"]), ("a proposal", ["propuesta", "proposal"])],
        [("message", "NOM-151"), ("budget_usd", 90_000)],
        lang="es",
    ),
    lead(
        "acc-033",
        "new_lead_need",
        dict(
            contact_name="Anil Kumar",
            email="akumar@larkspur.in",
            title="Principal",
            message="We want attendance analytics for our 9 schools before the new academic year starts in June.",
            web_visits=6,
            email_opens=2,
        ),
        [("attendance analytics", ["attendance"]), ("9 schools", ["9 schools", "nine"]), ("June", ["June"])],
        [("message", "9 schools")],
    ),
    lead(
        "acc-018",
        "new_lead_need",
        dict(
            contact_name="Élodie Martin",
            email="emartin@foxglovecardio.fr",
            title="Responsable qualité",
            message="Nous devons préparer l'audit MDR de notre organisme notifié en octobre. Pouvez-vous nous faire "
            "une démonstration ?",
            web_visits=8,
            email_opens=3,
            demo_requested=True,
        ),
        [("the MDR audit", ["MDR"]), ("October", ["octobre", "October"]), ("a demo", ["démonstration", "demo"])],
        [("message", "audit MDR"), ("demo_requested", True)],
        lang="fr",
    ),
    lead(
        "acc-040",
        "new_lead_need",
        dict(
            contact_name="陈伟",
            email="wei_chen@coralbayapps.com.sg",
            title="产品经理",
            message="我们需要把客户工单和现场服务调度打通，大约有200名技术人员。请问有API文档吗？",
            web_visits=7,
            email_opens=2,
        ),
        [
            ("the API documentation", ["API"]),
            ("about 200 technicians", ["200"]),
            ("tickets and dispatch", ["工单", "调度", "ticket", "dispatch"]),
        ],
        [("message", "200名技术人员")],
        lang="zh",
    ),
    lead(
        "acc-013",
        "cold_lead",
        dict(
            contact_name="Lucas Alves",
            email="lucasa@ardentbiosystems.com.br",
            title="intern",
            message="Just browsing.",
            web_visits=0,
            email_opens=0,
        ),
        [("no stated need: recorded, not drafted for", ["browsing"])],
        [("message", "Just browsing.")],
    ),
    lead(
        "acc-031",
        "unknown",
        dict(
            contact_name="Grace Kim",
            email="grace_kim@altamira.edu",
            title="Event Coordinator",
            message="We are organising a STEM career fair on 12 March and invite vendors to run a booth. Are you "
            "interested?",
            web_visits=2,
            email_opens=1,
        ),
        [("the career fair booth", ["career fair", "booth"])],
        [("message", "career fair")],
    ),
    thin("hubspot", "deal-0155", "negotiation"),
    thin("salesforce", "deal-0138", "proposal"),
]
STAGE_MUST: dict[str, Must] = {
    "prospecting": [("a first conversation", ["call", "conversation", "meeting", "introduc"])],
    "qualification": [("questions about their needs", ["requirement", "need", "question", "priorit"])],
    "proposal": [("the proposal or a call to go through it", ["proposal", "call", "meeting"])],
    "negotiation": [("the terms under negotiation", ["terms", "contract", "agreement"])],
    "closed_won": [("thanks and the onboarding", ["thank", "welcome", "onboarding", "kick-off", "kickoff"])],
    "closed_lost": [("thanks and an open door", ["thank", "feedback", "future", "touch"])],
}


def build(part: str, specs: list[dict], crm: JsonSnapshotCRM) -> list[dict]:
    cases = []
    for number, spec in enumerate(specs, start=1):
        case_id = f"dq-{part}-{number:02d}"
        at = START[part] + timedelta(hours=3 * number)
        account, event, expect, lang = BUILDERS[spec["kind"]](spec, f"evt-{case_id}", at, crm)
        cases.append(
            {
                "id": case_id,
                "account": account,
                "language": lang,
                "event": event.model_dump(mode="json", exclude_defaults=True),
                "expect": expect,
            }
        )
    return cases


def _expect(topic: str, route: str, must: Must, facts: list[dict], drafted: bool = True) -> dict:
    return {
        "topic": topic,
        "known_topic": topic != "unknown",
        "route": route,
        "drafted": drafted and route != "record_only",
        "must_address": [{"what": what, "any_of": terms} for what, terms in must],
        "may_use": facts,
    }


def _fact(source: str, field: str, value: Any) -> dict:
    return {"source": source, "field": field, "value": value}


def _crm_facts(account, contact=None, deal=None) -> list[dict]:
    facts = [_fact("account", f, getattr(account, f)) for f in ("name", "industry", "employees")]
    facts += [_fact("contact", f, getattr(contact, f)) for f in ("full_name", "raw_title")] if contact else []
    return facts + ([_fact("deal", f, getattr(deal, f)) for f in ("name", "product", "amount_usd")] if deal else [])


def _mail(spec: dict, event_id: str, at: datetime, crm: JsonSnapshotCRM):
    contact = crm.contact(spec["contact"])
    account = crm.account(contact.account_id)
    body = spec["body"].format(sign=f"{contact.full_name}\n{contact.raw_title}, {account.name}")
    attachments = []
    if spec["pdf"]:
        data = base64.b64encode(text_pdf(spec["pdf"])).decode("ascii")
        attachments = [Attachment(filename="revised-plan.pdf", content_type="application/pdf", content_base64=data)]
    domain = contact.email.rsplit("@", 1)[1]
    payload = InboundEmailPayload(
        message_id=f"<{event_id}@{domain}>",
        from_email=contact.email,
        subject=spec["subject"],
        body=body,
        attachments=attachments,
    )
    event = CRMEvent(id=event_id, type="inbound_email", occurred_at=at, source="eval-drafts", payload=payload)
    facts = _crm_facts(account, contact) + [_fact("event", f, v) for f, v in spec["facts"]]
    return account.id, event, _expect(spec["topic"], spec["route"], spec["must"], facts), spec["lang"]


def _stage(spec: dict, event_id: str, at: datetime, crm: JsonSnapshotCRM):
    fetched = None
    if spec["fetched"]:
        d = spec["fetched"]
        account, contact = crm.account(d["account"]), crm.contact(d["contact"])
        outcome = {"closed_won": "won", "closed_lost": "lost"}.get(spec["to_stage"], "open")
        deal = crm.deal("deal-0001").model_copy(
            update={
                "id": d["id"],
                "account_id": account.id,
                "contact_id": contact.id,
                "name": f"{account.name} - {d['product']} {d['scope']}",
                "product": d["product"],
                "amount_usd": d["amount"],
                "stage": spec["to_stage"],
                "outcome": outcome,
                "closed_on": None,
                "case_summary": None,
                "chunks": [],
            }
        )
        fetched = FetchedRecords(account=account, contact=contact, deal=deal)
    else:
        deal = crm.deal(spec["deal"])
        account, contact = crm.account(deal.account_id), crm.contact(str(deal.contact_id))
    payload = DealStageChangePayload(deal_id=deal.id, from_stage=spec["from_stage"], to_stage=spec["to_stage"])
    event = CRMEvent(
        id=event_id, type="deal_stage_change", occurred_at=at, source="eval-drafts", payload=payload, fetched=fetched
    )
    return account.id, event, _stage_expect(spec["to_stage"], account, contact, deal), "en"


def _stage_expect(to_stage: str, account, contact, deal) -> dict:
    route = "proposal" if to_stage == "proposal" else "record_only"
    must = [("the product", [deal.product]), *STAGE_MUST[to_stage]]
    facts = _crm_facts(account, contact, deal) + [_fact("event", "to_stage", to_stage)]
    return _expect(f"stage_{to_stage}", route, must, facts)


def _lead(spec: dict, event_id: str, at: datetime, crm: JsonSnapshotCRM):
    account = crm.account(spec["account"])
    payload = NewLeadPayload(
        lead_id=f"lead-{event_id}",
        company=account.name,
        industry=account.industry,
        employees=account.employees,
        country=account.country,
        **spec["lead"],
    )
    event = CRMEvent(id=event_id, type="new_lead", occurred_at=at, source="eval-drafts", payload=payload)
    facts = [_fact("event", f, getattr(payload, f)) for f in ("company", "employees", "contact_name", "title")]
    facts += [_fact("event", f, v) for f, v in spec["facts"]]
    cold = spec["topic"] == "cold_lead"
    return account.id, event, _expect(spec["topic"], "proposal", spec["must"], facts, drafted=not cold), spec["lang"]


def _thin(spec: dict, event_id: str, at: datetime, crm: JsonSnapshotCRM):
    deal = crm.deal(spec["deal"])
    change = "deal.propertyChange" if spec["system"] == "hubspot" else "Opportunity UPDATE"
    payload = CRMChangePayload(
        system=spec["system"],
        change=change,
        object_type="deal",
        record_id=deal.id,
        values={"to_stage": spec["to_stage"]},
    )
    event = CRMEvent(id=event_id, type="crm_change", occurred_at=at, source=f"eval-{spec['system']}", payload=payload)
    account, contact = crm.account(deal.account_id), crm.contact(str(deal.contact_id))
    return account.id, event, _stage_expect(spec["to_stage"], account, contact, deal), "en"


BUILDERS = {"mail": _mail, "stage": _stage, "lead": _lead, "thin": _thin}


class _Dumper(yaml.SafeDumper):
    """Multi-line text (e-mail bodies) as literal blocks, so the frozen file reads like the e-mails it holds."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def dump(document: dict) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def render(part: str, specs: list[dict], crm: JsonSnapshotCRM) -> str:
    cases = build(part, specs, crm)
    document = {"version": VERSION, "part": part, "cases": cases}
    header = HEADER.format(part=part, count=len(cases), rule=RULES[part])
    return header + dump(document)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write bench/eval/drafts/{dev,test}.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate_demo(Path(tmp) / "crm", Path(tmp) / "events", seed=DEMO_SEED)
        crm = JsonSnapshotCRM(Path(tmp) / "crm")
        texts = {part: render(part, specs, crm) for part, specs in (("dev", DEV), ("test", TEST))}
    for part, text in texts.items():
        path = draft_file(part)  # type: ignore[arg-type]
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            sys.exit(f"{path} differs from what this script writes; the set is frozen: do not rewrite it")
    print("written" if args.write else "the committed draft sets match this script")


if __name__ == "__main__":
    main()
