"""Train a LoRA adapter on exported feedback rows: SFT, DPO and KTO stages in one plain PyTorch loop.

Our own loop rather than trl's trainers: every stage on one adapter, checkpoints that resume to the
same weights, padding only to the longest row of a batch, and the vocabulary projection only where
the loss needs it. The rows stay in trl's conversational format; bench/train_speed.py times this
loop against a plain peft loop and trl's DPOTrainer.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from finetune.records import (
    DatasetFormat,
    FinetuneSettings,
    LoraSettings,
    StageSettings,
)
from prompts.templates import ChatMessage
from provenance import sha256_text

IGNORE = -100  # label of a token that carries no loss (prompt, padding)
MAX_GRAD_NORM = 1.0  # as transformers' Trainer and trl: keeps a bad batch from wrecking a tiny adapter
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")

Progress = Callable[[str, int, int, dict[str, float]], None]


class TrainingError(Exception):
    """Training cannot start or go on for a reason the user can fix; the message says how."""


class TrainResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int
    examples: int  # examples processed over all steps (an example seen in two epochs counts twice)
    tokens: int  # non-pad tokens through the model, reference passes included
    seconds: float  # time in training steps, summed over interrupted runs
    tokens_per_s: float
    metrics: dict[str, float]  # per stage, averaged over its last epoch: sft_loss, dpo_reward_margin, …


# Rows as the exporter writes them (trl's conversational format); extra row fields are ignored.
class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SftRow(_Row):
    messages: list[ChatMessage]


class DpoRow(_Row):
    prompt: list[ChatMessage]
    chosen: list[ChatMessage]
    rejected: list[ChatMessage]


class KtoRow(_Row):
    prompt: list[ChatMessage]
    completion: list[ChatMessage]
    label: bool


ROW_MODELS: dict[str, type[_Row]] = {"sft": SftRow, "dpo": DpoRow, "kto": KtoRow}


# ---------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class Sequence:
    input_ids: list[int]
    labels: list[int]  # the token itself where it carries loss, else IGNORE


@dataclass(frozen=True)
class DpoPair:
    chosen: Sequence
    rejected: Sequence


@dataclass(frozen=True)
class KtoExample:
    prompt_ids: list[int]  # kept apart: the KL estimate pairs each prompt with another row's completion
    completion_ids: list[int]
    desirable: bool


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _ids(tokenizer: Any, text: str) -> list[int]:
    # The rendered template already holds every special token.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _after(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise TrainingError(
            f"the chat template renders a conversation that does not start with its own prefix ({prefix[-60:]!r} vs {text[:80]!r}); "
            "use a model whose template only appends turns"
        )
    return text[len(prefix) :]


def _truncate(sequence: Sequence, max_length: int) -> Sequence:
    # Cut from the left: the completion's end (and its end-of-turn token) is what the loss needs most.
    return Sequence(sequence.input_ids[-max_length:], sequence.labels[-max_length:])


def _join(prompt_ids: list[int], completion_ids: list[int], max_length: int) -> Sequence:
    return _truncate(Sequence(prompt_ids + completion_ids, [IGNORE] * len(prompt_ids) + completion_ids), max_length)


def _prompt_completion_ids(tokenizer: Any, prompt: list[dict], completion: list[dict]) -> tuple[list[int], list[int]]:
    # Tokenized apart, as at generation time: the model produced the reply after the rendered prompt.
    prompt_text = _render(tokenizer, prompt, generation_prompt=True)
    completion_text = _after(_render(tokenizer, prompt + completion, generation_prompt=False), prompt_text)
    return _ids(tokenizer, prompt_text), _ids(tokenizer, completion_text)


def _sft_sequence(tokenizer: Any, messages: list[dict], max_length: int) -> Sequence:
    """Every assistant turn carries loss (its text and end-of-turn token); everything else is masked."""
    replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not replies:
        raise TrainingError("the conversation has no assistant message to learn from")
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i in replies:
        prompt_text = _render(tokenizer, messages[:i], generation_prompt=True)
        reply_text = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        context = _ids(tokenizer, _after(prompt_text, rendered))
        reply = _ids(tokenizer, _after(reply_text, prompt_text))
        input_ids += context + reply
        labels += [IGNORE] * len(context) + reply
        rendered = reply_text
    return _truncate(Sequence(input_ids, labels), max_length)


def _messages(messages: Iterable[ChatMessage | Mapping[str, str]]) -> list[dict]:
    return [ChatMessage.model_validate(m).model_dump() for m in messages]


def _encode(row: _Row, tokenizer: Any, max_length: int) -> Sequence | DpoPair | KtoExample:
    if isinstance(row, SftRow):
        return _sft_sequence(tokenizer, _messages(row.messages), max_length)
    prompt = _messages(row.prompt)
    if isinstance(row, DpoRow):
        chosen = _prompt_completion_ids(tokenizer, prompt, _messages(row.chosen))
        rejected = _prompt_completion_ids(tokenizer, prompt, _messages(row.rejected))
        return DpoPair(_join(*chosen, max_length), _join(*rejected, max_length))
    return KtoExample(*_prompt_completion_ids(tokenizer, prompt, _messages(row.completion)), desirable=row.label)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


def _encode_rows(method: DatasetFormat, rows: list[dict], tokenizer: Any, max_length: int) -> list:
    encoded = []
    for index, raw in enumerate(rows):
        try:
            encoded.append(_encode(ROW_MODELS[method].model_validate(raw), tokenizer, max_length))
        except (ValidationError, TrainingError) as exc:
            fields = ", ".join(ROW_MODELS[method].model_fields)
            raise TrainingError(f"{method} row {index} is unusable: {_reason(exc)}; rows need {fields} in trl's conversational format") from None
    return encoded


# ---------------------------------------------------------------- log-probs and losses


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def _collate(sequences: list[Sequence], pad_id: int, device: torch.device) -> Batch:
    # Right-pad to the longest sequence in this batch only; padding is masked, so any pad id works.
    width = max(len(s.input_ids) for s in sequences)

    def pad(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (width - len(values))

    return Batch(
        input_ids=torch.tensor([pad(s.input_ids, pad_id) for s in sequences], device=device),
        attention_mask=torch.tensor([pad([1] * len(s.input_ids), 0) for s in sequences], device=device),
        labels=torch.tensor([pad(s.labels, IGNORE) for s in sequences], device=device),
    )


def _token_logps(model: Any, batch: Batch) -> torch.Tensor:
    """Log-prob of each labelled next token from the first labelled one on, 0 where the label is IGNORE."""
    labelled = (batch.labels != IGNORE).any(0).nonzero()
    start = max(int(labelled[0]) - 1, 0) if len(labelled) else 0
    # The vocabulary projection is a fifth of this model's compute: skip it over the shared prompt head.
    keep = batch.input_ids.shape[1] - start
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, logits_to_keep=keep).logits[:, :-1]
    labels = batch.labels[:, start + 1 :]
    return -F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none").view(labels.shape)


def _sequence_logps(model: Any, batch: Batch) -> torch.Tensor:
    return _token_logps(model, batch).sum(-1)


def _reference_logps(model: Any, batch: Batch) -> torch.Tensor:
    # The reference is the model without its adapter: the base, also on a warm start.
    with torch.no_grad(), model.disable_adapter():
        return _sequence_logps(model, batch)


@dataclass(frozen=True)
class StepOutput:
    loss: torch.Tensor
    metrics: dict[str, float]
    tokens: int


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _sft_step(model: Any, batch: list[Sequence], beta: float, pad_id: int, max_length: int) -> StepOutput:
    inputs = _collate(batch, pad_id, model.device)
    labelled = (inputs.labels[:, 1:] != IGNORE).sum()
    loss = -_token_logps(model, inputs).sum() / labelled  # mean over assistant tokens
    return StepOutput(loss, {"loss": loss.item()}, inputs.tokens)


def _dpo_step(model: Any, batch: list[DpoPair], beta: float, pad_id: int, max_length: int) -> StepOutput:
    # Chosen and rejected go through one forward pass, as trl's concatenated forward.
    inputs = _collate([p.chosen for p in batch] + [p.rejected for p in batch], pad_id, model.device)
    logratios = _sequence_logps(model, inputs) - _reference_logps(model, inputs)
    margins = beta * (logratios[: len(batch)] - logratios[len(batch) :])
    loss = -F.logsigmoid(margins).mean()
    metrics = {"loss": loss.item(), "reward_margin": margins.mean().item(), "reward_accuracy": (margins > 0).float().mean().item()}
    return StepOutput(loss, metrics, 2 * inputs.tokens)


def _kto_step(model: Any, batch: list[KtoExample], beta: float, pad_id: int, max_length: int) -> StepOutput:
    matched = _collate([_join(e.prompt_ids, e.completion_ids, max_length) for e in batch], pad_id, model.device)
    # KL reference point: each prompt with the previous row's completion, as trl pairs them.
    shifted = [_join(e.prompt_ids, batch[i - 1].completion_ids, max_length) for i, e in enumerate(batch)]
    mismatched = _collate(shifted, pad_id, model.device)
    with torch.no_grad():
        kl = (_sequence_logps(model, mismatched) - _reference_logps(model, mismatched)).mean().clamp(min=0)
    logratios = _sequence_logps(model, matched) - _reference_logps(model, matched)
    desirable = torch.tensor([e.desirable for e in batch], device=model.device)
    losses = torch.where(desirable, 1 - torch.sigmoid(beta * (logratios - kl)), 1 - torch.sigmoid(beta * (kl - logratios)))
    loss = losses.mean()
    return StepOutput(loss, {"loss": loss.item(), "kl": kl.item()}, 2 * (matched.tokens + mismatched.tokens))


# One signature for all, so the loop needs no per-method branches; each takes what it uses.
STEPS: dict[str, Callable[..., StepOutput]] = {"sft": _sft_step, "dpo": _dpo_step, "kto": _kto_step}


def completion_logprobs(model: Any, tokenizer: Any, prompt: list[dict], completion: list[dict], max_length: int) -> float:
    """Summed log-prob of the completion's tokens after the chat-rendered prompt, in eval mode."""
    sequence = _join(*_prompt_completion_ids(tokenizer, _messages(prompt), _messages(completion)), max_length)
    was_training = model.training
    model.eval()  # dropout off: the same model and text always score the same
    try:
        with torch.inference_mode():
            return _sequence_logps(model, _collate([sequence], _pad_id(tokenizer), model.device)).item()
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- model


