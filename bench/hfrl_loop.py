"""The learning loop, measured honestly: six simulated reps, account-disjoint held-out events, several seeds, and the
baselines a reviewer asks for, all in one run.

    python bench/hfrl_loop.py                       # dev accounts (tune here), 3 seeds, every rep of the suite
    python bench/hfrl_loop.py --part test --record  # the held-out test accounts, once per recorded run

Per rep and seed, on the held-out part's events (their accounts never appear in training):
- no learning: the base model's drafts;
- memory: the rep's training decisions retrieved into the prompt as examples (memory.enabled);
- LoRA: one round on the rep's training decisions, promoted only through the evaluation gate (no force); when the
  gate refuses, what is served stays the base model, and that is what is scored;
- LoRA + memory.
Training decisions are the rep's verdicts on the base model's drafts of the seed's sample of training events (the
base drafts do not depend on the rep or the seed, so they are drafted once). Then a second experiment, rounds over
time: one rep decides three successive batches, changes one preference after round 1, and each round is trained
warm from the last promoted adapter with replay, through the gate and its forgetting check.

Everything is real: the graph, SmolLM2-135M, MiniLM, Qdrant local mode, SQLite, LoRA training, the gate.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import random
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from common import ROOT, demo_config, record

from agents.apply import feedback_record  # noqa: E402
from agents.services import Services  # noqa: E402
from agents.state import RunState  # noqa: E402
from configs import load_settings  # noqa: E402
from configs.loader import load_yaml_model  # noqa: E402
from demo.eval_split import split_events  # noqa: E402
from feedback.export import ExportError  # noqa: E402
from feedback.reps import Rep, ReviewContext, load_reps, parse  # noqa: E402
from finetune.promotion import PromotionRefused, promote_through_gate  # noqa: E402
from finetune.records import FinetuneSettings  # noqa: E402
from finetune.rounds import feedback_round  # noqa: E402
from orchestrator import Orchestrator  # noqa: E402
from tools.cases import index_cases  # noqa: E402
from tools.crm.records import Account, CRMEvent  # noqa: E402
from tools.files import write_atomically  # noqa: E402
from tools.records_io import load_records  # noqa: E402

CLOCK = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
CONDITIONS = ("no learning", "memory", "LoRA (gated)", "LoRA + memory")
BENCH_OWNER = "rep-bench"  # every account's owner in the bench CRM: the simulated rep deciding is that owner


@dataclass
class Score:
    adopted: bool
    distance: float
    supported: float
    words: int


@dataclass
class Cell:
    """One rep, one seed: the scores of each condition, and what the gate said."""

    scores: dict[str, list[Score]] = field(default_factory=lambda: defaultdict(list))
    gate: str = ""
    train_decisions: str = ""


def main() -> None:
    args = _args()
    if args.record and args.part != "test":
        raise SystemExit("--record scores the test accounts: add --part test (tune on dev, record on test once)")
    workdir = Path(tempfile.mkdtemp(prefix="salesloop-hfrl-"))
    started = time.monotonic()
    try:
        bench = Bench(args, workdir)
        if not args.skip_suite:  # recorded before the rounds start: a failure there loses nothing of this
            table = _suite_table(bench.suite(), args)
            _emit("Learning loop: six reps, held-out accounts", table, _notes(args, started), args.record)
        if not args.skip_rounds:
            table = _rounds_table(bench.rounds())
            _emit("Learning loop: rounds over time, a preference changed", table, _rounds_notes(args, started), args.record)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _emit(title: str, table: str, notes: str, to_record: bool) -> None:
    print(f"\n{title}\n\n{table}\n\n{notes}", flush=True)
    if to_record:
        record(title, table, notes)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args, self.workdir = args, workdir
        self.reps = [r for r in load_reps() if not args.reps or r.rep_id in args.reps]
        # The gate's verdict reads log-likelihoods, preference accuracy and forgetting; its generation-similarity
        # figure is shown but decides nothing, so the bench skips its drafts (they cost minutes per round on 2 cores).
        self.ft = load_yaml_model(args.finetune_config, FinetuneSettings).model_copy(update={"eval_generations": 0})
        self.template = self._template()
        self.base = self._services(workdir / "base")
        self.train_pool = split_events("train", self.template / "crm")
        self.heldout = split_events(args.part, self.template / "crm", limit=args.test_events)
        self.states: dict[str, RunState] = {}

    # --- data dirs -----------------------------------------------------------------------------------------------

    def _template(self) -> Path:
        """A data dir with the demo CRM (every account owned by the bench rep) and the cases indexed, to copy from."""
        root = self.workdir / "template"
        config = demo_config(root, {"max_new_tokens": self.args.max_new_tokens, "backend": self.args.backend,
                                    **({"threads": self.args.threads} if self.args.threads else {}),
                                    **({"llamacpp_weights": "f16", "context_tokens": 4096} if self.args.backend == "llamacpp" else {})})
        config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "rep_id": BENCH_OWNER}))
        path = root / "crm" / "accounts.json"
        accounts = [a.model_copy(update={"owner_rep_id": BENCH_OWNER}) for a in load_records(path, Account, "")]
        write_atomically(path, ("[" + ",".join(a.model_dump_json() for a in accounts) + "]").encode())
        with Services(load_settings(config, env={}), clock=lambda: CLOCK) as services:
            index_cases(services.crm, services.embedder, services.vectors)
        return root

    def _services(self, data_dir: Path) -> Services:
        """A data dir of its own (feedback, adapters, runs), copied from the closed template."""
        shutil.copytree(self.template, data_dir)
        if hasattr(self, "base"):  # the base model materialized once, under the first data dir
            (data_dir / "models").symlink_to(self.base.settings.data_dir / "models", target_is_directory=True)
        settings = load_settings(data_dir / "config.yaml", env={"SALESLOOP_DATA_DIR": str(data_dir)})
        services = Services(settings, clock=lambda: CLOCK)
        if hasattr(self, "base"):  # one model of each kind in the process, shared by every data dir
            services.llm, services.embedder = self.base.llm, self.base.embedder
        return services

    def _gate_services(self, services: Services) -> Services:
        """The gate scores log-likelihoods, which llama.cpp does not: the same data dir with the transformers model."""
        if self.args.backend == "transformers":
            return services
        if not hasattr(self, "_scorer"):
            from serving.transformers_backend import TransformersLLM

            # threads None: --threads is for llama.cpp, and TransformersLLM would set torch's (training's) thread count
            settings = self.base.settings.llm.model_copy(update={"backend": "transformers", "threads": None})
            self._scorer = TransformersLLM.from_settings(settings, self.base.settings.data_dir)
        gate = copy.copy(services)
        gate.llm = self._scorer
        return gate

    # --- drafting and scoring ------------------------------------------------------------------------------------

    def draft(self, services: Services, events: list[CRMEvent], tag: str, memory: bool) -> list[RunState]:
        services.settings = services.settings.model_copy(
            update={"memory": services.settings.memory.model_copy(update={"enabled": memory})})
        states, started = [], time.monotonic()
        with Orchestrator(services) as orch:
            for event in events:
                info, _ = orch.start(event.model_copy(update={"id": f"{event.id}-{tag}"}))
                states.append(orch.state(info.run_id))
        print(f"  {len(events)} drafts ({tag}) in {time.monotonic() - started:.0f} s", flush=True)
        return states

    def base_state(self, event: CRMEvent) -> RunState:
        if event.id not in self.states:
            (self.states[event.id],) = self.draft(self.base, [event], "base", memory=False)
        return self.states[event.id]

    def score(self, rep: Rep, state: RunState) -> Score:
        context = ReviewContext.from_run_state(state, self.base.crm)
        draft = state.draft.text
        adopted = rep.review(draft, context).type == "accept"
        final = draft if adopted else rep.fix(draft, context)
        return Score(adopted=adopted, distance=1 - difflib.SequenceMatcher(a=draft, b=final).ratio(),
                     supported=state.draft.supported_share or 0.0, words=len(draft.split()))

    def decide_offline(self, services: Services, rep: Rep, states: list[RunState], start: int) -> dict[str, int]:
        """The rep's decisions on these runs, stored as the graph stores them (agents.apply.feedback_record)."""
        counts: dict[str, int] = defaultdict(int)
        for i, state in enumerate(states):
            response = rep.review(state.draft.text, ReviewContext.from_run_state(state, self.base.crm))
            # As the accounts' owner: the one whose past decisions memory recalls for these leads.
            decision = response.to_decision(CLOCK + timedelta(minutes=start + i)).model_copy(update={"rep_id": BENCH_OWNER})
            services.feedback.append(feedback_record(state.model_copy(update={"decision": decision}), services))
            counts[decision.decision] += 1
        return counts

    def train_and_gate(self, services: Services) -> tuple[bool, str]:
        started = time.monotonic()
        try:
            result = feedback_round(services, self.ft)
        except ExportError as exc:  # e.g. a rep that adopted everything leaves DPO no pairs: nothing is trained
            print(f"  round failed: {exc}", flush=True)
            return False, f"no round: {str(exc).split(';')[0]}"
        version, trained = result.adapter.version, time.monotonic() - started
        try:
            report = promote_through_gate(services, version, self.ft, gate_services=self._gate_services(services))
        except PromotionRefused as refused:
            verdict, passed = f"{version} refused: {'; '.join(refused.report.reasons)}", False
        else:
            drops = ", ".join(f"{v} {d:+.3f}" for v, d in report.forgetting.items())
            verdict, passed = f"{version} promoted" + (f" (forgetting: {drops})" if drops else ""), True
        print(f"  round: {result.training.steps} steps in {trained:.0f} s, gate {time.monotonic() - started - trained:.0f} s: "
              f"{verdict}", flush=True)
        return passed, verdict

    # --- experiment 1: the suite ---------------------------------------------------------------------------------

    def suite(self) -> dict[str, list[Cell]]:
        base_heldout = [self.base_state(e) for e in self.heldout]
        cells: dict[str, list[Cell]] = defaultdict(list)
        for index, seed in enumerate(self.args.seeds):
            sample = random.Random(seed).sample(self.train_pool, self.args.train_events)
            train_states = [self.base_state(e) for e in sample]
            lora = index < self.args.lora_seeds
            for rep in self.reps:
                cells[rep.rep_id].append(self._cell(rep, seed, train_states, base_heldout, lora))
                print(f"seed {seed} {rep.rep_id}: {_summary(cells[rep.rep_id][-1])}", flush=True)
        return cells

    def _cell(self, rep: Rep, seed: int, train_states: list[RunState], base_heldout: list[RunState], lora: bool) -> Cell:
        cell = Cell()
        services = self._services(self.workdir / f"{rep.rep_id}-seed{seed}")
        self.ft = self.ft.model_copy(update={"seed": seed})  # the round's shuffle, eval rows and LoRA init
        try:
            counts = self.decide_offline(services, rep, train_states, 0)
            cell.train_decisions = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            cell.scores["no learning"] = [self.score(rep, s) for s in base_heldout]
            cell.scores["memory"] = [self.score(rep, s) for s in self.draft(services, self.heldout, "mem", memory=True)]
            if not lora:
                return cell
            promoted, cell.gate = self.train_and_gate(services)
            for name, memory in (("LoRA (gated)", False), ("LoRA + memory", True)):
                if promoted or memory:
                    states = self.draft(services, self.heldout, f"lora{int(memory)}", memory=memory)
                    cell.scores[name] = [self.score(rep, s) for s in states]
                else:  # refused: the base model still serves
                    cell.scores[name] = cell.scores["no learning"]
        finally:
            services.close()
        return cell

    # --- experiment 2: rounds over time with a changed preference ------------------------------------------------

    def rounds(self) -> list[dict[str, str]]:
        rep = next(r for r in load_reps() if r.rep_id == self.args.rounds_rep)
        changed = _changed(rep, self.args.rounds_limit)
        seed = self.args.seeds[0]
        self.ft = self.ft.model_copy(update={"seed": seed})
        batches = _batches(random.Random(seed).sample(self.train_pool, 3 * self.args.round_events), 3)
        services = self._services(self.workdir / "rounds")
        rows = []
        try:
            for number, batch in enumerate(batches, start=1):
                deciding = rep if number == 1 else changed
                states = self.draft(services, batch, f"round{number}", memory=False)
                counts = self.decide_offline(services, deciding, states, 1000 * number)
                promoted, gate = self.train_and_gate(services)
                heldout = self.draft(services, self.heldout, f"after{number}", memory=False)
                rows.append(_round_row(number, deciding, rep, changed, heldout, counts, gate, self))
                print(f"round {number}: {rows[-1]}", flush=True)
        finally:
            services.close()
        return rows


