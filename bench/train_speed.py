"""Seconds per step of our LoRA loop against a plain peft loop and trl's DPOTrainer, on the same rows.

    python bench/train_speed.py [--base-dir DIR] [--rows 16] [--batch-size 4] [--epochs 2] [--repeats 3] [--record]

Every contender trains the same LoRA (LoraSettings' defaults) on the same exported-format rows, in the
same batches and order, with the same step count. Contenders run interleaved, `--repeats` times, and
each repeat reverses the previous one's order, so neither side always runs first (warm caches) or
last; the table gives each contender's mean and standard deviation over the repeats, and the ratio to
the plain loop of the same method with its spread over repeats:

- ours: `train_adapter` (SFT, then DPO) — dynamic padding, reference pass with the adapter disabled;
- plain: `model(**batch).loss` + backward + AdamW step on our batches (for DPO: chosen and rejected
  in one batch, no reference pass) — the floor any loop pays for the policy's forward and backward;
- trl: DPOTrainer configured to train what ours trains: precomputed reference log-probs, our
  max_length, no pad-to-multiple, our LoRA dropout kept (trl's padding_free needs FlashAttention, so
  not on a CPU). `--trl-defaults` adds DPOTrainer with its defaults (which switch dropout off, LoRA's
  included); on two CPU cores it did not finish 8 steps in 9 minutes, so it is not in the default set.

LoRA dropout is expensive on a CPU (one mask per adapted projection): compare like with like, e.g.
again with --lora-dropout 0.

tokens/s counts the non-pad tokens of the training rows (policy side only, the same count for every
contender), so it compares speed, not how many extra passes a method makes.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for a hub

import torch

from finetune.records import FinetuneSettings, LoraSettings, StageSettings
from finetune.train import (
    _collate,
    _encode_rows,
    _example_order,
    _lora_config,
    _pad_id,
    train_adapter,
)

SYSTEM = (
    "You are a sales assistant for Northwind Sensors, which sells predictive-maintenance sensors and software "
    "to manufacturing plants. Write short, specific replies a rep can send as is. Cite only facts from the CRM notes."
)
ACCOUNTS = [
    ("Hartmann Getriebe GmbH", "gearbox manufacturing", "three unplanned stops of line 4 last quarter", "the pilot price"),
    ("Lindqvist Paper AB", "pulp and paper", "bearing failures on the dryer section", "SAP PM integration"),
    ("Oakridge Foods", "food processing", "compressor downtime during audits", "a start date next month"),
    ("Castillo Cement", "cement", "kiln fan vibration alarms", "installation effort"),
    ("Baltic Steelworks", "steel", "rolling mill motor overheating", "the uptime guarantee"),
    ("Nordic Bottling", "beverages", "filler line gearbox wear", "a free trial"),
    ("Keller Plastics", "injection moulding", "hydraulic pump leaks", "data ownership"),
    ("Rossi Ceramics", "ceramics", "conveyor belt misalignment", "the contract length"),
]
FACTS = {
    "the pilot price": "The pilot costs 12,000 EUR for eight weeks, sensors and onboarding included.",
    "SAP PM integration": "We ship a certified SAP PM connector that opens work orders from alerts.",
    "a start date next month": "We can install on the first Monday of next month if the PO arrives this week.",
    "installation effort": "Two field engineers fit the sensors in one day without stopping the line.",
    "the uptime guarantee": "The SLA guarantees 99.5 percent platform uptime with service credits.",
    "a free trial": "We offer a two-week proof of value at no cost on one asset.",
    "data ownership": "All sensor data stays yours; we process it in the EU and delete it on request.",
    "the contract length": "After the pilot, contracts run twelve months and renew monthly after that.",
}
PUSHY = "Great question! Our platform is the best on the market. Let's schedule a call to discuss pricing and sign this quarter."


def sales_rows(count: int) -> dict[str, list[dict]]:
    """SFT and DPO rows in the exporter's format: a CRM-grounded request, a good reply, a generic one."""
    sft, dpo = [], []
    for i in range(count):
        account, industry, problem, topic = ACCOUNTS[i % len(ACCOUNTS)]
        contact = ["Anna", "Jonas", "Maria", "Pierre"][i % 4]
        notes = (
            f"Account: {account} ({industry}). Contact: {contact}, head of maintenance. Last meeting: discussed {problem}; "
            f"{contact} asked about {topic}. Stage: evaluation. Next step: send a follow-up email."
        )
        prompt = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"CRM notes:\n{notes}\n\nDraft the follow-up email to {contact}."},
        ]
        good = f"Hi {contact},\n\nthanks for walking us through {problem}. On {topic}: {FACTS[topic]} Shall I send a pilot plan for your team?\n\nBest regards"
        sft.append({"messages": [*prompt, {"role": "assistant", "content": good}]})
        dpo.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": good}], "rejected": [{"role": "assistant", "content": PUSHY}]})
    return {"sft": sft, "dpo": dpo}


