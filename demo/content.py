"""Text building blocks for the demo CRM.

Templates use str.format fields filled per deal by demo.generate (unused fields are
ignored). Every block is industry-specific on purpose: retrieval and drafting are
only testable when a manufacturing case reads differently from a SaaS one.
"""

from __future__ import annotations

from typing import NamedTuple

PRODUCTS = ("Loop Analytics", "Loop Connect", "Loop Compliance", "Loop Field Service")
# List price per year for a ~500-employee customer; scaled by company size.
BASE_PRICE_USD = {
    "Loop Analytics": 60_000,
    "Loop Connect": 45_000,
    "Loop Compliance": 80_000,
    "Loop Field Service": 70_000,
}
REPS = ("rep-anna", "rep-ben", "rep-carla")

# The raw CRM titles, messiness intended: the title normaliser is tested against these.
TITLES = (
    "Dir. of Ops", "VP Eng.", "head of procurement", "CTO", "Chief Technology Officer",
    "Sr. Buyer", "IT mgr", "IT Manager", "VP, Engineering", "Director Operations",
    "Procurement Lead", "CFO", "Chief Financial Officer", "Head of IT", "Plant Manager",
    "Quality Mgr", "Dean of IT", "Chief Medical Officer", "Regulatory Affairs Dir",
    "Software Engineer", "Sr. Software Eng", "Office Manager", "intern", "CEO",
    "Founder & CEO", "COO", "Head of Clinical Ops", "Dir. Supply Chain",
)
# Titles that only make sense in some industries; all others fit anywhere.
TITLE_INDUSTRIES = {
    "Dean of IT": ("education",),
    "Chief Medical Officer": ("medical_devices",),
    "Regulatory Affairs Dir": ("medical_devices",),
    "Head of Clinical Ops": ("medical_devices",),
    "Plant Manager": ("manufacturing", "medical_devices"),
    "Quality Mgr": ("manufacturing", "medical_devices"),
}


class Country(NamedTuple):
    name: str
    timezone: str
    tld: str
    phone: str  # '#' becomes a digit
    legal_suffix: str


COUNTRIES = {
    "NA": (
        Country("United States", "America/Chicago", "com", "+1 312-555-0###", "Inc."),
        Country("United States", "America/New_York", "com", "+1 617-555-0###", "Inc."),
        Country("United States", "America/Los_Angeles", "com", "+1 408-555-0###", "Inc."),
        Country("Canada", "America/Toronto", "ca", "+1 416-555-0###", "Ltd."),
    ),
    "EMEA": (
        Country("Germany", "Europe/Berlin", "de", "+49 30 555 ####", "GmbH"),
        Country("United Kingdom", "Europe/London", "co.uk", "+44 20 7946 0###", "Ltd"),
        Country("France", "Europe/Paris", "fr", "+33 1 55 ## ## ##", "SAS"),
        Country("Netherlands", "Europe/Amsterdam", "nl", "+31 20 555 ####", "B.V."),
        Country("Poland", "Europe/Warsaw", "pl", "+48 22 555 ## ##", "sp. z o.o."),
    ),
    "APAC": (
        Country("Singapore", "Asia/Singapore", "com.sg", "+65 6555 ####", "Pte. Ltd."),
        Country("Japan", "Asia/Tokyo", "co.jp", "+81 3 5555 ####", "K.K."),
        Country("Australia", "Australia/Sydney", "com.au", "+61 2 5550 ####", "Pty Ltd"),
        Country("India", "Asia/Kolkata", "in", "+91 80 5555 ####", "Pvt. Ltd."),
    ),
    "LATAM": (
        Country("Brazil", "America/Sao_Paulo", "com.br", "+55 11 5555-####", "Ltda."),
        Country("Mexico", "America/Mexico_City", "com.mx", "+52 55 5555 ####", "S.A. de C.V."),
        Country("Chile", "America/Santiago", "cl", "+56 2 2555 ####", "SpA"),
        Country("Colombia", "America/Bogota", "com.co", "+57 601 555 ####", "S.A.S."),
    ),
}