def _changed(rep: Rep, limit: int) -> Rep:
    """The same rep after round 1 with one preference changed: a tighter word limit."""
    profile = rep.profile
    rules = [r.model_copy(update={"limit": limit}) if r.kind == "max_words" else r for r in profile.rules]
    if rules == profile.rules:
        raise SystemExit(f"{rep.rep_id} has no max_words rule to change; pick a rep with a word limit (--rounds-rep)")
    return Rep(profile.model_copy(update={"rules": rules}), rep.topics)


def _batches(events: list[CRMEvent], n: int) -> list[list[CRMEvent]]:
    size = len(events) // n
    return [events[i * size : (i + 1) * size] for i in range(n)]


def _round_row(number: int, deciding: Rep, original: Rep, changed: Rep, states: list[RunState], counts: dict[str, int],
               gate: str, bench: Bench) -> dict[str, str]:
    """Adoption by the rep as it is now, and how often each preference holds on the held-out drafts."""
    adopted = [bench.score(changed if number > 1 else original, s).adopted for s in states]
    held = {}
    for rule in changed.profile.rules:
        name = rule.kind + (f" ≤ {rule.limit}" if rule.kind == "max_words" else "")
        held[name] = _rule_share(rule, changed, states, bench)
    old_limit = next(r for r in original.profile.rules if r.kind == "max_words")
    held[f"max_words ≤ {old_limit.limit} (round 1's limit)"] = _rule_share(old_limit, original, states, bench)
    supported = statistics.mean(s.draft.supported_share or 0.0 for s in states)
    return {"round": str(number), "rep's word limit": str(next(r.limit for r in deciding.profile.rules if r.kind == "max_words")),
            "decisions": ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), "gate": gate,
            "held-out adoption (current prefs)": f"{statistics.mean(adopted):.0%}",
            **{f"holds: {k}": f"{v:.0%}" for k, v in held.items()}, "supported share": f"{supported:.0%}"}


