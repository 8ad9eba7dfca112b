"""Prompts are versioned files in this package; rendering is strict and every use records the file's hash."""

from prompts.templates import PromptError, PromptTemplate, load_prompt

__all__ = ["PromptError", "PromptTemplate", "load_prompt"]