FIRST_NAMES = {
    "NA": (
        "Emily", "Jason", "Megan", "Tyler", "Rachel", "Marcus", "Lauren", "Kevin", "Olivia", "Brandon",
        "Nicole", "Derek",
    ),
    "EMEA": (
        "Katrin", "Lukas", "Sophie", "Jonas", "Amélie", "Pieter", "Hannah", "Tomasz", "Claire", "Matthias",
        "Agnieszka", "Oliver",
    ),
    "APAC": (
        "Wei Ling", "Hiroshi", "Priya", "Arjun", "Mei", "Kenji", "Chloe", "Rahul", "Aiko", "Liam",
        "Siew Mei", "Vikram",
    ),
    "LATAM": (
        "João", "Camila", "Mateo", "Valentina", "Rafael", "Lucía", "Diego", "Fernanda", "Andrés", "Isabela",
        "Tomás", "Mariana",
    ),
}
LAST_NAMES = {
    "NA": (
        "Carter", "Nguyen", "Hughes", "Patel", "Brooks", "Ramirez", "Foster", "Kim", "Sullivan", "Bennett",
        "Coleman", "Reyes",
    ),
    "EMEA": (
        "Schneider", "Dubois", "Jansen", "Kowalski", "Fischer", "Moreau", "Bakker", "Wright", "Hoffmann",
        "Lefèvre", "Nowak", "Evans",
    ),
    "APAC": (
        "Tan", "Tanaka", "Sharma", "Lim", "Suzuki", "Iyer", "Wong", "Nakamura", "Reddy", "Chen", "Walker",
        "Ong",
    ),
    "LATAM": (
        "Silva", "González", "Oliveira", "Rodríguez", "Souza", "Martínez", "Pereira", "López", "Costa",
        "Herrera", "Ribeiro", "Vargas",
    ),
}

# Distinctive first words for company names, drawn without replacement so names are unique.
COMPANY_STEMS = (
    "Brightline", "Northgate", "Kestrel", "Ironbridge", "Bluefjord", "Cobalt", "Riverstone", "Halcyon",
    "Sunmesa", "Granite Peak", "Lakeshore", "Meridian", "Oakhaven", "Pinecrest", "Redwater", "Silverleaf",
    "Stonebridge", "Tidewater", "Vantage", "Westbrook", "Ardent", "Beacon", "Cedar Ridge", "Driftwood",
    "Evergreen", "Foxglove", "Greyhawk", "Harbor", "Juniper", "Keystone", "Larkspur", "Mosaic",
    "Nimbus", "Orchid", "Polaris", "Quarry", "Rosewood", "Summit", "Trillium", "Upland",
    "Verdant", "Willowmere", "Yarrow", "Zephyr", "Altamira", "Coral Bay", "Eastwind", "Highmark",
)
COMPANY_WORDS = {
    "manufacturing": (
        "Precision", "Tooling", "Components", "Castings", "Plastics", "Machining", "Packaging", "Industrial",
    ),
    "saas": ("Software", "Labs", "Cloud", "Systems", "Data", "Apps"),
    "medical_devices": ("Medical", "Diagnostics", "Surgical", "MedTech", "Biosystems", "Cardio"),
}
EDUCATION_PATTERNS = (
    "{stem} University", "{stem} Community College", "{stem} Institute of Technology",
    "{stem} School District", "{stem} College", "{stem} Learning Trust",
)


class Play(NamedTuple):
    """How one product is sold in one industry: the pain, the offer, how wins looked."""

    situations: tuple[str, ...]
    offers: tuple[str, ...]
    wins: tuple[str, ...]


class IndustryText(NamedTuple):
    systems: tuple[str, ...]
    competitors: tuple[str, ...]
    plays: dict[str, Play]  # product -> play
    losses: dict[str, tuple[str, ...]]  # loss reason -> why it was lost
    concerns: tuple[str, ...]
    next_steps: tuple[str, ...]
    objections: dict[str, tuple[tuple[str, str], ...]]  # topic -> (objection, answer)


