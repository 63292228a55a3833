"""Settings for nudge: one `Settings` object, built once from `NUDGE_*` environment variables."""

from config.settings import ConfigError, Settings, get_settings

__all__ = ["ConfigError", "Settings", "get_settings"]
