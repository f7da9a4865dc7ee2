"""Explanations through the served model: which parts of an input drive one output value.

Forward passes only (occlusion, KernelSHAP), batched through :class:`packager.client.Client`
or any in-process ``predict``; tabular, image and text inputs. See docs/explain.md.
"""

from packager.explain.explanation import Explanation
from packager.explain.run import explain

__all__ = ["Explanation", "explain"]