# Objections every industry raises; industries add their own on top.
COMMON_OBJECTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "price": (
        ("The quote is {pct}% above what finance approved for this year.",
         "We moved to a {months}-month ramp with the first quarter at half price and capped the year-two uplift at 3%."),
        ("A cheaper point tool covers most of what we need.",
         "We showed a three-year cost comparison: the point tool needs two extra integrations, which erases its ${gap:,} price gap."),
    ),
    "delivery_delay": (
        ("Your last rollout slipped; we cannot afford a late go-live before {season}.",
         "We committed to a {weeks}-week plan with a named project lead and a service credit of 5% per week of delay."),
        ("Onboarding a second region within the quarter looks unrealistic.",
         "We proposed phasing: region one in {weeks} weeks, region two six weeks later with the same template."),
    ),
    "security_review": (
        ("Security wants a pen-test report and data residency answers before signing.",
         "We shared the latest third-party pen-test summary and confirmed hosting in the customer's region with encryption at rest."),
        ("The vendor security questionnaire has {n_questions} open questions.",
         "Our security engineer answered all {n_questions} within five working days and joined a review call."),
    ),
    "integration_effort": (
        ("Our IT team has no capacity for another integration this year.",
         "We offered {days} days of professional services to build the {system} connector ourselves."),
        ("Mapping our data into your model looks like months of work.",
         "We ran a two-week mapping workshop on a data sample and showed {pct}% of fields map automatically."),
    ),
}

