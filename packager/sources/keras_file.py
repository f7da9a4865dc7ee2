"""Keras model files as a source: Keras 3 ``.keras`` zips, and Keras 2 ``.h5``/``.hdf5`` files.

Keras 2 HDF5 model files (``model.save('m.h5')``: the architecture in the ``model_config``
attribute, the weights beside it) are read by Keras 3's legacy HDF5 loader; an HDF5 file that
holds weights only (``save_weights``) or a model Keras 3 cannot rebuild gets a message naming
the format and the conversion.

The file is loaded by Keras (TensorFlow backend, ``safe_mode``: no Python code from the file),
its inputs and outputs become the model's tensors (named after the ``keras.Input`` and output
layers), and it is exported as a SavedModel whose serving signature returns the outputs by those
names. That SavedModel is converted to ONNX (:mod:`packager.sources.tf_graph`) and the result is
compared with the Keras model itself, called in inference mode, on the same inputs.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import SourceError
from packager.repository import sha256_file
from packager.sources import LoadedModel, SourceOptions, register
from packager.sources.tf_graph import (
    DEFAULT_SIGNATURE,
    convert_and_verify,
    first_line,
    import_tf,
    load_saved_model,
    new_workdir,
    quiet,
)
from packager.sources.tf_savedmodel import check_format

KERAS_MEMBERS = ("config.json", "metadata.json")  # every Keras 3 .keras zip holds both
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# The HDF5 superblock sits at 0 or a power of two from 512 on (a user block before it).
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)


def is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            for offset in _HDF5_OFFSETS:
                f.seek(offset)
                if f.read(8) == HDF5_MAGIC:
                    return True
    except OSError:
        return False
    return False


def _hdf5_facts(path: Path) -> dict[str, str]:
    """The Keras attributes of an HDF5 file (model_config, keras_version, backend)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {
                k: v.decode() if isinstance(v, bytes) else str(v)
                for k, v in f.attrs.items()
                if k in ("model_config", "keras_version", "backend")
            }
    except OSError as exc:
        raise SourceError(f"{path} is an HDF5 file h5py cannot read: {exc}") from exc


def is_keras_file(ref: Any) -> bool:
    if not isinstance(ref, (str, Path)) or not Path(ref).is_file():
        return False
    if is_hdf5(Path(ref)):
        return True  # a Keras 2 model, weights only or another HDF5 file: load() says which
    try:
        with zipfile.ZipFile(ref) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return all(m in names for m in KERAS_MEMBERS)


def load_keras(path: Path) -> Any:
    """The model as Keras rebuilds it, with the error a user can act on."""
    import_tf()
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SourceError(
            f"Keras runs on the {keras.backend.backend()} backend here; the conversion needs "
            "TensorFlow: unset KERAS_BACKEND or set it to tensorflow"
        )
    legacy = _legacy_format(path) if is_hdf5(path) else ""
    target = path
    if legacy and path.suffix.lower() not in (".h5", ".hdf5"):
        # Keras picks its loader by the file name: an HDF5 model under another name is
        # read through a link named .h5 (the file itself is not copied).
        import tempfile

        link_dir = tempfile.mkdtemp(prefix="tp-h5-")
        target = Path(link_dir) / "model.h5"
        target.symlink_to(path.resolve())
    try:
        with quiet():
            return keras.saving.load_model(target, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises TypeError/ValueError/... for what it cannot rebuild
        text, full = first_line(exc), str(exc)
        if legacy:
            raise SourceError(
                f"Keras {keras.__version__} cannot rebuild the {legacy} in {path}: "
                f"{type(exc).__name__}: {text[:300]}. Convert it where it was made: load it with "
                "Keras 2 (tf-keras: tf_keras.models.load_model(path)) and save it with "
                "model.export('saved_model_dir') (a SavedModel folder builds here), or with "
                "model.save('model.keras') under Keras 3"
            ) from exc
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", full)
        if missing or "Unknown" in text:
            what = f" ({missing.group(1)})" if missing else ""
            hint = (
                f"the file uses a custom layer, model or function{what} that Keras cannot find: save "
                "the model with its classes decorated by @keras.saving.register_keras_serializable "
                "and importable, or export a SavedModel (model.export(DIR)) and build that folder"
            )
        elif "Lambda" in full or "safe_mode" in full:
            hint = (
                "the file holds Python code (a Lambda layer), which is not loaded from files: "
                "replace the Lambda with a registered layer, or export a SavedModel and build that"
            )
        else:
            hint = "re-save it with model.save('model.keras') (Keras 3)"
        raise SourceError(
            f"Keras cannot load {path}: {type(exc).__name__}: {text[:300]}. {hint}"
        ) from exc
    finally:
        if target is not path:
            target.unlink()
            target.parent.rmdir()


def _legacy_format(path: Path) -> str:
    """'Keras 2 HDF5 model (...)' for a loadable HDF5 model file; refuses the other HDF5 files."""
    facts = _hdf5_facts(path)
    made = ", ".join(
        f"{k.replace('_', ' ')} {facts[k]}" for k in ("keras_version", "backend") if k in facts
    )
    if "model_config" not in facts:
        raise SourceError(
            f"{path} is an HDF5 file without a Keras model in it ({made or 'no Keras attributes'}): "
            "it holds weights only (model.save_weights) or other data. Build the model in code, "
            "load these weights into it, and save it with model.save('model.keras')"
        )
    return f"Keras 2 HDF5 model ({made})" if made else "Keras 2 HDF5 model"


def _names(model: Any, path: Path) -> tuple[list[Any], list[str]]:
    """The model's input tensors and its output names, in order."""
    try:
        inputs = list(model.inputs)
        outputs = list(model.outputs)
    except (AttributeError, ValueError, TypeError):
        inputs, outputs = [], []
    if not inputs or not outputs:
        raise SourceError(
            f"{path} holds a {type(model).__name__} without declared inputs (a subclassed model, "
            "or a Sequential never built): build it on keras.Input(shape=...) before saving, or "
            "export a SavedModel with an input signature and build that folder"
        )
    names = list(getattr(model, "output_names", None) or [])
    if not names and len(outputs) == 1 and model.layers:
        names = [model.layers[-1].name]  # a Sequential has no output_names: its last layer's
    if len(names) != len(outputs) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(outputs))]
    return inputs, names


