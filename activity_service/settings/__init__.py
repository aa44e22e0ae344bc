"""Settings, split by concern; each module reads its environment variables through `env`."""

from .django import *  # noqa: F401,F403
from .pipeline import *  # noqa: F401,F403
from .serving import *  # noqa: F401,F403