INDUSTRY_TEXT: dict[str, IndustryText] = {
    "manufacturing": IndustryText(
        systems=("Siemens Opcenter MES", "Rockwell FactoryTalk", "SAP S/4HANA", "a home-grown MES"),
        competitors=("PlantPulse", "Sentinel Ops", "an in-house data team"),
        plays={
            "Loop Analytics": Play(
                situations=(
                    "{company} runs {n_sites} plants and lost about {hours} hours a month to unplanned spindle failures.",
                    "{company} had OEE below {oee}% on its packaging lines and no reliable data on why.",
                ),
                offers=(
                    "predictive maintenance on {n_lines} CNC lines using vibration and spindle-load data",
                    "OEE dashboards across {n_sites} plants with downtime root-cause tagging",
                ),
                wins=(
                    "Signed a {months}-month contract; unplanned downtime fell {pct}% in the first two quarters.",
                    "Won after the pilot caught two bearing failures ahead of time and the plant manager championed it.",
                ),
            ),
            "Loop Connect": Play(
                situations=(
                    "{company} was opening a new plant and needed shop-floor data flowing into {system} from day one.",
                    "{company} re-keyed scrap and order data by hand between {system} and the ERP every shift.",
                ),
                offers=(
                    "an MES integration between {system} and the ERP for order and scrap data",
                    "machine connectivity for {n_lines} lines over OPC UA feeding {system}",
                ),
                wins=(
                    "Won on integration depth: the {system} connector went live in {weeks} weeks without a production stop.",
                    "Closed after a {weeks}-week pilot on one line removed manual re-keying; all {n_sites} plants followed.",
                ),
            ),
            "Loop Compliance": Play(
                situations=(
                    "{company} failed a customer audit on traceability of batch records across {n_lines} lines.",
                    "{company} needed ISO 9001 recertification with supplier deviations still tracked in email.",
                ),
                offers=(
                    "digital batch records with ISO 9001 audit trails for {n_lines} lines",
                    "supplier quality and deviation tracking tied to {system}",
                ),
                wins=(
                    "Won; the follow-up customer audit closed with zero findings {months} months later.",
                    "Signed after the pilot cut deviation closure time by {pct}%.",
                ),
            ),
            "Loop Field Service": Play(
                situations=(
                    "{company}'s maintenance team of {n_techs} technicians was still scheduled from spreadsheets.",
                    "{company} services installed presses at customer sites and missed {pct}% of service windows.",
                ),
                offers=(
                    "field service scheduling for {n_techs} technicians servicing installed presses",
                    "spare-parts planning and work orders for {n_techs} maintenance technicians",
                ),
                wins=(
                    "Won; first-time fix rate rose {pct}% within two quarters.",
                    "Signed a {months}-month contract after the pilot region hit every service window for {weeks} weeks.",
                ),
            ),
        },
        losses={
            "price": ("Lost on price: {competitor} came in about {pct}% cheaper for the first year.",),
            "competitor": ("Lost to {competitor}, which already ran at their sister plant.",),
            "integration_effort": ("Lost because connecting {system} needed a line stop the plant would not schedule before {season}.",),
            "delivery_delay": ("Lost when our hardware delivery slipped {weeks} weeks past their shutdown window.",),
            "budget_freeze": ("Lost to a capex freeze after a weak order book; the project was parked.",),
        },
        concerns=(
            "whether the rollout needs a production stop",
            "how alerts reach shift supervisors on the floor",
            "OPC UA support on their older controllers",
            "how the rollout fits the plant shutdown calendar",
        ),
        next_steps=(
            "site walk-through at the main plant",
            "pilot success criteria signed by the plant manager",
            "IT/OT network review with their controls engineer",
        ),
        objections={
            "downtime": (
                ("Rolling this out on the shop floor means stopping lines, which costs ${gap:,} per hour.",
                 "We scheduled the rollout line by line inside their planned maintenance windows, so no production stop was needed."),
            ),
        },
    ),
    "saas": IndustryText(
        systems=("Okta", "Azure AD", "Salesforce", "Stripe Billing", "Snowflake"),
        competitors=("CloudMetric", "a PLG analytics start-up", "their own dbt models"),
        plays={
            "Loop Analytics": Play(
                situations=(
                    "{company} had {n_users} weekly active users but no view of which features drove renewals.",
                    "{company} lost {pct}% of logos at renewal last year and could not explain why.",
                ),
                offers=(
                    "usage analytics with churn-risk scoring for {n_users} users",
                    "product usage dashboards joined with revenue from {system}",
                ),
                wins=(
                    "Signed a {months}-month subscription after the churn model flagged {pct}% of at-risk accounts correctly in the trial.",
                    "Closed after a {weeks}-week trial; expansion to their EU team followed next quarter.",
                ),
            ),
            "Loop Connect": Play(
                situations=(
                    "{company} was moving upmarket and enterprise prospects kept asking for SSO.",
                    "{company} was onboarding its first Fortune 500 customer and needed SCIM provisioning via {system}.",
                ),
                offers=(
                    "SSO (SAML and OIDC) plus SCIM provisioning through {system}",
                    "an API integration syncing accounts and plans from {system}",
                ),
                wins=(
                    "Won; SSO went live in {weeks} weeks and unblocked two enterprise deals in their pipeline.",
                    "Signed a {months}-month contract once the {system} sync passed their load test.",
                ),
            ),
            "Loop Compliance": Play(
                situations=(
                    "{company}'s enterprise prospects demanded a SOC 2 Type II report within {months} months.",
                    "{company} started selling in the EU and had no records of processing under GDPR.",
                ),
                offers=(
                    "SOC 2 Type II evidence collection across {n_systems} systems",
                    "GDPR records of processing and DPA management for EU customers",
                ),
                wins=(
                    "Won once the SOC 2 evidence pack saved their audit about {days} days of manual work.",
                    "Signed after their first EU enterprise customer accepted the DPA package unchanged.",
                ),
            ),
            "Loop Field Service": Play(
                situations=(
                    "{company}'s {n_techs} onboarding engineers juggled enterprise rollouts in shared spreadsheets.",
                ),
                offers=(
                    "scheduling and time tracking for {n_techs} onboarding engineers on enterprise rollouts",
                ),
                wins=(
                    "Won; average enterprise onboarding time dropped from {weeks} weeks by about {pct}%.",
                ),
            ),
        },
        losses={
            "price": ("Lost on price; they chose {competitor} at roughly {pct}% less per seat.",),
            "competitor": ("Lost to {competitor}, which their new VP had used before.",),
            "security_review": ("Lost in security review: they required EU-only data residency we could not offer then.",),
            "no_decision": ("Went dark after a reorg; the champion left and no decision was made.",),
            "budget_freeze": ("Lost to a hiring and spending freeze after their funding round slipped.",),
        },
        concerns=(
            "SCIM deprovisioning latency",
            "whether usage events can be sampled to control cost",
            "audit log retention for SOC 2",
            "API rate limits at peak traffic",
        ),
        next_steps=(
            "security questionnaire returned by their CISO",
            "sandbox tenant with their {system} connected",
            "pricing call with their CFO",
        ),
        objections={
            "sso": (
                ("We need SSO with {system} and automatic deprovisioning, or it is a non-starter.",
                 "We demoed SAML SSO with {system} and showed SCIM removing a user within {minutes} minutes."),
            ),
        },
    ),
    "education": IndustryText(
        systems=("Canvas", "Moodle", "Blackboard", "PowerSchool SIS", "Ellucian Banner"),
        competitors=("EduBridge", "their state's shared-services consortium", "a free LMS plugin"),
        plays={
            "Loop Analytics": Play(
                situations=(
                    "{company} saw first-year retention drop to {retention}% and wanted early warning on disengaged students.",
                    "{company} serves {n_students} students and its {system} data lived apart from advising.",
                ),
                offers=(
                    "student engagement analytics for {n_students} students with advisor alerts",
                    "enrollment and retention forecasting by programme",
                ),
                wins=(
                    "Won on net-60 terms aligned to the fiscal year; advisors now get alerts {days} days earlier.",
                    "Signed after the pilot raised course completion {pct}% in two gateway courses.",
                ),
            ),
            "Loop Connect": Play(
                situations=(
                    "{company} was consolidating two LMS instances into {system} before the autumn term.",
                    "{company} fixed roster errors by hand every term because the SIS and {system} disagreed.",
                ),
                offers=(
                    "an LMS integration with {system} plus nightly SIS roster sync",
                    "single sign-on and roster provisioning across {n_sites} campuses",
                ),
                wins=(
                    "Board approved a {months}-month contract after the {system} integration worked in the summer term.",
                    "Won; roster tickets fell {pct}% in the first term.",
                ),
            ),
            "Loop Compliance": Play(
                situations=(
                    "{company} had a district mandate to review every vendor for FERPA and student data privacy.",
                    "{company} faced an accessibility complaint and had to report WCAG conformance for all courses.",
                ),
                offers=(
                    "FERPA-compliant student data handling with consent and access logs",
                    "student data privacy agreements and accessibility (WCAG 2.1) reporting",
                ),
                wins=(
                    "Won once the student data privacy agreement passed legal review in {weeks} weeks.",
                    "Signed on net-60 terms after the first accessibility report went to the board on time.",
                ),
            ),
            "Loop Field Service": Play(
                situations=(
                    "{company}'s IT team of {n_techs} supported {n_sites} campuses and a growing device fleet.",
                ),
                offers=(
                    "repair ticketing for a fleet of {n_devices} student Chromebooks across {n_sites} campuses",
                ),
                wins=(
                    "Won; device turnaround dropped to {hours} hours and loaner stock shrank {pct}%.",
                ),
            ),
        },
        losses={
            "price": ("Lost on price; the budget line was cut {pct}% by the board.",),
            "competitor": ("Lost to {competitor}, which was already on the state purchasing list.",),
            "security_review": ("Lost in privacy review: the district required student data to stay in-state.",),
            "delivery_delay": ("Lost because we could not finish the {system} integration before term start.",),
            "no_decision": ("Stalled through procurement; the RFP was re-issued next year.",),
        },
        concerns=(
            "whether any student data leaves the country",
            "faculty training time before term start",
            "roster sync conflicts between {system} and the SIS",
            "net-60 payment terms to match the fiscal year",
        ),
        next_steps=(
            "student data privacy agreement sent to district counsel",
            "demo for the faculty senate IT committee",
            "pilot with two departments in the spring term",
        ),
        objections={
            "student_privacy": (
                ("Parents will ask who can see student records; FERPA exposure worries the board.",
                 "We walked through role-based access, per-field audit logs and the signed FERPA addendum; no data is sold or shared."),
            ),
        },
    ),
    "medical_devices": IndustryText(
        systems=("MasterControl eQMS", "Veeva Vault QMS", "SAP ERP", "Greenlight Guru"),
        competitors=("ValiDoc", "a big-four validation consultancy", "their legacy paper process"),
        plays={
            "Loop Analytics": Play(
                situations=(
                    "{company} saw complaint volume grow {pct}% and needed trend analysis for post-market surveillance.",
                    "{company} could not show the FDA that its CAPAs were effective.",
                ),
                offers=(
                    "post-market surveillance analytics with complaint trending",
                    "CAPA effectiveness dashboards linked to {system}",
                ),
                wins=(
                    "Won; the first quarterly PMS report took {days} fewer days to compile.",
                    "Signed a {months}-month contract after the dashboards surfaced a supplier defect trend in the pilot.",
                ),
            ),
            "Loop Connect": Play(
                situations=(
                    "{company} was scaling from one to {n_sites} manufacturing sites under the same QMS.",
                    "{company}'s hospital customers asked for live device status in their own systems.",
                ),
                offers=(
                    "an integration between {system} and the ERP for device history records",
                    "an HL7/FHIR feed of device status to hospital systems",
                ),
                wins=(
                    "Closed after a {weeks}-week validated pilot at one site; the second site followed.",
                    "Won; the integration passed validation in {weeks} weeks with no critical deviations.",
                ),
            ),
            "Loop Compliance": Play(
                situations=(
                    "{company} was preparing a 510(k) submission and its electronic records were not Part 11 ready.",
                    "{company} received an FDA 483 observation on audit trails for device history records.",
                ),
                offers=(
                    "an FDA 21 CFR Part 11 validation package (IQ/OQ/PQ) with electronic signatures",
                    "audit trails and e-signatures on device history records in {system}",
                ),
                wins=(
                    "Won; the validation package cut their CSV effort by about {days} days and passed the next FDA inspection.",
                    "Signed a {months}-month contract after the 483 response cited our audit-trail remediation.",
                ),
            ),
            "Loop Field Service": Play(
                situations=(
                    "{company} had {n_devices} installed infusion pumps and could not trace field repairs to UDI.",
                    "{company}'s field engineers serviced {n_devices} imaging devices with paper service reports.",
                ),
                offers=(
                    "device traceability by UDI across field service for {n_devices} installed units",
                    "service history and preventive maintenance for {n_devices} installed imaging devices",
                ),
                wins=(
                    "Won on traceability: every field repair now links to the UDI within {minutes} minutes of closing.",
                    "Signed after a mock recall traced every affected unit in under a day.",
                ),
            ),
        },
        losses={
            "price": ("Lost on price; {competitor} bundled validation into their QMS licence.",),
            "competitor": ("Lost to {competitor}, which already held their QMS contract.",),
            "integration_effort": ("Lost because re-validating {system} after integration was judged too much effort this year.",),
            "security_review": ("Lost in security review over HIPAA obligations for service data that includes patient identifiers.",),
            "delivery_delay": ("Lost when our validation documents arrived {weeks} weeks late for their audit.",),
        },
        concerns=(
            "who executes IQ/OQ/PQ and signs the validation report",
            "how upgrades are validated without re-testing everything",
            "HIPAA exposure when service notes mention patients",
            "UDI capture on older devices without barcodes",
        ),
        next_steps=(
            "validation plan review with their QA lead",
            "supplier audit by their quality team",
            "BAA redline from their counsel",
        ),
        objections={
            "validation_effort": (
                ("Validating another system under Part 11 will take our QA team months.",
                 "We provide pre-executed IQ/OQ scripts and a traceability matrix, so their PQ took {weeks} weeks."),
            ),
        },
    ),
}

