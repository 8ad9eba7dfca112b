"""Model serving: one LLM protocol, backends chosen by name in the config, loaded once per process."""

from serving.llm import LLM, Generation, LLMError, load_llm

__all__ = ["LLM", "Generation", "LLMError", "load_llm"]
