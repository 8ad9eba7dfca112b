"""Promotion through the evaluation gate: the one path by which a trained adapter goes into service.

The CLI's `adapters promote`, the service's continuous learning and the learning-loop benchmark all call this, so
none of them can promote what the gate refused (only `--force` skips it, and only from the CLI).
"""

from __future__ import annotations

from agents.services import Services
from finetune.base_model import served_base_sha256
from finetune.evaluate import EvalReport, evaluate
from finetune.records import FinetuneSettings


class PromotionRefused(Exception):
    """A candidate failed the evaluation gate; the adapter in service stays."""

    def __init__(self, version: str, report: EvalReport):
        self.version, self.report = version, report
        super().__init__(f"{version} did not pass the evaluation gate ({'; '.join(report.reasons)}); "
                         "the current adapter stays in service (use --force to override)")


def gate(services: Services, version: str, settings: FinetuneSettings, gate_services: Services | None = None) -> EvalReport:
    """The gate's verdict on `version`; `gate_services` scores with another backend (llama.cpp cannot score)."""
    return evaluate(gate_services or services, version, settings)


def promote_through_gate(services: Services, version: str, settings: FinetuneSettings,
                         gate_services: Services | None = None) -> EvalReport:
    """Evaluate `version` and promote it if it passes; raises PromotionRefused (with the report) if it does not."""
    report = gate(services, version, settings, gate_services)
    if not report.passed:
        raise PromotionRefused(version, report)
    promote(services, version)
    return report


def promote(services: Services, version: str) -> None:
    """Put `version` in service without the gate: `adapters promote --force`."""
    services.adapters.promote(version, base_model_sha256=served_base_sha256(services.settings.llm, services.settings.data_dir))