def _lora_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig, TaskType

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules, task_type=TaskType.CAUSAL_LM)


@dataclass(frozen=True)
class Parent:
    path: Path
    config: Any  # its LoraConfig: a warm start keeps the parent's rank and target modules
    tensors: dict[str, torch.Tensor]


def _read_parent(path: Path, base_dir: Path) -> Parent:
    """Check the cheap things (files, base name, weights readable) before loading the base model."""
    from peft import LoraConfig

    try:
        raw = json.loads((path / "adapter_config.json").read_text())
    except FileNotFoundError:
        raise TrainingError(f"parent adapter {path} has no adapter_config.json; pass a directory written by save_pretrained, or set warm_start: false") from None
    except json.JSONDecodeError as exc:
        raise TrainingError(f"parent adapter {path}/adapter_config.json is corrupt ({exc}); restore it or set warm_start: false") from None
    recorded = raw.get("base_model_name_or_path")
    # Compare directory names: the data directory may move, the materialized model's name does not.
    if recorded and Path(recorded).name != base_dir.name:
        raise TrainingError(
            f"parent adapter {path} was trained on base {recorded!r}, not on {str(base_dir)!r}; "
            "use the base it was trained on, or train from scratch with warm_start: false"
        )
    if raw.get("peft_type") != "LORA":
        raise TrainingError(f"parent adapter {path} is a {raw.get('peft_type')!r} adapter; only LORA adapters can be continued")
    try:
        tensors = load_file(path / "adapter_model.safetensors")
    except (SafetensorError, OSError) as exc:
        raise TrainingError(f"parent adapter weights {path}/adapter_model.safetensors are unreadable ({exc}); restore them or set warm_start: false") from None
    config = LoraConfig.from_pretrained(str(path))
    config.inference_mode = False  # saved adapters are marked for inference, which would freeze them
    return Parent(path, config, tensors)