SEASONS = ("the spring shutdown", "the summer term", "Q3", "year-end", "the autumn audit")

# Proposal and meeting templates shared by all industries; industry colour comes from
# the offer, system and concern fields.
PROPOSAL_TEMPLATES = (
    "Proposal: {product} for {offer}. Phase 1 runs {weeks} weeks with {days} days of onboarding; "
    "annual fee ${amount:,} including premium support.",
    "Scope: {offer}. Fixed-price implementation of ${impl:,} over {weeks} weeks, then ${amount:,} per year "
    "for {product} on a {months}-month term.",
    "{product} pricing: ${amount:,} per year for {offer}. Go-live target {weeks} weeks after signature; "
    "{pct}% of the fee is at risk against the go-live date.",
)
MEETING_TEMPLATES = (
    "Call on {meeting_date} with {contact_name} ({contact_title}): main question was {concern}. "
    "Next step: {next_step}.",
    "{meeting_date} workshop, {attendees} attendees incl. {contact_name}. They pushed on {concern}; "
    "we agreed a {weeks}-week plan. Next step: {next_step}.",
    "Notes {meeting_date}: {contact_title} {contact_name} confirmed budget owner and timeline, worried about {concern}. "
    "Next step: {next_step}.",
)
# Deal name suffixes; short so names stay readable in lists.
DEAL_SCOPES = ("pilot", "rollout", "expansion", "renewal", "phase 2", "multi-site")