def _rule_share(rule, rep: Rep, states: list[RunState], bench: Bench) -> float:
    views = [(parse(s.draft.text), rep.view(ReviewContext.from_run_state(s, bench.base.crm))) for s in states]
    return statistics.mean(rule.problem(doc, view) is None for doc, view in views)


# --- tables ------------------------------------------------------------------------------------------------------


def _mean_sd(values: list[float], percent: bool = True) -> str:
    if not values:
        return "not run"
    if len(values) == 1:
        return f"{values[0] * (100 if percent else 1):.0f} (n=1)"
    scale = 100 if percent else 1
    mean = statistics.mean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.0f} ± {sd:.0f}" if percent else f"{mean:.2f} ± {sd:.2f}"


def _adoption(cell: Cell, condition: str) -> float | None:
    """None where the condition was not run for this seed (--lora-seeds)."""
    scores = cell.scores.get(condition)
    return statistics.mean(s.adopted for s in scores) if scores else None


def _summary(cell: Cell) -> str:
    return "; ".join(f"{c} {a:.0%}" for c in CONDITIONS if (a := _adoption(cell, c)) is not None) + f"; gate: {cell.gate}"


def _pairs(a: list[float | None], b: list[float | None]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in zip(a, b) if x is not None and y is not None]


def _present(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _suite_table(cells: dict[str, list[Cell]], args: argparse.Namespace) -> str:
    header = ["rep", *(f"adoption %: {c}" for c in CONDITIONS), "LoRA+mem − none (pp)", "LoRA > memory",
              "supported % none → LoRA", "gate passed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    overall: dict[str, list[float]] = defaultdict(list)
    for rep_id, seeds in cells.items():
        per = {c: [_adoption(cell, c) for cell in seeds] for c in CONDITIONS}
        gains = [b - a for a, b in _pairs(per["no learning"], per["LoRA + memory"])]
        wins = _pairs(per["LoRA (gated)"], per["memory"])
        trained = [cell for cell in seeds if cell.gate]
        none_sup = statistics.mean(s.supported for cell in trained for s in cell.scores["no learning"]) if trained else 0
        lora_sup = statistics.mean(s.supported for cell in trained for s in cell.scores["LoRA (gated)"]) if trained else 0
        passed = sum("promoted" in cell.gate for cell in trained)
        lines.append(f"| {rep_id} | " + " | ".join(_mean_sd(_present(per[c])) for c in CONDITIONS)
                     + f" | {_mean_sd(gains)} | {sum(lo > me for lo, me in wins)}/{len(wins)} seeds | "
                     f"{none_sup:.0%} → {lora_sup:.0%} | {passed}/{len(trained)} |")
        for c in CONDITIONS:
            overall[c].append(per[c])
    # Overall: the mean over reps within each seed, then mean ± sd over the seeds that ran the condition.
    by_seed = {c: [statistics.mean(rep[i] for rep in overall[c]) if all(rep[i] is not None for rep in overall[c]) else None
                   for i in range(len(args.seeds))] for c in CONDITIONS}
    gains = [b - a for a, b in _pairs(by_seed["no learning"], by_seed["LoRA + memory"])]
    lines.append("| **all reps** | " + " | ".join(_mean_sd(_present(by_seed[c])) for c in CONDITIONS)
                 + f" | {_mean_sd(gains)} | | | |")
    return "\n".join(lines)


def _rounds_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(rounds over time not run)"
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(row.get(k, "") for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def _notes(args: argparse.Namespace, started: float) -> str:
    return (f"Held-out part `{args.part}` of bench/eval/split.yaml (frozen in commit 2907817; its accounts never appear in "
            f"training), its first {args.test_events} events; {args.train_events} training events per seed, sampled "
            f"from the train accounts with the seed; seeds {args.seeds}; backend {args.backend}, max_new_tokens "
            f"{args.max_new_tokens}; fine-tuning config {args.finetune_config.relative_to(ROOT)} as committed, except "
            "the gate drafts no generation-similarity samples (eval_generations 0: that figure decides nothing). "
            f"LoRA conditions ran for the first {args.lora_seeds} seed(s), for CPU time. "
            "Adoption cells are mean ± sd over seeds, in percent. 'LoRA (gated)' is what serves after "
            "`promote_through_gate` (no force): where the gate refused, the base model still serves and is what was "
            f"scored. {_elapsed(started)}")


def _rounds_notes(args: argparse.Namespace, started: float) -> str:
    return (f"{args.rounds_rep} decides {args.round_events} training events per round (seed {args.seeds[0]}), drafted by "
            "what serves at the time; its word limit is cut to "
            f"{args.rounds_limit} after round 1, its other preferences stay. Each round trains warm from the promoted "
            "adapter with the config's replay share and goes through the gate with its forgetting check. Held-out: "
            f"the first {args.test_events} events of part `{args.part}`, drafted after each round. {_elapsed(started)}")


def _elapsed(started: float) -> str:
    return f"Wall time so far: {(time.monotonic() - started) / 60:.0f} min."


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["dev", "test"], default="dev", help="the held-out part scored")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lora-seeds", type=int, default=3, help="run the LoRA conditions for the first N seeds only")
    parser.add_argument("--reps", nargs="*", help="rep ids of configs/reps/suite.yaml; default: all")
    parser.add_argument("--train-events", type=int, default=16, help="training events per seed (of the train part's 48)")
    parser.add_argument("--test-events", type=int, default=12, help="held-out events scored (the part's first N)")
    parser.add_argument("--backend", choices=["llamacpp", "transformers"], default="llamacpp", help="what drafts")
    parser.add_argument("--max-new-tokens", type=int, default=120)
    parser.add_argument("--threads", type=int, help="the model's threads (default: every core)")
    parser.add_argument("--finetune-config", type=Path, default=ROOT / "configs" / "finetune" / "cpu.yaml")
    parser.add_argument("--rounds-rep", default="rep-sim-style")
    parser.add_argument("--rounds-limit", type=int, default=30, help="the rounds rep's word limit after round 1")
    parser.add_argument("--round-events", type=int, default=12)
    parser.add_argument("--skip-rounds", action="store_true")
    parser.add_argument("--skip-suite", action="store_true", help="only the rounds over time")
    parser.add_argument("--record", action="store_true", help="append the tables to docs/benchmarks.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