def _load_adapter_weights(model: Any, tensors: dict[str, torch.Tensor], source: str) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    expected = {name: tuple(t.shape) for name, t in get_peft_model_state_dict(model).items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if expected != found:
        wrong = sorted(n for n in expected.keys() | found.keys() if expected.get(n) != found.get(n))
        details = "; ".join(f"{n}: expected {expected.get(n)}, found {found.get(n)}" for n in wrong[:3])
        raise TrainingError(f"{source} does not fit this base model ({len(wrong)} tensors differ: {details}); it was trained on another model")
    set_peft_model_state_dict(model, tensors)


def _build_model(base_dir: Path, settings: FinetuneSettings, parent: Parent | None) -> Any:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(settings.device)
    model = get_peft_model(base, parent.config if parent else _lora_config(settings.lora))
    if parent:
        _load_adapter_weights(model, parent.tensors, f"parent adapter {parent.path}")
    return model


# ---------------------------------------------------------------- checkpoints


class RunState(BaseModel):
    """What a checkpoint records besides tensors: where the run stands and what it has counted."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str  # of the inputs: a checkpoint only resumes the run that wrote it
    stage: int = 0  # index into settings.stages
    step: int = 0  # optimizer steps done in that stage
    order: list[int] = []  # that stage's example stream over all its epochs
    history: list[dict[str, float]] = []  # that stage's per-step metrics
    steps: int = 0
    examples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = {}  # of finished stages


def _fingerprint(base_dir: Path, stages: dict[str, list[dict]], settings: FinetuneSettings, parent: Path | None) -> str:
    used = {s.method: stages[s.method] for s in settings.stages}
    inputs = {"base": str(base_dir.resolve()), "parent": str(parent.resolve()) if parent else None, "settings": settings.model_dump(mode="json"), "rows": used}
    return sha256_text(json.dumps(inputs, sort_keys=True, default=str))


def _publish(tmp: Path, final: Path) -> None:
    """Rename a fully written directory into place, so readers see all of it or none."""
    for file in tmp.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    tmp.rename(final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _checkpoints(work_dir: Path) -> list[Path]:
    # Zero-padded names sort in run order; half-written ones start with a dot and are never picked.
    return sorted(work_dir.glob("checkpoint-*")) if work_dir.is_dir() else []


def _save_checkpoint(work_dir: Path, model: Any, optimizer: torch.optim.Optimizer, state: RunState) -> None:
    from peft import get_peft_model_state_dict

    name = f"checkpoint-{state.stage:02d}-{state.step:06d}"
    tmp = work_dir / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}, tmp / "adapter.safetensors")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(state.model_dump_json())
    _publish(tmp, work_dir / name)
    for old in _checkpoints(work_dir):
        if old.name != name:
            shutil.rmtree(old)


def _resume(work_dir: Path, fingerprint: str, model: Any) -> tuple[RunState, dict | None]:
    """Restore the newest checkpoint of this very run; a checkpoint of other inputs is dropped."""
    checkpoints = _checkpoints(work_dir)
    if not checkpoints:
        return RunState(fingerprint=fingerprint), None
    state = RunState.model_validate_json((checkpoints[-1] / "state.json").read_text())
    if state.fingerprint != fingerprint:
        # Progress on other rows or settings is useless here; starting over is the only correct resume.
        for old in checkpoints:
            shutil.rmtree(old)
        return RunState(fingerprint=fingerprint), None
    _load_adapter_weights(model, load_file(checkpoints[-1] / "adapter.safetensors"), f"checkpoint {checkpoints[-1]}")
    saved = torch.load(checkpoints[-1] / "trainer.pt", weights_only=True)
    torch.set_rng_state(saved["rng"]["torch"])
    random.setstate(saved["rng"]["python"])
    if saved["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    return state, saved["optimizer"]


# ---------------------------------------------------------------- the loop


def _example_order(count: int, epochs: float, seed: int) -> list[int]:
    """Each epoch a fresh permutation; a fractional last epoch takes the head of its permutation."""
    total = math.ceil(round(epochs * count, 6))  # round: 0.1 * 30 must be 3 examples, not 4
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < total:
        order += torch.randperm(count, generator=generator).tolist()
    return order[:total]


def _stage_metrics(method: str, history: list[dict[str, float]], steps_per_epoch: int) -> dict[str, float]:
    # Averaged over the last epoch: one step's loss on a batch of two is mostly noise.
    last = history[-steps_per_epoch:]
    return {f"{method}_{key}": sum(h[key] for h in last) / len(last) for key in last[0]}


@dataclass
class _Run:
    model: Any
    settings: FinetuneSettings
    work_dir: Path
    progress: Progress | None
    pad_id: int
    state: RunState


def _run_stage(run: _Run, stage: StageSettings, examples: list, optimizer_state: dict | None) -> None:
    state, index = run.state, run.state.stage
    if state.step == 0:
        state.order = _example_order(len(examples), stage.epochs, run.settings.seed + index)
        state.history = []
    batches = [state.order[i : i + stage.batch_size] for i in range(0, len(state.order), stage.batch_size)]
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=stage.learning_rate, weight_decay=0.0)  # no decay, as the Trainer's default
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    run.model.train()
    while state.step < len(batches):
        batch = [examples[i] for i in batches[state.step]]
        started = time.perf_counter()
        out = STEPS[stage.method](run.model, batch, stage.beta, run.pad_id, run.settings.max_length)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _count(state, out, len(batch), time.perf_counter() - started)
        if state.step % run.settings.checkpoint_every == 0 or state.step == len(batches):
            _save_checkpoint(run.work_dir, run.model, optimizer, state)
        if run.progress:
            run.progress(stage.method, state.step, len(batches), out.metrics)


def _count(state: RunState, out: StepOutput, examples: int, seconds: float) -> None:
    if not math.isfinite(out.metrics["loss"]):
        raise TrainingError(f"loss became {out.metrics['loss']} at step {state.step + 1}; lower the learning rate")
    state.step += 1
    state.steps += 1
    state.examples += examples
    state.tokens += out.tokens
    state.seconds += seconds
    state.history.append(out.metrics)


def _check_rows(stages: dict[str, list[dict]], settings: FinetuneSettings) -> None:
    for stage in settings.stages:
        if not stages.get(stage.method):
            given = ", ".join(f"{m}: {len(r)} rows" for m, r in stages.items()) or "none"
            raise TrainingError(f"stage {stage.method!r} has no rows (given {given}); export {stage.method} data or remove the stage")


def _save_adapter(model: Any, out_dir: Path) -> None:
    """Write the adapter beside `out_dir`, then swap it in: `out_dir` holds a whole adapter or none."""
    tmp, old = out_dir.with_name(f".{out_dir.name}.partial"), out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for extra in {p.name for p in tmp.iterdir()} - set(ADAPTER_FILES):
        (tmp / extra).unlink()  # peft's README model card: not part of the adapter, and it names local paths
    if out_dir.exists():
        # A rerun's output (same inputs, same result) or a caller's empty directory: rename cannot replace it.
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    _publish(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train_adapter(
    base_dir: Path,
    stages: dict[str, list[dict]],
    settings: FinetuneSettings,
    out_dir: Path,
    *,
    parent_adapter: Path | None = None,
    work_dir: Path,
    progress: Progress | None = None,
) -> TrainResult:
    """Run `settings.stages` in order on one LoRA adapter and write it to `out_dir` in PEFT format.

    A rerun with the same inputs and `work_dir` resumes from the last checkpoint and ends with the
    same weights as an uninterrupted run.
    """
    from transformers import AutoTokenizer

    _check_rows(stages, settings)
    parent = _read_parent(parent_adapter, base_dir) if parent_adapter else None
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    encoded = [_encode_rows(s.method, stages[s.method], tokenizer, settings.max_length) for s in settings.stages]
    _seed(settings.seed)
    model = _build_model(base_dir, settings, parent)
    state, optimizer_state = _resume(work_dir, _fingerprint(base_dir, stages, settings, parent_adapter), model)
    run = _Run(model, settings, work_dir, progress, _pad_id(tokenizer), state)
    while state.stage < len(settings.stages):
        stage = settings.stages[state.stage]
        _run_stage(run, stage, encoded[state.stage], optimizer_state)
        state.metrics.update(_stage_metrics(stage.method, state.history, math.ceil(len(encoded[state.stage]) / stage.batch_size)))
        state.stage, state.step, optimizer_state = state.stage + 1, 0, None
    _save_adapter(model, out_dir)
    for checkpoint in work_dir.glob("*checkpoint-*"):  # complete ones and any a crash left half-written
        shutil.rmtree(checkpoint)
    return TrainResult(
        steps=state.steps,
        examples=state.examples,
        tokens=state.tokens,
        seconds=state.seconds,
        tokens_per_s=state.tokens / state.seconds if state.seconds else 0.0,
        metrics=state.metrics,
    )