# (id, version, title, text) of the contract clause library.
CLAUSES = (
    ("CL-LIAB-01", "2.1", "Limitation of liability",
     "Except for breaches of confidentiality, data protection obligations or indemnities, each party's aggregate "
     "liability under this Agreement is limited to the fees paid or payable in the twelve (12) months before the "
     "event giving rise to the claim. Neither party is liable for indirect, consequential or punitive damages, "
     "lost profits or loss of data, even if advised of their possibility."),
    ("CL-DPA-01", "3.0", "Data processing agreement (GDPR)",
     "Where Supplier processes personal data on Customer's behalf, it acts as processor under Article 28 GDPR. "
     "Supplier processes personal data only on documented instructions, ensures staff confidentiality, applies the "
     "technical and organisational measures in Annex II, engages sub-processors only with prior notice and a right "
     "to object, transfers data outside the EEA only under Standard Contractual Clauses, and notifies Customer of a "
     "personal data breach without undue delay and in any case within 48 hours."),
    ("CL-HIPAA-01", "1.4", "HIPAA business associate agreement",
     "To the extent Supplier creates, receives, maintains or transmits protected health information for Customer, "
     "Supplier acts as a business associate under 45 C.F.R. 164.504(e). Supplier uses PHI only to provide the "
     "Services, implements administrative, physical and technical safeguards under the Security Rule, reports any "
     "breach of unsecured PHI within ten (10) business days, and flows these obligations down to subcontractors."),
    ("CL-FERPA-01", "1.2", "FERPA student data protection",
     "Supplier is designated a school official with a legitimate educational interest under 34 C.F.R. 99.31. "
     "Student education records remain the property of the Institution, are used solely to provide the Services, "
     "are never sold or used for targeted advertising, and are returned or deleted within sixty (60) days of "
     "termination. Supplier will support parent and eligible-student access requests within ten (10) days."),
    ("CL-FDA-01", "2.0", "FDA 21 CFR Part 11 validation support",
     "Supplier maintains the Services under a documented quality system and provides a validation package "
     "consisting of a requirements specification, risk assessment, executed IQ/OQ protocols and a traceability "
     "matrix for each major release. The Services provide secure, computer-generated, time-stamped audit trails "
     "and electronic signatures linked to their records. Customer remains responsible for PQ and for its "
     "validation decision; Supplier gives ninety (90) days' notice of releases that affect validated functions."),
    ("CL-SLA-01", "1.3", "Service level agreement 99.9%",
     "Supplier will make the production Services available 99.9% of each calendar month, excluding scheduled "
     "maintenance announced five (5) days ahead. If availability falls below 99.9%, Customer receives a service "
     "credit of 5% of the monthly fee, rising to 10% below 99.5% and 25% below 99.0%. Service credits are "
     "Customer's sole remedy for unavailability unless availability falls below 99.0% in three consecutive "
     "months, in which case Customer may terminate without penalty."),
    ("CL-ONPREM-01", "1.1", "On-premises deployment support",
     "Where Customer elects on-premises deployment, Supplier provides installation packages, hardening guides "
     "and two (2) supported releases per year. Customer provides the infrastructure meeting the published "
     "requirements and remote access for support. Service levels apply to Supplier's response times only; "
     "availability of Customer-hosted infrastructure is Customer's responsibility."),
    ("CL-PAY-01", "2.0", "Payment terms net 30",
     "Fees are invoiced annually in advance and are due thirty (30) days from the invoice date. Late amounts "
     "bear interest at 1% per month or the maximum rate permitted by law, if lower. Supplier may suspend the "
     "Services on fifteen (15) days' written notice if undisputed amounts remain unpaid more than thirty (30) "
     "days after their due date."),
    ("CL-PAY-02", "1.0", "Payment terms net 60 (public sector and education)",
     "For public-sector and educational customers, fees are invoiced annually in advance aligned to Customer's "
     "fiscal year and are due sixty (60) days from the invoice date. If appropriated funds for a following "
     "fiscal year are not made available, Customer may terminate at the end of the current fiscal year on "
     "thirty (30) days' written notice without penalty."),
    ("CL-ESCROW-01", "1.0", "Source code escrow",
     "Supplier deposits the source code of the on-premises components, with build instructions, with an "
     "independent escrow agent and updates the deposit with each major release. The deposit is released to "
     "Customer if Supplier becomes insolvent, ceases business, or discontinues support for the licensed "
     "version without a successor offering, solely for Customer's internal maintenance of the Services."),
    ("CL-EXPORT-01", "1.2", "Export control",
     "Each party complies with applicable export control and sanctions laws, including the U.S. Export "
     "Administration Regulations and EU Regulation 2021/821. Customer will not access the Services from, or "
     "make them available to persons in, embargoed countries or to restricted parties. Supplier may suspend "
     "access to the extent required to comply with these laws."),
    ("CL-LAW-EU-01", "1.1", "Governing law and jurisdiction (EU)",
     "This Agreement is governed by the laws of Ireland, excluding its conflict-of-law rules and the UN "
     "Convention on Contracts for the International Sale of Goods. The courts of Dublin have exclusive "
     "jurisdiction, without prejudice to either party's right to seek interim relief in any competent court."),
    ("CL-LAW-US-01", "1.1", "Governing law and jurisdiction (US)",
     "This Agreement is governed by the laws of the State of Delaware, excluding its conflict-of-law rules. The "
     "state and federal courts located in Wilmington, Delaware have exclusive jurisdiction, and each party "
     "waives any right to a jury trial to the extent permitted by law."),
)