@dataclass
class Timing:
    name: str
    method: str
    dropout: float
    steps: int = 0
    step_seconds: float = 0.0  # forward, backward and optimizer step, summed over the steps
    setup_seconds: float = 0.0  # everything else: loading, tokenizing, trl's precompute, saving

    @property
    def per_step(self) -> float:
        return self.step_seconds / self.steps

    def add_step(self, seconds: float) -> None:
        self.steps += 1
        self.step_seconds += seconds


@dataclass(frozen=True)
class Setup:
    base_dir: Path
    rows: dict[str, list[dict]]
    settings: FinetuneSettings  # one stage per method, same batch size and epochs
    tokenizer: object

    def stage(self, method: str) -> StageSettings:
        return next(s for s in self.settings.stages if s.method == method)

    def only(self, method: str) -> FinetuneSettings:
        # Each contender trains one method as its only stage; no checkpoint but the final one.
        return self.settings.model_copy(update={"stages": [self.stage(method)], "checkpoint_every": 10**6})

    def batches(self, method: str) -> list[list]:
        """The batches train_adapter makes for this method as its only stage: same encoding, same order."""
        stage = self.stage(method)
        examples = _encode_rows(method, self.rows[method], self.tokenizer, self.settings.max_length)
        order = _example_order(len(examples), stage.epochs, self.settings.seed)
        return [[examples[i] for i in order[j : j + stage.batch_size]] for j in range(0, len(order), stage.batch_size)]

    def policy_tokens(self, method: str) -> float:
        """Mean non-pad tokens per step in the policy's pass (chosen and rejected for DPO)."""
        per_step = [sum(_policy_length(e) for e in batch) for batch in self.batches(method)]
        return statistics.mean(per_step)


def _policy_length(example: object) -> int:
    if hasattr(example, "chosen"):
        return len(example.chosen.input_ids) + len(example.rejected.input_ids)
    return len(example.input_ids)


def _load_model(setup: Setup):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(setup.settings.seed)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(setup.base_dir, dtype=torch.float32), _lora_config(setup.settings.lora))


def time_ours(setup: Setup, method: str, work: Path) -> Timing:
    started = time.perf_counter()
    result = train_adapter(setup.base_dir, setup.rows, setup.only(method), work / f"ours-{method}", work_dir=work / f"ours-{method}-work")
    # train_adapter times the same span as the others: forward, backward, optimizer step.
    return Timing(f"ours {method}", method, setup.settings.lora.dropout, result.steps, result.seconds, time.perf_counter() - started - result.seconds)


def time_plain(setup: Setup, method: str) -> Timing:
    timing = Timing(f"plain {method}", method, setup.settings.lora.dropout)
    started = time.perf_counter()
    model = _load_model(setup)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=setup.stage(method).learning_rate, weight_decay=0.0)
    pad_id = _pad_id(setup.tokenizer)
    timing.setup_seconds = time.perf_counter() - started
    for batch in setup.batches(method):
        sequences = [p.chosen for p in batch] + [p.rejected for p in batch] if method == "dpo" else batch
        inputs = _collate(sequences, pad_id, model.device)
        step_start = time.perf_counter()
        model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, labels=inputs.labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timing.add_step(time.perf_counter() - step_start)
    return timing


def time_trl_dpo(setup: Setup, configured: bool, work: Path) -> Timing:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    dropout = setup.settings.lora.dropout if configured else 0.0  # trl's default disable_dropout=True
    timing = Timing("trl DPOTrainer " + ("configured" if configured else "defaults"), "dpo", dropout)
    stage = setup.stage("dpo")

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            timing.add_step(time.perf_counter() - self.started)

    # Only what the comparison needs fixed; everything else stays at trl's default unless `configured`.
    options = {
        "output_dir": str(work / f"trl-{configured}"),
        "per_device_train_batch_size": stage.batch_size,
        "max_steps": len(setup.batches("dpo")),
        "learning_rate": stage.learning_rate,
        "beta": stage.beta,
        "seed": setup.settings.seed,
        "use_cpu": setup.settings.device == "cpu",
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 10**6,
        "disable_tqdm": True,
    }
    if configured:
        options |= {
            "precompute_ref_log_probs": True,
            "precompute_ref_batch_size": 2 * stage.batch_size,
            "max_length": setup.settings.max_length,
            "pad_to_multiple_of": None,
            "disable_dropout": False,
        }
    started = time.perf_counter()
    torch.manual_seed(setup.settings.seed)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(setup.base_dir, dtype=torch.float32),
        args=DPOConfig(**options),
        train_dataset=Dataset.from_list(setup.rows["dpo"]),
        processing_class=setup.tokenizer,
        peft_config=_lora_config(setup.settings.lora),
        callbacks=[StepClock()],
    )
    trainer.train()
    timing.setup_seconds = time.perf_counter() - started - timing.step_seconds
    return timing


