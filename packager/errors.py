"""The one exception tree of triton-packager.

::

    PackagerError                    anything the user can fix; the CLI prints it in one line, exit 1
    ├── DTypeError                   a data type with no Triton equivalent
    ├── SpecError                    a model spec with problems (all of them listed in ``.problems``)
    ├── SourceError                  a model file that cannot be read or understood
    │   └── ExportError              a PyTorch module that cannot be exported
    │       └── VerificationError    exported model disagrees with the source (``.report``)
    ├── RepositoryError              the output repository cannot be written or is inconsistent
    ├── ValidationError              ``validate`` found problems (``.report``)
    ├── ManifestError                a deploy manifest with problems
    ├── ServerError                  the embedded tritonserver failed to start or load models
    ├── MissingExtra                 an optional dependency is not installed (packager.extras)
    ├── TuneError                    ``tune`` cannot run (bad options, no usable server)
    └── ClientError                  (packager.client) anything a client call can fail with
        ├── ServerUnavailable        cannot connect / connection lost
        ├── ModelNotFound            the server does not know the model (or version)
        ├── ModelNotReady            the model exists but is not loaded
        ├── InvalidInput             bad names, dtypes or shapes (checked before sending)
        │   └── SequenceNotStarted   a request of a sequence the server does not know (no START,
        │                            ended, or freed after its idle timeout)
        ├── InferenceTimeout         the call took longer than its timeout
        └── InferenceServerError     any other error reported by the server

Every message says what went wrong and, where there is one, what to do next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class PackagerError(Exception):
    """Base of every error that carries a message meant for the user."""


class DTypeError(PackagerError):
    """A data type that cannot be mapped."""


class SpecError(PackagerError):
    """A model spec that Triton would reject; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str], subject: str = "model spec") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{subject} has {n} problem{'s' if n != 1 else ''}:\n{lines}")


class SourceError(PackagerError):
    """A model file that cannot be read, parsed or described."""


class ExportError(SourceError):
    """A PyTorch module that cannot be exported to ONNX or TorchScript."""


class VerificationError(ExportError):
    """The exported artifact's outputs differ from the source model's beyond tolerance."""

    def __init__(self, message: str, report: object = None) -> None:
        self.report = report
        super().__init__(message)


class RepositoryError(PackagerError):
    """The model repository cannot be written as asked, or is inconsistent."""


class ValidationError(PackagerError):
    """``validate`` found problems; ``report`` holds the per-model findings."""

    def __init__(self, message: str, report: object = None) -> None:
        self.report = report
        super().__init__(message)


class ManifestError(PackagerError):
    """A deploy manifest that is malformed or inconsistent."""

    def __init__(self, problems: Iterable[str], path: str = "manifest") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s):\n{lines}")


class ServerError(PackagerError):
    """The embedded tritonserver could not start, or a model failed to load."""


class MissingExtra(PackagerError):
    """An optional dependency of the command is not installed; the message names the extra."""


class TuneError(PackagerError):
    """``tune`` cannot run: bad options, or the server cannot load or measure the model."""


class ClientError(PackagerError):
    """Base of every error raised by ``packager.client``."""


class ServerUnavailable(ClientError):
    """The server cannot be reached, or the connection was lost."""


class ModelNotFound(ClientError):
    """The server does not know this model or version."""


class ModelNotReady(ClientError):
    """The model is known but not loaded (or is unloading)."""


class InvalidInput(ClientError):
    """Inputs do not match the model: names, dtypes or shapes."""


class SequenceNotStarted(InvalidInput):
    """A stateful model got a request of a sequence it does not hold: never started (no START
    flag), already ended, or freed by the server after its idle timeout."""


class InferenceTimeout(ClientError):
    """The request did not complete within its timeout."""


class InferenceServerError(ClientError):
    """Any other error that the server reported."""
