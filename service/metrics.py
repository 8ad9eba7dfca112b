"""Prometheus metrics: event counts from the durable queue, per-node latency, waiting runs, rep decision rates.

Counts are read from the stores at scrape time, so they survive restarts and agree across workers; node latency is
a histogram of this process's runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from provenance import StepTrace

if TYPE_CHECKING:
    from service.learning import LearningStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class StoreCollector(Collector):
    """Reads queue counts, waiting runs and decisions when Prometheus scrapes."""

    def __init__(self, queue_counts: Callable[[], dict[str, dict[str, int]]], waiting: Callable[[], int],
                 decisions: Callable[[], Counter]):
        self._queue_counts = queue_counts
        self._waiting = waiting
        self._decisions = decisions

    def collect(self) -> Iterator:
        received = CounterMetricFamily("salesloop_events_received", "CRM events accepted into the durable queue", labels=["source"])
        processed = CounterMetricFamily("salesloop_events_processed", "events whose run was started", labels=["source"])
        dead = CounterMetricFamily("salesloop_events_dead_lettered", "events that failed every retry", labels=["source"])
        for source, counts in sorted(self._queue_counts().items()):
            received.add_metric([source], sum(counts.values()))
            processed.add_metric([source], counts.get("done", 0))
            dead.add_metric([source], counts.get("dead", 0))
        yield from (received, processed, dead)
        yield GaugeMetricFamily("salesloop_runs_waiting", "runs waiting for a rep's decision", value=self._waiting())
        decisions = self._decisions()
        total = sum(decisions.values())
        counts = CounterMetricFamily("salesloop_decisions", "rep decisions", labels=["decision"])
        rates = GaugeMetricFamily("salesloop_decision_rate", "share of rep decisions of each kind", labels=["decision"])
        for kind in ("adopt", "edit", "reject"):
            counts.add_metric([kind], decisions.get(kind, 0))
            rates.add_metric([kind], decisions.get(kind, 0) / total if total else 0.0)
        yield from (counts, rates)


class LearningCollector(Collector):
    """Continuous learning at scrape time: decisions toward the next round, approvals waiting, rounds by outcome."""

    def __init__(self, status: Callable[[], LearningStatus], rounds: Callable[[], Counter]):
        self._status, self._rounds = status, rounds

    def collect(self) -> Iterator:
        status = self._status()
        yield GaugeMetricFamily("salesloop_learning_new_decisions", "decisions no adapter has learned from yet",
                                value=status.backlog.new)
        yield GaugeMetricFamily("salesloop_learning_pending_approvals",
                                "adapters that passed the gate and wait for `salesloop adapters promote`",
                                value=len(status.pending_approvals))
        yield GaugeMetricFamily("salesloop_learning_round_running", "1 while this process runs a fine-tuning round",
                                value=1 if status.running else 0)
        rounds = CounterMetricFamily("salesloop_learning_rounds", "fine-tuning rounds ended, by outcome",
                                     labels=["outcome"])
        for outcome, count in sorted(self._rounds().items()):
            rounds.add_metric([outcome], count)
        yield rounds


class Metrics:
    def __init__(self, collector: StoreCollector):
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self.node_latency = Histogram("salesloop_node_latency_seconds", "time per graph node", ["node"],
                                      registry=self.registry, buckets=LATENCY_BUCKETS)

    def observe(self, steps: list[StepTrace]) -> None:
        for step in steps:
            self.node_latency.labels(step.step).observe((step.ended_at - step.started_at).total_seconds())
