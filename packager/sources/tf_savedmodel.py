"""TensorFlow SavedModel folders (``saved_model.pb`` + ``variables/``) as a source.

The ``serve`` MetaGraph's ``serving_default`` signature (or its only signature) gives the tensor
names, dtypes and shapes; it is converted to ONNX and compared with TensorFlow running the same
SavedModel (see :mod:`packager.sources.tf_graph`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.errors import SourceError
from packager.formats import FORMATS
from packager.sources import LoadedModel, SourceOptions, register
from packager.sources.tf_graph import (
    convert_and_verify,
    is_saved_model,
    load_saved_model,
    new_workdir,
)


def check_format(fmt: Any, source: str) -> None:
    """TensorFlow models become ONNX models; TorchScript is not a target."""
    if fmt not in (None, "", "auto", source, FORMATS["onnx"].name):
        raise SourceError(
            f"a {source} model converts to ONNX only, not {fmt}; use --format auto or onnx"
        )


class SavedModelSource:
    name = "savedmodel"
    description = "TensorFlow SavedModel folder (saved_model.pb + variables/), converted to ONNX"

    def sniff(self, ref: Any) -> bool:
        return is_saved_model(ref)

    def load(self, ref: Any, options: SourceOptions) -> LoadedModel:
        check_format(options.format, self.name)
        path = Path(ref)
        model = load_saved_model(path)
        workdir = new_workdir()
        try:
            return convert_and_verify(
                model,
                model.run,
                options,
                {
                    "source": {"format": self.name, "folder": path.name},
                    "signature": model.signature_name,
                },
                workdir,
            )
        except BaseException:
            workdir.cleanup()
            raise
        finally:
            model.close()


register("savedmodel", SavedModelSource)