class ConsultantSpec(NamedTuple):
    id: str
    name: str
    skills: tuple[str, ...]
    industries: tuple[str, ...]
    timezone: str
    work_hours: tuple[int, int]


# One consultant per continent so scheduling has to handle real time-zone gaps.
CONSULTANTS = (
    ConsultantSpec("cons-keller", "Maja Keller", ("mes-integration", "predictive-maintenance", "data-migration"),
                   ("manufacturing", "medical_devices"), "Europe/Berlin", (8, 16)),
    ConsultantSpec("cons-okafor", "Daniel Okafor", ("sso", "soc2", "api-integration"),
                   ("saas", "education"), "America/Chicago", (9, 17)),
    ConsultantSpec("cons-raman", "Priya Raman", ("lms-integration", "ferpa", "data-migration", "sso"),
                   ("education", "saas"), "Asia/Singapore", (9, 18)),
    ConsultantSpec("cons-ferreira", "Lucas Ferreira", ("fda-validation", "21-cfr-part-11", "mes-integration"),
                   ("medical_devices", "manufacturing"), "America/Sao_Paulo", (8, 17)),
    ConsultantSpec("cons-walsh", "Grace Walsh", ("api-integration", "data-migration", "predictive-maintenance"),
                   ("manufacturing", "saas", "education"), "Australia/Sydney", (8, 16)),
)
# Recurring busy blocks: (summary, RRULE weekdays, duration in minutes).
RECURRING_BLOCKS = (
    ("Team stand-up", ("MO", "TU", "WE", "TH", "FR"), 30),
    ("Customer onboarding block", ("TU", "TH"), 120),
    ("Implementation review", ("MO",), 60),
    ("Partner enablement", ("WE",), 90),
    ("Focus time: solution design", ("FR",), 180),
    ("Support escalations rota", ("TH",), 60),
)
ONE_OFF_BLOCKS = (
    "Customer workshop on site", "Go-live hypercare", "Conference talk", "Training: new release",
    "Architecture review", "Quarterly business review",
)