def report(repeats: list[list[Timing]], setup: Setup) -> str:
    """Per contender: s/step mean ± sd over repeats, tokens/s, and the ratio to the same repeat's plain loop."""
    names = [t.name for t in repeats[0]]
    lines = ["| contender | dropout | steps | s/step | tokens/s | × plain (same repeat) | setup s |", "|---|---|---|---|---|---|---|"]
    for name in names:
        runs = [next(t for t in timings if t.name == name) for timings in repeats]
        plain = [next(t for t in timings if t.name == f"plain {runs[0].method}") for timings in repeats]
        per_step = [t.per_step for t in runs]
        ratios = [t.per_step / p.per_step for t, p in zip(runs, plain)]
        tokens = setup.policy_tokens(runs[0].method) / statistics.mean(per_step)
        lines.append(f"| {name} | {runs[0].dropout:.2f} | {runs[0].steps} | {_mean_sd(per_step)} | {tokens:.0f} | "
                     f"{_mean_sd(ratios)} | {statistics.mean(t.setup_seconds for t in runs):.1f} |")
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def default_base_dir() -> Path:
    """The model serving and training use: llm.hf_dir, or the GGUF materialized under data_dir."""
    from configs import load_settings
    from finetune.base_model import base_model_dir

    settings = load_settings()
    return base_model_dir(settings.llm, settings.data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-dir", type=Path, help="HF model directory (default: the configured model)")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lora-dropout", type=float, default=LoraSettings().dropout)
    parser.add_argument("--skip-trl", action="store_true", help="time only ours and the plain loop")
    parser.add_argument("--trl-defaults", action="store_true", help="also time DPOTrainer with its defaults (slow on CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every contender")
    parser.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    base_dir = args.base_dir or default_base_dir()
    stages = [StageSettings(method=m, epochs=args.epochs, batch_size=args.batch_size) for m in ("sft", "dpo")]
    settings = FinetuneSettings(lora=LoraSettings(dropout=args.lora_dropout), stages=stages, max_length=args.max_length)
    setup = Setup(base_dir, sales_rows(args.rows), settings, AutoTokenizer.from_pretrained(base_dir))
    steps = math.ceil(args.epochs * args.rows / args.batch_size)
    print(f"{args.rows} rows, batch {args.batch_size}, {steps} steps per contender, {torch.get_num_threads()} threads", flush=True)

    work = Path(tempfile.mkdtemp(prefix="train-speed-"))
    try:
        contenders = {"plain sft": lambda: time_plain(setup, "sft"), "ours sft": lambda: time_ours(setup, "sft", work),
                      "plain dpo": lambda: time_plain(setup, "dpo"), "ours dpo": lambda: time_ours(setup, "dpo", work)}
        if not args.skip_trl:
            contenders["trl DPOTrainer configured"] = lambda: time_trl_dpo(setup, configured=True, work=work)
        if args.trl_defaults:
            contenders["trl DPOTrainer defaults"] = lambda: time_trl_dpo(setup, configured=False, work=work)
        repeats = [_repeat(contenders, reverse=i % 2 == 1) for i in range(args.repeats)]
        table = report(repeats, setup)
        print(table)
        if args.record:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from common import record

            record("Training speed", table, _notes(args, steps))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _repeat(contenders: dict, reverse: bool) -> list[Timing]:
    timings = []
    for name in reversed(contenders) if reverse else contenders:
        timings.append(contenders[name]())
        print(f"  {name}: {timings[-1].per_step:.2f} s/step", flush=True)
    return timings


def _notes(args: argparse.Namespace, steps: int) -> str:
    return (f"{args.rows} rows, batch {args.batch_size}, {steps} steps per contender and repeat, max_length "
            f"{args.max_length}, LoRA dropout {args.lora_dropout}; {args.repeats} interleaved repeats (each reverses the "
            "order of the one before), mean ± sd over repeats. Plain DPO is the policy's forward and backward only (no "
            "reference pass), the floor any DPO loop pays; ours and trl also compute the reference log-probs.")


if __name__ == "__main__":
    main()
