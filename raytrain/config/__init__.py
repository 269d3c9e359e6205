"""Typed run configuration: YAML files plus ``--set a.b=c`` overrides, validated at load.

Every section forbids unknown keys and bounds its numbers, so a typo or an out-of-range value fails before Ray starts,
with a message that names the key (``data.noise.sigma: ...``).
"""

from raytrain.config.loading import *  # noqa: F403
from raytrain.config.run import *  # noqa: F403
from raytrain.config.sections import *  # noqa: F403
