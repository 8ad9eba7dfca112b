"""The errors a user fixes (config, input files, data, run ids): shown as one line, never a traceback."""

from configs import ConfigError
from finetune.base_model import BaseModelError
from orchestrator import RunError
from prompts import PromptError
from serving.llm import LLMError
from tools.calendar import CalendarError
from tools.clauses import ClauseLibraryError
from tools.crm.event_file import EventFileError
from tools.crm.source import CRMDataError
from tools.embedder import EmbedderError
from tools.records_io import RecordFileError
from tools.vector_store import VectorStoreError

USER_ERRORS = (
    BaseModelError,
    CalendarError,
    ClauseLibraryError,
    ConfigError,
    CRMDataError,
    EmbedderError,
    EventFileError,
    LLMError,
    PromptError,
    RecordFileError,
    RunError,
    VectorStoreError,
)
