"""``Config`` and its policies, under the name users import them by.

The settings are declared in :mod:`gobstopper.settings`; this module only re-exports them.
"""

from __future__ import annotations

from .settings import Config, RateLimitPolicy, SlowConsumerPolicy

__all__ = ["Config", "RateLimitPolicy", "SlowConsumerPolicy"]