def _call(model: Any, tensors: list[Any]) -> list[Any]:
    """Call the model as its inputs are structured (one tensor, a list or a dict)."""
    import keras

    try:
        struct = model.input
    except (AttributeError, ValueError):  # a Sequential loaded before it was ever called
        struct = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    args: Any
    if isinstance(struct, dict):
        args = dict(zip(struct, tensors, strict=True))
    elif isinstance(struct, (list, tuple)):
        args = list(tensors)
    else:
        args = tensors[0]
    out = model(args, training=False)
    if isinstance(out, dict):
        return [out[k] for k in getattr(model, "output_names", None) or out]
    return list(keras.tree.flatten(out))


def export_saved_model(model: Any, path: Path, target: Path) -> tuple[list[str], list[str]]:
    """The model as a SavedModel whose serving signature takes and returns named tensors;
    the input and output names, in the model's order."""
    tf = import_tf()
    import keras

    inputs, out_names = _names(model, path)
    in_names = [str(t.name) for t in inputs]
    if len(set(in_names)) != len(in_names):
        raise SourceError(f"{path}: inputs share a name ({', '.join(in_names)}); rename them")
    specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for t, n in zip(inputs, in_names, strict=True)]

    def serve(*tensors: Any) -> dict[str, Any]:
        return dict(zip(out_names, _call(model, list(tensors)), strict=True))

    archive = keras.export.ExportArchive()
    archive.track(model)
    try:
        with quiet():
            archive.add_endpoint(DEFAULT_SIGNATURE, serve, input_signature=specs)
            archive.write_out(str(target))
    except Exception as exc:
        raise SourceError(
            f"{path} cannot be traced as a TensorFlow function: {type(exc).__name__}: "
            f"{first_line(exc)}"
        ) from exc
    return in_names, out_names


class KerasSource:
    name = "keras"
    description = (
        "Keras model file (.keras, or a Keras 2 .h5/.hdf5), converted to ONNX through a SavedModel"
    )

    def sniff(self, ref: Any) -> bool:
        return is_keras_file(ref)

    def load(self, ref: Any, options: SourceOptions) -> LoadedModel:
        check_format(options.format, self.name)
        path = Path(ref)
        model = load_keras(path)
        workdir = new_workdir()
        try:
            in_names, out_names = export_saved_model(model, path, Path(workdir.name) / "savedmodel")
            graph = load_saved_model(Path(workdir.name) / "savedmodel")
            import keras

            def reference(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
                outs = _call(model, [feed[n] for n in in_names])
                return {
                    n: keras.ops.convert_to_numpy(o) for n, o in zip(out_names, outs, strict=True)
                }

            try:
                return convert_and_verify(
                    graph,
                    reference,
                    options,
                    {
                        "source": {
                            "format": self.name,
                            "file": path.name,
                            "sha256": sha256_file(path),
                            **({"file_format": "hdf5 (Keras 2)"} if is_hdf5(path) else {}),
                        },
                        "keras": {"version": keras.__version__, "class": type(model).__name__},
                    },
                    workdir,
                )
            finally:
                graph.close()
        except BaseException:
            workdir.cleanup()
            raise


register("keras", KerasSource)
