"""Settings: YAML files validated by pydantic. Unknown keys and wrong types are errors naming file and key."""

from configs.loader import ConfigError, load_settings
from configs.settings import Settings

__all__ = ["ConfigError", "Settings", "load_settings"]