# New leads arriving as events: companies that are not in the CRM yet, one per
# scenario the agent must handle (warm buyer, vague tech lead, price-sensitive buyer).
NEW_LEADS = (
    {
        "company": "Falkenrath Antriebstechnik GmbH", "industry": "manufacturing", "employees": 850,
        "region": "EMEA", "country": "Germany", "timezone": "Europe/Berlin",
        "contact_name": "Stefan Wagner", "email": "s.wagner@falkenrath-antriebe.de", "title": "Dir. of Ops",
        "phone": "+49 711 555 0142", "budget_usd": 120_000,
        "message": "We run three plants on Siemens Opcenter and want predictive maintenance for our gearbox "
                   "lines. Can we see a demo and get pricing before our Q1 rollout?",
        "web_visits": 14, "email_opens": 6, "demo_requested": True,
    },
    {
        "company": "Quillstack Inc.", "industry": "saas", "employees": 120,
        "region": "NA", "country": "United States", "timezone": "America/Los_Angeles",
        "contact_name": "Jordan Lee", "email": "jordan@quillstack.io", "title": "VP Eng.",
        "phone": None, "budget_usd": None,
        "message": "enterprise customers keep asking for SSO + SOC 2. is there integration documentation for "
                   "Okta somewhere?",
        "web_visits": 3, "email_opens": 1, "demo_requested": False,
    },
    {
        "company": "Sakura MedTech K.K.", "industry": "medical_devices", "employees": 2300,
        "region": "APAC", "country": "Japan", "timezone": "Asia/Tokyo",
        "contact_name": "Yuki Mori", "email": "yuki.mori@sakura-medtech.co.jp", "title": "head of procurement",
        "phone": "+81 3 5555 0198", "budget_usd": 45_000,
        "message": "We need FDA 21 CFR Part 11 validation support for two sites. Please send pricing; "
                   "rollout would start in 2027 and the budget is fixed.",
        "web_visits": 7, "email_opens": 9, "demo_requested": False,
    },
)
