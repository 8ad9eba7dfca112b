"""The errors a user fixes (config, input files, data, run ids): shown as one line, never a traceback."""

from agents.inbox import InvalidDecision
from finetune.promotion import PromotionRefused
from configs import ConfigError
from feedback.export import ExportError
from finetune.registry import AdapterError
from finetune.train import TrainingError
from finetune.base_model import BaseModelError
from orchestrator import RunError
from provenance.audit import AuditError
from service.auth import AuthError
from service.queue import QueueError
from prompts import PromptError
from serving.llm import LLMError
from tools.calendar import CalendarError
from tools.clauses import ClauseLibraryError
from tools.crm.connector import ConnectorError
from tools.crm.event_file import EventFileError
from tools.crm.source import CRMDataError
from tools.data_dir import DataDirError
from tools.sql import DatabaseUnreachable
from tools.embedder import EmbedderError
from tools.records_io import RecordFileError
from tools.vector_store import VectorStoreError

USER_ERRORS = (
    AdapterError,
    AuditError,
    AuthError,
    QueueError,
    ExportError,
    InvalidDecision,
    PromotionRefused,
    TrainingError,
    BaseModelError,
    CalendarError,
    ClauseLibraryError,
    ConfigError,
    ConnectorError,
    CRMDataError,
    DataDirError,
    DatabaseUnreachable,
    EmbedderError,
    EventFileError,
    LLMError,
    PromptError,
    RecordFileError,
    RunError,
    VectorStoreError,
)
